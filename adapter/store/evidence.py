"""The append-only evidence log: every packet sent or received, every platform answer and
acknowledgement, every operator replay or cancel, hash-chained.

Entries are appended inside the transaction that makes the state change they record, so
the log and the state never disagree. Each entry's hash covers the previous entry's hash and
its own content, so a change, deletion, insertion or reordering breaks the chain. Packet
bytes are not copied here: an entry names them by SHA-256 and they stay in the store's
`packets` table, the one copy (emptied only once `audit archive` has written them to a
bundle). One head row serialises appends: SQLite's BEGIN IMMEDIATE does that already;
PostgreSQL locks the row.

Entries are indexed by their sequence (the primary key, appended in order) and by exchange
id (ids grow with time): never by packet id or digest, which are hash-like, so an index on
them would take every insert at a random position and dirty a page of its own per entry
once it outgrows the page cache. An entry's packet is found through its packet id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import (
    DateTime,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from adapter.store.models import Exchange, Packet, StateBase
from adapter.store.states import FINAL

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
    packet_id: Mapped[str | None] = mapped_column(String(36))
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(String(12))
    detail: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


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


#: json.dumps with options builds an encoder per call; two entries per packet make that a
#: cost of its own. The same options, built once, give the same bytes.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_DETAIL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes an entry's hash covers: its fields as compact, key-sorted JSON."""
    return _CANONICAL.encode({k: entry.get(k) for k in FIELDS}).encode()


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
    #: the packet's bytes, as stored in `packets` by the same transaction (only their
    #: SHA-256 is recorded here).
    content: bytes | None = None
    signature: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    #: the SHA-256 of `content` when the caller has it already (it computed it for the
    #: `packets` row): saves hashing the payload twice.
    content_sha256: str | None = None


def table_of(model: type[StateBase]) -> Table:
    """A model's table, typed as the Table it is (the declarative base types it loosely)."""
    return cast(Table, model.__table__)


def append(conn: Connection, events: list[Event], *, enabled: bool = True) -> None:
    """Append events to the chain inside the caller's transaction."""
    if not enabled or not events:
        return
    head_t = table_of(EvidenceHead)
    q = select(head_t.c.seq, head_t.c.hash).where(head_t.c.id == 1)
    if conn.dialect.name != "sqlite":
        q = q.with_for_update()
    head = conn.execute(q).first()
    if head is None:
        conn.execute(insert(head_t).values(id=1, seq=0, hash=GENESIS,
                                           updated_at=dt.datetime.now(dt.UTC)))
        seq, start = 0, GENESIS  # our own insert: no one else can append before we commit
    else:
        seq, start = head[0], head[1]
    prev = start
    now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    rows: list[dict[str, Any]] = []
    for ev in events:
        seq += 1
        digest = ev.content_sha256
        if digest is None and ev.content is not None:
            digest = hashlib.sha256(ev.content).hexdigest()
        row = dict(seq=seq, at=now, event=ev.event, direction=ev.direction, peer=ev.peer,
                   kind=ev.kind, exchange_id=ev.exchange_id, packet_id=ev.packet_id,
                   content_sha256=digest, signature=ev.signature,
                   detail=_DETAIL.encode(ev.detail) if ev.detail else None)
        prev = row["entry_hash"] = entry_hash(prev, row)
        row["prev_hash"] = rows[-1]["entry_hash"] if rows else start
        rows.append(row)
    conn.execute(insert(table_of(EvidenceEntry)), rows)
    conn.execute(update(head_t).where(head_t.c.id == 1).values(
        seq=seq, hash=prev, updated_at=dt.datetime.now(dt.UTC)))


class EvidenceArchive(StateBase):
    """Entries up to `seq_to` were moved to a bundle; the chain goes on from `tip_hash`.

    The checkpoint made with the archive signs this row (its seq_to, tip and bundle digest),
    so a fabricated row cannot erase a prefix of the log. `checkpoint_number` and
    `checkpoint_hash` name the last checkpoint moved into the bundle: the checkpoints left
    in the database continue its chain (both are NULL for archives made before v2
    checkpoints, which kept every checkpoint row)."""

    __tablename__ = "evidence_archives"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq_to: Mapped[int] = mapped_column(Integer)
    tip_hash: Mapped[str] = mapped_column(String(64))
    bundle: Mapped[str] = mapped_column(String(300))
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    checkpoint_number: Mapped[int | None] = mapped_column(Integer)
    checkpoint_hash: Mapped[str | None] = mapped_column(String(64))


class Checkpoint(StateBase):
    """A signed statement of the chain's tip (see adapter.audit.checkpoint)."""

    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(Integer)
    tip_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[str] = mapped_column(String(32))
    statement: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(Text)  # base64
    cert_pem: Mapped[str] = mapped_column(Text)
    tsa_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    stamped_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


# ---- reads and writes of the evidence tables, for adapter.audit ------------------------

def has_tables(conn: Connection, *names: str) -> bool:
    insp = inspect(conn)
    return all(insp.has_table(n) for n in names)


def head(conn: Connection) -> tuple[int, str] | None:
    h = table_of(EvidenceHead)
    row = conn.execute(select(h.c.seq, h.c.hash).where(h.c.id == 1)).first()
    return (row[0], row[1]) if row else None


def entries(conn: Connection, *, after: int = 0, upto: int | None = None,
            limit: int | None = None) -> list[dict[str, Any]]:
    """Entries after `after` (and up to `upto`), in sequence order, as dicts."""
    t = table_of(EvidenceEntry)
    q = select(t).where(t.c.seq > after).order_by(t.c.seq)
    if upto is not None:
        q = q.where(t.c.seq <= upto)
    if limit is not None:
        q = q.limit(limit)
    return [dict(r._mapping) for r in conn.execute(q)]


def entry_hash_at(conn: Connection, seq: int) -> str | None:
    t = table_of(EvidenceEntry)
    return conn.execute(select(t.c.entry_hash).where(t.c.seq == seq)).scalar()


def seq_with_hash(conn: Connection, hash_: str) -> int | None:
    t = table_of(EvidenceEntry)
    return conn.execute(select(t.c.seq).where(t.c.entry_hash == hash_).limit(1)).scalar()


def packet_bytes(conn: Connection, digests: Iterable[str],
                 packet_ids: Iterable[str | None]) -> dict[str, bytes]:
    """The stored packets with these SHA-256 digests (from `packets`, the one copy), found
    through the packet ids the entries name beside them (a digest is not indexed: see
    models.Packet); archived (emptied) payloads are left out. A packet whose `sha256` is
    not one of `digests` is not returned."""
    p, x = table_of(Packet), table_of(Exchange)
    want, ids = set(digests), sorted({i for i in packet_ids if i})
    found: dict[str, bytes] = {}
    for i in range(0, len(ids), 500):
        for sha, payload in conn.execute(select(p.c.sha256, p.c.payload)
                                         .join(x, x.c.id == p.c.exchange_id)
                                         .where(x.c.packet_id.in_(ids[i:i + 500]))):
            if payload and sha in want:
                found[sha] = payload
    return found


def checkpoints(conn: Connection) -> list[dict[str, Any]]:
    t = table_of(Checkpoint)
    return [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.id))]


def archives(conn: Connection) -> list[dict[str, Any]]:
    t = table_of(EvidenceArchive)
    return [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.id))]


def latest_archive(conn: Connection) -> dict[str, Any] | None:
    """The newest archive record: the chain goes on from its tip (None: never archived)."""
    rows = archives(conn)
    return rows[-1] if rows else None


def record_archive(conn: Connection, *, seq_to: int, tip_hash: str, bundle: str,
                   bundle_sha256: str, checkpoint_number: int, checkpoint_hash: str,
                   bundled: Iterable[str]) -> int:
    """After the bundle is written: drop the archived entries and checkpoints, free the
    payloads the bundle now holds, and record the archive. Returns the packets freed.

    A payload is freed (emptied to zero bytes, its sha256 kept) when the bundle holds it
    (`bundled`: its SHA-256 digests), its exchange is final (delivered or cancelled: never
    sent or imported again), and no entry left in the log names its bytes or exchange."""
    t, p, x = table_of(EvidenceEntry), table_of(Packet), table_of(Exchange)
    digests = set(bundled)
    #: the packets the archived entries name with bytes the bundle holds (found by their
    #: packet id: a digest is not indexed, see models.Packet)
    named = sorted({(pid, sha) for pid, sha in conn.execute(
        select(t.c.packet_id, t.c.content_sha256).where(
            t.c.seq <= seq_to, t.c.content_sha256.is_not(None), t.c.packet_id.is_not(None)))
        if sha in digests})
    conn.execute(delete(t).where(t.c.seq <= seq_to))
    conn.execute(delete(table_of(Checkpoint)).where(Checkpoint.seq <= seq_to))
    live_sha = select(t.c.content_sha256).where(t.c.content_sha256.is_not(None))
    live_ex = select(t.c.exchange_id).where(t.c.exchange_id.is_not(None))
    final = select(x.c.id).where(x.c.state.in_([str(s) for s in FINAL]),
                                 x.c.id.not_in(live_ex))
    freed = 0
    for i in range(0, len(named), 500):
        chunk = named[i:i + 500]
        freed += conn.execute(update(p).where(
            p.c.exchange_id.in_(select(x.c.id).where(
                x.c.packet_id.in_([pid for pid, _ in chunk]))),
            p.c.sha256.in_([sha for _, sha in chunk]), p.c.exchange_id.in_(final),
            p.c.sha256.not_in(live_sha), func.length(p.c.payload) > 0
        ).values(payload=b"")).rowcount or 0
    conn.execute(insert(table_of(EvidenceArchive)).values(
        seq_to=seq_to, tip_hash=tip_hash, bundle=bundle, bundle_sha256=bundle_sha256,
        at=dt.datetime.now(dt.UTC).replace(tzinfo=None), checkpoint_number=checkpoint_number,
        checkpoint_hash=checkpoint_hash))
    return freed
