"""The state database's hot-path writes stay local as the table grows (issue 12).

Packet ids and digests are hash-like: an index keyed by them takes every insert at a random
position, so once it outgrows the page cache each new packet dirties (and later checkpoints)
a page of its own in every such index, and the backfill's cost per packet grew with the
table. Only the unique packet-id index of `exchanges` (what makes packet ids idempotent)
may take such inserts; the packet bytes, evidence entries and attempts append.

Measured as SQLite does the work: the pages one transaction writes to the WAL, attributed to
their B-tree through the `dbstat` table. Page counts are deterministic (no timing).
"""

from __future__ import annotations

import collections
import datetime as dt
import sqlite3
import struct
from pathlib import Path

from adapter.dbutil import make_engine
from adapter.mapping import packet_id
from adapter.store import AttemptOutcome, ExchangeStore, NewExchange
from adapter.store import evidence as _evidence  # noqa: F401 - registers the evidence tables
from adapter.store.models import StateBase
from adapter.store.states import RetryPolicy

BATCH = 500  # the source batch the outbound engine prepares in one transaction
ROWS = 20_000  # the random-key indexes are then ~200 leaf pages each: past a 500-row batch
#: pages a B-tree that appends may take from one transaction of BATCH packets (the evidence
#: table's ~300-byte entries take ~50; before the fix the digest and packet-id indexes took
#: 190-350 each at these rows)
LOCAL = 100
#: the one index allowed inserts at random positions: idempotent packet ids
IDEMPOTENCY = "sqlite_autoindex_exchanges_1"

POLICY = RetryPolicy(max_attempts=5, base_delay=1, max_delay=10, max_age=dt.timedelta(hours=1))


def _items(start: int) -> list[NewExchange]:
    return [NewExchange(packet_id("case", f"C{i:08d}", 1), "case", f"C{i:08d}", 1,
                        "000.00.00.G22", b"<Case>" + f"{i:08d}".encode() * 400 + b"</Case>")
            for i in range(start, start + BATCH)]


def _deliver_all(store: ExchangeStore) -> None:
    while claimed := store.claim("cases", limit=200, lease_seconds=60):
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        store.record_outcomes([AttemptOutcome(e.id, now, 5, "delivered") for e in claimed],
                              {e.id: e for e in claimed}, POLICY)


def _truncate_wal(db: Path) -> None:
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0


def _written_pages(db: Path) -> collections.Counter[str]:
    """Distinct pages in the WAL (one transaction's, after a truncation), by B-tree."""
    raw = (db.parent / (db.name + "-wal")).read_bytes()
    size = struct.unpack(">I", raw[8:12])[0]
    pages = {struct.unpack(">I", raw[off:off + 4])[0]
             for off in range(32, len(raw) - 24 - size + 1, 24 + size)}
    with sqlite3.connect(db) as c:
        owner = dict(c.execute("SELECT pageno, name FROM dbstat"))
    return collections.Counter(owner.get(p, "?") for p in pages)


def test_preparing_and_recording_outcomes_write_few_pages_per_index_at_20000_rows(tmp_path):
    db = tmp_path / "state.db"
    engine = make_engine(f"sqlite:///{db}")
    StateBase.metadata.create_all(engine)
    store = ExchangeStore(engine, instance="test", evidence=True)
    for start in range(0, ROWS, BATCH):
        store.add_exchanges("cases", _items(start), f"{start:010d}")
        _deliver_all(store)

    _truncate_wal(db)
    store.add_exchanges("cases", _items(ROWS), f"{ROWS:010d}")
    prepared = _written_pages(db)
    _truncate_wal(db)
    claimed = store.claim("cases", limit=200, lease_seconds=60)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    store.record_outcomes([AttemptOutcome(e.id, now, 5, "delivered") for e in claimed],
                          {e.id: e for e in claimed}, POLICY)
    recorded = _written_pages(db)
    engine.dispose()

    # the idempotency index does take random inserts: the measurement sees them
    assert prepared[IDEMPOTENCY] > 100
    scattered = {(tx, name): n for tx, pages in (("prepare", prepared), ("record", recorded))
                 for name, n in pages.items()
                 if n > LOCAL and name not in (IDEMPOTENCY, "packets")}
    assert scattered == {}, f"B-trees written at random positions: {scattered}"
    # the packet bytes themselves: about one page per packet of ~3 KB, appended
    assert prepared["packets"] <= BATCH * 1.2
