"""The hot queries of the outbox on a state table of a million rows, on SQLite and on a real
PostgreSQL server: the statements the store actually runs are captured and EXPLAINed, and
none may scan the exchanges table or sort (the claim reads the due set through indexes,
so its cost does not grow with the delivered rows behind it).

The table is filled in bulk by the database itself (a recursive CTE on SQLite,
generate_series on PostgreSQL), not through the pipeline.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, text

from adapter.dbutil import is_sqlite, make_engine
from adapter.store import ExchangeStore

ROWS = 1_000_000
NOW = dt.datetime(2030, 1, 1)

# state of row i: 990 pending and 200 sending (half their leases expired) at the end; a
# retry_wait every 997 rows (half of them due); a sent every 1009; a failed every 101;
# the rest delivered. Two routes, interleaved.
_STATE = """CASE
  WHEN i > {n} - 990 THEN 'pending'
  WHEN i > {n} - 1190 THEN 'sending'
  WHEN i % 997 = 0 THEN 'retry_wait'
  WHEN i % 1009 = 0 THEN 'sent'
  WHEN i % 101 = 0 THEN 'failed'
  ELSE 'delivered' END"""
_WHEN = """CASE WHEN i % 4 < 2 THEN {past} ELSE {future} END"""

#: the signed bytes of every exchange, one row each as in production (the claim reads them)
_PACKETS = ("INSERT INTO packets (exchange_id, sha256, payload) SELECT id, 'x', "
            "X'3c702f3e' FROM exchanges")


def _fill_sqlite(engine) -> None:
    state = _STATE.format(n=ROWS)
    when = _WHEN.format(past="'2029-12-31 00:00:00.000000'",
                        future="'2030-01-02 00:00:00.000000'")
    with engine.begin() as c:
        c.exec_driver_sql(f"""
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {ROWS})
INSERT INTO exchanges (id, packet_id, kind, route, direction, peer, source_key,
  source_version, state, attempts, next_attempt_at, lease_owner, lease_expires_at,
  created_at, updated_at, attempts_at_replay)
SELECT i, printf('00000000-0000-0000-0000-%012d', i), 'case',
  CASE WHEN i % 2 = 0 THEN 'cases' ELSE 'receipts' END, 'out', '000.00.00.G22',
  'THA-' || i, 1, {state}, 1, {when}, NULL, {when},
  '2029-12-01 00:00:00.000000', '2029-12-01 00:00:00.000000', 0
FROM seq""")
        c.exec_driver_sql(_PACKETS)
        c.exec_driver_sql("ANALYZE")


def _fill_postgres(engine) -> None:
    state = _STATE.format(n=ROWS)
    when = _WHEN.format(past="timestamp '2029-12-31'", future="timestamp '2030-01-02'")
    with engine.begin() as c:
        c.exec_driver_sql(f"""
INSERT INTO exchanges (id, packet_id, kind, route, direction, peer, source_key,
  source_version, state, attempts, next_attempt_at, lease_owner, lease_expires_at,
  created_at, updated_at, attempts_at_replay)
SELECT i, '00000000-0000-0000-0000-' || lpad(i::text, 12, '0'), 'case',
  CASE WHEN i % 2 = 0 THEN 'cases' ELSE 'receipts' END, 'out', '000.00.00.G22',
  'THA-' || i, 1, {state}, 1, {when}, NULL, {when},
  timestamp '2029-12-01', timestamp '2029-12-01', 0
FROM generate_series(1, {ROWS}) AS i""".replace("%", "%%"))
        c.exec_driver_sql(_PACKETS.replace("X'3c702f3e'", "'\\x3c702f3e'::bytea"))
        c.exec_driver_sql(f"SELECT setval('exchanges_id_seq', {ROWS})")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM ANALYZE")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def big_store(request, tmp_path_factory) -> Iterator[ExchangeStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('bigstate')}/state.db"
    else:
        url = _module_pg_url(request)
    store = ExchangeStore(make_engine(url), instance="plan-test", evidence=False)
    store.create_schema()
    (_fill_sqlite if is_sqlite(store.engine) else _fill_postgres)(store.engine)
    yield store
    store.engine.dispose()


def _module_pg_url(request) -> str:
    import uuid

    import psycopg

    server = request.getfixturevalue("pg_server")
    name = f"plans_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.replace("postgresql+psycopg", "postgresql") + "/postgres",
                         autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


@contextmanager
def captured(engine) -> Iterator[list[tuple[str, object]]]:
    """Every statement the engine runs inside the block, with its parameters."""
    seen: list[tuple[str, object]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "WITH")):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", grab)


def plan(engine, statement: str, parameters) -> list[str]:
    with engine.connect() as c:
        if is_sqlite(engine):
            rows = c.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            return [r[-1] for r in rows]
        return [r[0] for r in c.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()]


def scans_or_sorts(engine, lines: list[str]) -> list[str]:
    """Plan lines that read a whole table or index, or sort."""
    if is_sqlite(engine):
        return [x for x in lines if x.startswith("SCAN") or "TEMP B-TREE" in x]
    return [x for x in lines if "Seq Scan" in x or "Sort" in x]


def assert_index_only_plans(store: ExchangeStore, run: Callable[[], object]) -> list[str]:
    with captured(store.engine) as seen:
        run()
    assert seen, "the store ran no statement"
    everything = []
    for statement, parameters in seen:
        lines = plan(store.engine, statement, parameters)
        bad = scans_or_sorts(store.engine, lines)
        assert not bad, f"{statement[:400]}\nplan:\n" + "\n".join(x[:200] for x in lines)
        everything += lines
    return everything


def test_the_claim_reads_the_due_set_through_indexes_without_sorting(big_store):
    got: list = []
    lines = assert_index_only_plans(big_store, lambda: got.extend(big_store.claim(
        "cases", limit=200, lease_seconds=60, now=NOW)))
    # the plans name the claim's indexes (not the primary key walked in order)
    assert any("ix_exchanges_queue" in x for x in lines)
    assert any("ix_exchanges_claim" in x for x in lines)
    assert len(got) == 200


def test_the_claim_takes_the_lowest_due_ids_as_before(big_store):
    """Same due set and order: expired leases and due retries (ids far below the pending
    ones) come first; retries not yet due and live leases are left alone."""
    with big_store.engine.connect() as c:
        due = [r[0] for r in c.execute(text(
            "SELECT id FROM exchanges WHERE route = 'receipts' AND direction = 'out' AND "
            "(state = 'pending' OR (state = 'retry_wait' AND next_attempt_at <= :now) OR "
            "(state = 'sending' AND lease_expires_at < :now)) ORDER BY id LIMIT 300"),
            {"now": NOW})]
    claimed = big_store.claim("receipts", limit=300, lease_seconds=60, now=NOW)
    assert [x.id for x in claimed] == due
    assert any(i < ROWS - 1190 for i in due)  # retries were among them


def test_the_other_hot_queries_do_not_scan(big_store):
    assert_index_only_plans(big_store, lambda: big_store.sent_to_check(
        "cases", limit=200, now=NOW))
    assert_index_only_plans(big_store, lambda: big_store.has_outstanding())
    assert_index_only_plans(big_store, lambda: big_store.existing_packet_ids(
        [f"00000000-0000-0000-0000-{i:012d}" for i in range(1, 500)]))
