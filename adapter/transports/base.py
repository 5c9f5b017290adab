"""The one small interface every channel implements.

Outbound: submit (one or many) and query the delivery status. Inbound (`InboundTransport`,
the same three calls for LGSP and the document axis): list what waits for us, fetch one
packet, acknowledge it. A transport may batch fetches and acknowledgements
(`fetch_many`, `acknowledge_many`); `fetch_each` and `acknowledge_each` use the batch when
there is one and fall back to one call per item, so one packet the platform cannot hand
over fails alone.

Errors are classified here, at the edge: `RejectedByPeer` (permanent: do not resend as is)
or `TransportError` (transient: wait and retry). The engine never looks at HTTP codes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class PlatformReceipt:
    platform_message_id: str
    packet_id: str
    #: accepted | queued | duplicate
    status: str
    received_at: dt.datetime | None
    sha256: str


@dataclass(frozen=True)
class DeliveryStatus:
    packet_id: str
    #: unknown | queued | delivered
    status: str
    platform_message_id: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class PendingPacket:
    """One listed item: `packet_id` is the channel's own id for it (LGSP packet id, axis
    DocId), `sender` the organisation the channel authenticated as its sender."""

    packet_id: str
    kind: str
    sender: str
    #: bytes, as the channel announces them; 0 when it does not say (the axis)
    size: int


@dataclass(frozen=True)
class FetchedPacket:
    """A fetched packet; its kind and sender are those of the listing ("" where the
    channel's fetch does not repeat them)."""

    packet_id: str
    kind: str
    sender: str
    payload: bytes


#: an acknowledgement: (channel's packet id, outcome, reason)
Ack = tuple[str, str, str | None]


@dataclass(frozen=True)
class SubmitItem:
    packet_id: str
    kind: str
    sender: str
    payload: bytes


#: one outcome per submitted item: its receipt, or the error that refused it.
ItemOutcome = PlatformReceipt | Exception


class Transport(Protocol):
    def submit(self, *, packet_id: str, kind: str, sender: str, payload: bytes) -> PlatformReceipt:
        ...

    def submit_many(self, items: list[SubmitItem]) -> list[ItemOutcome]:
        """Per-item outcomes in item order; raises only when the whole call failed."""
        ...

    def query_status(self, packet_id: str) -> DeliveryStatus:
        ...

    def list_pending(self, recipient: str, limit: int) -> list[PendingPacket]:
        ...

    def fetch(self, packet_id: str) -> FetchedPacket:
        ...

    def acknowledge(self, packet_id: str, outcome: str, reason: str | None = None) -> bool:
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class InboundTransport(Protocol):
    """What the inbound pipeline asks of a channel."""

    def list_pending(self, recipient: str, limit: int) -> list[PendingPacket]:
        """What waits for `recipient`, at most `limit` items."""
        ...

    def fetch(self, packet_id: str) -> FetchedPacket:
        ...

    def acknowledge(self, packet_id: str, outcome: str, reason: str | None = None) -> bool:
        """Tell the channel what became of a packet; True when it took the answer."""
        ...


def fetch_each(transport: InboundTransport, packet_ids: Sequence[str]
               ) -> dict[str, FetchedPacket | Exception]:
    """Each packet, or the error that kept it back. With a batch call (`fetch_many`), one
    call; when that call fails, one call per packet, so one packet the channel cannot hand
    over (an unreadable answer, a refusal) fails alone. A packet the answer leaves out is
    absent from the result (listed again next round)."""
    if not packet_ids:
        return {}
    many = getattr(transport, "fetch_many", None)
    if many is not None:
        try:
            return {f.packet_id: f for f in many(list(packet_ids))}
        except Exception as exc:  # find the item that failed the batch
            if len(packet_ids) == 1:
                return {packet_ids[0]: exc}
    out: dict[str, FetchedPacket | Exception] = {}
    for pid in packet_ids:
        try:
            out[pid] = transport.fetch(pid)
        except Exception as exc:  # this item's failure, reported as such
            out[pid] = exc
    return out


def acknowledge_each(transport: InboundTransport, acks: Sequence[Ack]) -> set[str]:
    """Answer for several packets (one batch call when the transport has one); returns
    the ids the channel took the answer for. An item whose answer fails stays unanswered
    (listed again, answered next round)."""
    if not acks:
        return set()
    many = getattr(transport, "acknowledge_many", None)
    if many is not None:
        return set(many(list(acks)))
    taken: set[str] = set()
    for pid, outcome, reason in acks:
        try:
            if transport.acknowledge(pid, outcome, reason):
                taken.add(pid)
        except Exception:  # unanswered: the channel lists it again
            continue
    return taken
