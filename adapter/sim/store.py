"""The simulator's durable store: what it accepted, and how often each packet came.

A plain SQLite file in WAL mode; it survives a restart of the simulator, so tests can kill
it and still count duplicates across the outage.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
  packet_id TEXT PRIMARY KEY,
  platform_message_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  sender TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  received_at TEXT NOT NULL,
  status TEXT NOT NULL,
  submissions INTEGER NOT NULL,
  payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  packet_id TEXT UNIQUE NOT NULL,
  kind TEXT NOT NULL,
  sender TEXT NOT NULL,
  recipient TEXT NOT NULL,
  payload BLOB NOT NULL,
  fetches INTEGER NOT NULL DEFAULT 0,
  ack_outcome TEXT,
  ack_reason TEXT,
  acks INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class Stored:
    packet_id: str
    platform_message_id: str
    sha256: str
    received_at: str
    status: str
    duplicate: bool


@dataclass(frozen=True)
class Incoming:
    """A packet the platform has checked and is about to store."""

    packet_id: str
    kind: str
    sender: str
    sha256: str
    payload: bytes
    status: str


class SimStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as c:
            c.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("PRAGMA busy_timeout=60000")
            self._local.conn = c
        return c

    def accept(self, *, packet_id: str, kind: str, sender: str, sha256: str, payload: bytes,
               status: str) -> Stored:
        """Store once; a second submission only counts, and gets the original receipt."""
        return self.accept_many([Incoming(packet_id, kind, sender, sha256, payload, status)])[0]

    def accept_many(self, items: list[Incoming]) -> list[Stored]:
        """`accept` for each, in order, in one transaction: a batch call's packets are
        durable together before the platform answers (one commit, not one per packet)."""
        if not items:
            return []
        now = dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).isoformat(timespec="seconds")
        c = self._conn()
        out: list[Stored] = []
        c.execute("BEGIN IMMEDIATE")
        try:
            for it in items:
                row = c.execute(
                    "INSERT INTO received VALUES (?,?,?,?,?,?,?,1,?) "
                    "ON CONFLICT(packet_id) DO UPDATE SET submissions = submissions + 1 "
                    "RETURNING platform_message_id, sha256, received_at, status, submissions",
                    (it.packet_id, f"LGSP-{uuid.uuid4()}", it.kind, it.sender, it.sha256, now,
                     it.status, it.payload)).fetchone()
                out.append(Stored(it.packet_id, row[0], row[1], row[2], row[3],
                                  duplicate=row[4] > 1))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return out

    def status_of(self, packet_id: str) -> tuple[str, str] | None:
        row = self._conn().execute(
            "SELECT status, platform_message_id FROM received WHERE packet_id=?",
            (packet_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def release_queued(self) -> int:
        """Deferred mode: queued packets become delivered the first time they are asked for."""
        return self._conn().execute(
            "UPDATE received SET status='accepted' WHERE status='queued'").rowcount

    def report(self) -> dict:
        rows = self._conn().execute(
            "SELECT packet_id, kind, submissions FROM received ORDER BY rowid").fetchall()
        by_kind: dict[str, int] = {}
        for _, kind, _ in rows:
            by_kind[kind] = by_kind.get(kind, 0) + 1
        return {"accepted": len(rows), "submissions": sum(r[2] for r in rows),
                "by_kind": by_kind, "packets": {r[0]: r[2] for r in rows}}

    # ---- outbox: packets held for the adapter (court judgments) ----------------------

    def put_outbox(self, packet_id: str, kind: str, sender: str, recipient: str,
                   payload: bytes) -> None:
        self._conn().execute(
            "INSERT INTO outbox (packet_id, kind, sender, recipient, payload) VALUES (?,?,?,?,?) "
            "ON CONFLICT(packet_id) DO NOTHING", (packet_id, kind, sender, recipient, payload))

    def pending(self, recipient: str, limit: int) -> list[tuple[str, str, str, int]]:
        return self._conn().execute(
            "SELECT packet_id, kind, sender, length(payload) FROM outbox "
            "WHERE recipient=? AND ack_outcome IS NULL ORDER BY seq LIMIT ?",
            (recipient, limit)).fetchall()

    def fetch(self, packet_id: str) -> tuple[str, str, bytes] | None:
        c = self._conn()
        c.execute("UPDATE outbox SET fetches = fetches + 1 WHERE packet_id=?", (packet_id,))
        row = c.execute("SELECT kind, sender, payload FROM outbox WHERE packet_id=?",
                        (packet_id,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def acknowledge(self, packet_id: str, outcome: str, reason: str | None) -> bool:
        return self._conn().execute(
            "UPDATE outbox SET ack_outcome=?, ack_reason=?, acks = acks + 1 WHERE packet_id=?",
            (outcome, reason, packet_id)).rowcount == 1

    def redeliver(self) -> int:
        """Simulated re-delivery: every acknowledged packet is listed again."""
        return self._conn().execute(
            "UPDATE outbox SET ack_outcome=NULL WHERE ack_outcome IS NOT NULL").rowcount

    def outbox_report(self) -> list[dict]:
        rows = self._conn().execute(
            "SELECT packet_id, kind, sender, fetches, ack_outcome, ack_reason, acks FROM outbox "
            "ORDER BY seq").fetchall()
        keys = ("packet_id", "kind", "sender", "fetches", "ack_outcome", "ack_reason", "acks")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def payload(self, packet_id: str) -> bytes | None:
        row = self._conn().execute("SELECT payload FROM received WHERE packet_id=?",
                                   (packet_id,)).fetchone()
        return row[0] if row else None
