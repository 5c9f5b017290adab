"""The dataclasses that cross the store's boundary: what callers hand in and get back."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NewExchange:
    """A prepared packet (signed bytes) or a record that failed to become one."""

    packet_id: str
    kind: str
    source_key: str
    source_version: int
    peer: str | None
    payload: bytes | None = None
    error: str | None = None
    document_id: str | None = None
    #: the addressees of an edXML document, one row each (`peer` holds a single one)
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClaimedExchange:
    id: int
    packet_id: str
    kind: str
    #: attempts since creation or the last replay, this one included (the retry budget)
    attempts: int
    #: creation or last replay (the age budget)
    created_at: dt.datetime
    payload: bytes
    #: the attempt's number in the exchange's whole history
    number: int = 0
    #: the payload's SHA-256 as stored beside it when it was built (hex), which the evidence
    #: names the attempt's bytes by. Not recomputed here: `audit verify` checks stored bytes
    #: against their digests.
    sha256: str = ""


@dataclass(frozen=True)
class AttemptOutcome:
    exchange_id: int
    started_at: dt.datetime
    duration_ms: int
    #: delivered | duplicate | sent | rejected | transient
    outcome: str
    error: str | None = None
    permanent: bool = False
    platform_message_id: str | None = None
    receipt_status: str | None = None


@dataclass(frozen=True)
class SentExchange:
    """Queued by the platform, its delivery status due for a query."""

    id: int
    packet_id: str


@dataclass(frozen=True)
class DeliveryAnswer:
    exchange_id: int
    #: delivered | queued | unknown
    status: str


@dataclass(frozen=True)
class ReceivedPacket:
    """Bytes as a channel delivered them, to be stored before anything else."""

    packet_id: str
    kind: str
    peer: str
    payload: bytes


@dataclass(frozen=True)
class StoredPacket:
    """A received packet stored but not yet processed."""

    exchange_id: int
    packet_id: str
    kind: str
    peer: str
    payload: bytes


@dataclass(frozen=True)
class InboundState:
    exchange_id: int
    state: str
    #: what we answered the channel (`ack:accepted`, …), None before
    ack: str | None
    last_error: str | None


@dataclass(frozen=True)
class InboundOutcome:
    """How processing a received packet ended: imported, or quarantined with its reason."""

    exchange_id: int
    imported: bool
    error: str | None = None
    signature: str | None = None
    source_key: str | None = None
    source_version: int | None = None
    started: dt.datetime | None = None
    duration_ms: int = 0
    #: axis documents: the edXML DocumentId (accepted documents only: a refused one does
    #: not register its DocumentId)
    document_id: str | None = None
    #: how it travelled, for the auditor: edXML trace hops without an OrganId, tolerated
    #: organisation ids (recorded in the evidence entry of the outcome)
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Acknowledgement:
    exchange_id: int
    outcome: str


@dataclass(frozen=True)
class Refusal:
    exchange_id: int
    reason: str


@dataclass
class OperatorResult:
    done: list[int] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


@dataclass(frozen=True)
class OperatorActionRecord:
    at: dt.datetime
    actor: str
    action: str
    reason: str | None


@dataclass(frozen=True)
class BreakerRecord:
    endpoint: str
    instance: str
    state: str
    failures: int
    opened_for: int
    updated_at: dt.datetime


@dataclass(frozen=True)
class ExchangeFilter:
    """What `exchanges list` and `replay` select by; None means any."""

    state: str | None = None
    kind: str | None = None
    route: str | None = None
    direction: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    search: str | None = None
    ids: tuple[int, ...] | None = None
