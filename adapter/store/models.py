"""The adapter's own state: exchanges, their packets, attempts, and change-capture cursors.

Times are naive UTC. The signed packet bytes live apart from the exchange row so that
claims and listings touch small rows only.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class StateBase(DeclarativeBase):
    pass


class Exchange(StateBase):
    __tablename__ = "exchanges"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    packet_id: Mapped[str] = mapped_column(String(36), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    route: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(3))  # "out" or "in"
    peer: Mapped[str | None] = mapped_column(String(40))
    source_key: Mapped[str] = mapped_column(String(80))
    source_version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    platform_message_id: Mapped[str | None] = mapped_column(String(80))
    receipt_status: Mapped[str | None] = mapped_column(String(20))
    #: inbound: valid | invalid | absent | untrusted, as verification found it.
    signature: Mapped[str | None] = mapped_column(String(12))
    #: the last operator replay, and the attempts made before it: retry limits count anew.
    replayed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    attempts_at_replay: Mapped[int] = mapped_column(Integer, default=0)
    #: axis documents: the edXML DocumentId (ours when sent, the sender's when received).
    document_id: Mapped[str | None] = mapped_column(String(200), index=True)
    __table_args__ = (
        # The claim and the status follow-up read the due set through these two, each as
        # an index range scan that stops after `limit` rows: pending (and sending) by id,
        # retry_wait (and sent) by next_attempt_at. Delivered rows are never touched, so
        # the cost of a round does not grow with the table.
        Index("ix_exchanges_claim", "route", "state", "next_attempt_at"),
        Index("ix_exchanges_queue", "route", "state", "id"),
        Index("ix_exchanges_state", "state", "kind"),
        Index("ix_exchanges_source", "source_key"),
    )


class Packet(StateBase):
    """The exact bytes sent (signed) or received, kept once per exchange.

    Keyed by the exchange's id, which grows with time, so each insert appends to the table's
    B-tree (`INTEGER PRIMARY KEY`: SQLite's rowid). Packet ids and digests are hash-like: an
    index on them takes every insert at a random position and dirties a page of its own per
    packet once it outgrows the page cache, which made the backfill's cost per packet grow
    with the table. A packet is found by its id through `exchanges` (whose unique packet id
    index is the one such index the adapter keeps: it makes packet ids idempotent)."""

    __tablename__ = "packets"
    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchanges.id"), primary_key=True,
                                             autoincrement=False)
    sha256: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class Attempt(StateBase):
    __tablename__ = "attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchanges.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    instance: Mapped[str | None] = mapped_column(String(120))


class Cursor(StateBase):
    __tablename__ = "cursors"
    route: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Recipient(StateBase):
    """One addressee of a document we sent, with the answer that settles its delivery:
    03 (accepted; 04-06 imply it) or 02 (refused). Its timeline is in `status_reports`."""

    __tablename__ = "exchange_recipients"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchanges.id"))
    organ_id: Mapped[str] = mapped_column(String(40))
    #: the latest status code it reported, and when we received it
    status: Mapped[str | None] = mapped_column(String(2))
    status_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    #: the first answer that settled its delivery (02 or 03-06), null while it has none
    settled: Mapped[str | None] = mapped_column(String(2))
    __table_args__ = (UniqueConstraint("exchange_id", "organ_id",
                                       name="uq_exchange_recipients"),)


class StatusReport(StateBase):
    """What a recipient reported (edXML status 01-06, 13, 15, 16) about a document we sent."""

    __tablename__ = "status_reports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchanges.id"), index=True)
    organ_id: Mapped[str] = mapped_column(String(40))
    code: Mapped[str] = mapped_column(String(2))
    description: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[str | None] = mapped_column(String(19))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime)


class OperatorAction(StateBase):
    """Who replayed or cancelled what, when and why: one row per exchange per action."""

    __tablename__ = "operator_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(20))
    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchanges.id"), index=True)
    packet_id: Mapped[str] = mapped_column(String(36))
    from_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)


class BreakerState(StateBase):
    """The last known circuit-breaker state of each endpoint, per instance, for `status`."""

    __tablename__ = "breakers"
    endpoint: Mapped[str] = mapped_column(String(40), primary_key=True)
    instance: Mapped[str] = mapped_column(String(120), primary_key=True)
    state: Mapped[str] = mapped_column(String(12))
    failures: Mapped[int] = mapped_column(Integer)
    opened_for: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)
