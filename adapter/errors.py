"""One exception per outcome an operator sees.

Each class maps to exactly one way an exchange can end or pause, so the engine decides
`failed` versus `retry_wait` from the type alone, and the message is what the operator reads.
"""

from __future__ import annotations


class AdapterError(Exception):
    """Base of every error the adapter raises on purpose."""

    #: permanent errors fail the exchange at once; transient ones are retried.
    permanent: bool = True


class ConfigError(AdapterError):
    """The configuration is unusable; names the file, key and reason."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        self.file, self.key, self.reason = file, key, reason
        super().__init__(f"{file}: {key}: {reason}")


class PacketError(AdapterError):
    """Something is wrong with one packet; carries which packet and which field or line."""

    def __init__(self, reason: str, *, packet: str | None = None, where: str | None = None):
        self.reason, self.packet, self.where = reason, packet, where
        parts = [p for p in (packet and f"packet {packet}", where) if p]
        super().__init__(f"{': '.join(parts)}: {reason}" if parts else reason)


class MappingError(PacketError):
    """A source record cannot become a packet (missing field, bad value, legacy text)."""


class UnsafeXmlError(PacketError):
    """Input refused before parsing finished: DOCTYPE, entities, size, malformed bytes."""


class SchemaInvalidError(PacketError):
    """The packet does not satisfy its XSD."""

    def __init__(self, reason: str, *, packet: str | None = None, where: str | None = None,
                 details: list[str] | None = None) -> None:
        super().__init__(reason, packet=packet, where=where)
        self.details = details or []


class SignatureError(PacketError):
    """The signature is absent, invalid, or made by an untrusted key."""

    def __init__(self, reason: str, *, outcome: str = "invalid", packet: str | None = None,
                 where: str | None = None) -> None:
        super().__init__(reason, packet=packet, where=where)
        #: one of "invalid", "absent", "untrusted" - what the auditor sees recorded.
        self.outcome = outcome


class RejectedByPeer(AdapterError):
    """The platform answered and refused the packet for a business or protocol reason."""

    def __init__(self, reason: str, code: str | None = None) -> None:
        self.reason, self.code = reason, code
        super().__init__(f"rejected by platform{f' ({code})' if code else ''}: {reason}")


class TransportError(AdapterError):
    """The platform could not be reached or answered with a transient failure."""

    permanent = False


class StateDatabaseUnavailable(AdapterError):
    """The state database is locked or unreachable; the service waits and retries."""

    permanent = False
