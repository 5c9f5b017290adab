"""The append-only evidence log: every packet sent or received, every platform answer and
acknowledgement, every operator replay or cancel, hash-chained.

Entries are appended inside the transaction that makes the state change they record, so
the log and the state never disagree. Each entry's hash covers the previous entry's hash and
its own content (packet bytes are referenced by their SHA-256 and kept once, content
addressed), so a change, deletion, insertion or reordering breaks the chain. One head row
serialises appends: SQLite's BEGIN IMMEDIATE does that already; PostgreSQL locks the row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    DateTime,
    Integer,
    LargeBinary,
    String,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from adapter.store.models import StateBase

GENESIS = "0" * 64


class EvidenceEntry(StateBase):
    __tablename__ = "evidence"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(20))
    direction: Mapped[str | None] = mapped_column(String(3))
    peer: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str | None] = mapped_column(String(16))
    exchange_id: Mapped[int | None] = mapped_column(Integer, index=True)
    packet_id: Mapped[str | None] = mapped_column(String(36), index=True)
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(String(12))
    detail: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class EvidenceBlob(StateBase):
    __tablename__ = "evidence_blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class EvidenceHead(StateBase):
    __tablename__ = "evidence_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


#: what an entry's hash covers. Not `seq`: the order is the chain itself, so an entry moved
#: elsewhere still carries its own hash and shows as out of place, not as altered.
FIELDS = ("at", "event", "direction", "peer", "kind", "exchange_id", "packet_id",
          "content_sha256", "signature", "detail")


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes an entry's hash covers: its fields as compact, key-sorted JSON."""
    return json.dumps({k: entry.get(k) for k in FIELDS}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(entry)).hexdigest()


@dataclass
class Event:
    event: str
    direction: str | None = None
    peer: str | None = None
    kind: str | None = None
    exchange_id: int | None = None
    packet_id: str | None = None
    content: bytes | None = None
    signature: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def append(conn: Connection, events: list[Event], *, enabled: bool = True) -> None:
    """Append events to the chain inside the caller's transaction."""
    if not enabled or not events:
        return
    head_t = EvidenceHead.__table__
    q = select(head_t.c.seq, head_t.c.hash).where(head_t.c.id == 1)
    if conn.dialect.name != "sqlite":
        q = q.with_for_update()
    head = conn.execute(q).first()
    if head is None:
        conn.execute(insert(head_t).values(id=1, seq=0, hash=GENESIS,
                                           updated_at=dt.datetime.now(dt.UTC)))
        head = (0, GENESIS)  # our own insert: no one else can append before we commit
    seq, prev = head[0], head[1]
    now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    rows, blobs = [], {}
    for ev in events:
        seq += 1
        digest = None
        if ev.content is not None:
            digest = hashlib.sha256(ev.content).hexdigest()
            blobs[digest] = ev.content
        row = dict(seq=seq, at=now, event=ev.event, direction=ev.direction, peer=ev.peer,
                   kind=ev.kind, exchange_id=ev.exchange_id, packet_id=ev.packet_id,
                   content_sha256=digest, signature=ev.signature,
                   detail=json.dumps(ev.detail, sort_keys=True, ensure_ascii=False,
                                     default=str) if ev.detail else None)
        prev = row["entry_hash"] = entry_hash(prev, row)
        row["prev_hash"] = rows[-1]["entry_hash"] if rows else head[1]
        rows.append(row)
    if blobs:
        known = set(conn.execute(select(EvidenceBlob.sha256).where(
            EvidenceBlob.sha256.in_(list(blobs)))).scalars())
        new = [dict(sha256=k, content=v) for k, v in blobs.items() if k not in known]
        if new:
            conn.execute(insert(EvidenceBlob.__table__), new)
    conn.execute(insert(EvidenceEntry.__table__), rows)
    conn.execute(update(head_t).where(head_t.c.id == 1).values(
        seq=seq, hash=prev, updated_at=dt.datetime.now(dt.UTC)))


class EvidenceArchive(StateBase):
    """Entries up to `seq_to` were moved to a bundle; the chain goes on from `tip_hash`."""

    __tablename__ = "evidence_archives"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq_to: Mapped[int] = mapped_column(Integer)
    tip_hash: Mapped[str] = mapped_column(String(64))
    bundle: Mapped[str] = mapped_column(String(300))
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(DateTime)
