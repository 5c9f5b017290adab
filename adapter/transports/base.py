"""The one small interface every channel implements.

Errors are classified here, at the edge: `RejectedByPeer` (permanent: do not resend as is)
or `TransportError` (transient: wait and retry). The engine never looks at HTTP codes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


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
    packet_id: str
    kind: str
    sender: str
    size: int


@dataclass(frozen=True)
class FetchedPacket:
    packet_id: str
    kind: str
    sender: str
    payload: bytes


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
