"""An inbound round's writes are batched: the importer and the state records cost a fixed
number of statements whatever the round's size, give the outcomes the one-by-one path gives
(new, newer, same version, older, the same record twice in a round), and a record the
database refuses still fails alone. On SQLite and on PostgreSQL."""

from __future__ import annotations

import copy
import logging

import pytest
from sqlalchemy import event, func, select

from adapter.dbutil import make_engine
from adapter.kinds import KINDS
from adapter.sources.models import JudgmentRow, ObligationRow, PartyRow, SourceBase
from adapter.sources.writer import ImportResult, RecordImporter
from adapter.store import ExchangeStore
from adapter.store.models import Exchange
from adapter.store.records import Acknowledgement, InboundOutcome, ReceivedPacket
from tests.helpers import sample_record


@pytest.fixture
def source(db_url):
    engine = make_engine(db_url)
    SourceBase.metadata.create_all(engine)
    yield engine
    engine.dispose()


def judgment(i: int, *, code: str | None = None, parties: int = 2) -> dict:
    r = sample_record("judgment", i)
    for k in ("id", "updated_at", "version"):
        r.pop(k)
    r["judgment_code"] = code or f"BA-{i}"
    r["parties"] = [dict(p, full_name=f"{r['judgment_code']} party {n}")
                    for n, p in enumerate((r["parties"] * parties)[:parties])]
    return r


def statements(engine) -> dict[str, int]:
    count = {"n": 0}

    def before(*_args) -> None:
        count["n"] += 1
    event.listen(engine, "before_cursor_execute", before)
    return count


def contents(engine) -> dict:
    """What the enforcement database holds, by judgment: version and child rows."""
    with engine.connect() as c:
        rows = {j.id: (j.judgment_code, j.version, j.court_name)
                for j in c.execute(select(JudgmentRow))}
        kids: dict[str, list] = {code: [] for code, _, _ in rows.values()}
        for p in c.execute(select(PartyRow).order_by(PartyRow.full_name)):
            kids[rows[p.judgment_id][0]].append(("party", p.full_name))
        for o in c.execute(select(ObligationRow).order_by(ObligationRow.amount)):
            kids[rows[o.judgment_id][0]].append(("obligation", o.amount))
    return {code: (version, name, sorted(kids[code])) for code, version, name in rows.values()}


def plain(results):
    return [r if isinstance(r, ImportResult) else type(r).__name__ for r in results]


@pytest.mark.parametrize("n", [5, 60])
def test_the_import_costs_the_same_statements_whatever_the_round_size(source, n):
    importer = RecordImporter(source, KINDS["judgment"])
    importer.require()
    count = statements(source)
    results = importer.import_many([(judgment(i), 1) for i in range(n)])
    assert results == [ImportResult("imported", 1)] * n
    # one transaction: SAVEPOINT, read the versions, parents, their ids, parties,
    # obligations, RELEASE (SQLAlchemy adds a few of its own on PostgreSQL)
    assert count["n"] <= 10
    assert len(contents(source)) == n


def test_a_mixed_round_ends_as_the_one_by_one_import_ends(db_url, source, tmp_path):
    spec = KINDS["judgment"]
    first = [(judgment(i), 2) for i in range(6)]
    newer = judgment(1, parties=3)
    newer["court_name"] = "Tòa án nhân dân cấp cao"
    twice = judgment(7)
    round_ = [(judgment(0), 2),          # the same version: unchanged
              (newer, 3),                # newer: replaces the row and its parties
              (judgment(2), 1),          # older: refused as stale
              (twice, 1), (dict(twice, court_name="later"), 2),   # new, then newer again
              (judgment(8), 1),          # new
              (judgment(3, parties=1), 3)]
    batched = RecordImporter(source, spec)
    batched.import_many(first)
    by_batch = batched.import_many(round_)

    other = make_engine(f"sqlite:///{tmp_path}/one-by-one.db")
    SourceBase.metadata.create_all(other)
    single = RecordImporter(other, spec)
    for item in first:
        single.import_many([item])
    by_one = [r for item in round_ for r in single.import_many([item])]
    assert plain(by_batch) == plain(by_one) == [
        ImportResult("unchanged", 2), ImportResult("imported", 3), ImportResult("stale", 2),
        ImportResult("imported", 1), ImportResult("imported", 2), ImportResult("imported", 1),
        ImportResult("imported", 3)]
    assert contents(source) == contents(other)
    assert contents(source)["BA-7"][1] == "later"
    assert len(contents(source)["BA-1"][2]) == 3 + len(newer["obligations"])
    other.dispose()


def test_a_record_the_database_refuses_fails_alone(db_url, source):
    """A value longer than the ministry's column: the round's batch is refused as a whole,
    then each record is written in its own SAVEPOINT, so only that one fails."""
    with source.begin() as c:
        if source.dialect.name == "sqlite":
            c.exec_driver_sql(
                "CREATE TRIGGER court_name_length BEFORE INSERT ON judgments "
                "WHEN length(NEW.court_name) > 100 BEGIN "
                "SELECT RAISE(ABORT, 'value too long for judgments.court_name'); END")
        else:
            c.exec_driver_sql("ALTER TABLE judgments ALTER COLUMN court_name TYPE varchar(100)")
    poison = dict(judgment(2), court_name="x" * 150)
    importer = RecordImporter(source, KINDS["judgment"])
    results = importer.import_many([(judgment(1), 1), (poison, 1), (judgment(3), 1)])
    assert results[0] == results[2] == ImportResult("imported", 1)
    assert isinstance(results[1], Exception)
    held = contents(source)
    assert sorted(held) == ["BA-1", "BA-3"]
    assert all(len(kids) == 3 for _, _, kids in held.values())  # nothing partial


# ---- the state database ----------------------------------------------------------------------

@pytest.fixture
def store(db_url):
    s = ExchangeStore(make_engine(db_url), instance="test")
    s.create_schema()
    yield s
    s.engine.dispose()


def received(store, n: int) -> dict[str, int]:
    return store.add_inbound_many("judgments", [
        ReceivedPacket(f"p-{i}", "judgment", "000.00.00.T01", b"<p/>") for i in range(n)])


@pytest.mark.parametrize("n", [4, 40])
def test_recording_a_round_costs_the_same_statements_whatever_its_size(store, n):
    ids = received(store, n)
    count = statements(store.engine)
    store.finish_round([InboundOutcome(i, k % 3 != 0, None if k % 3 else "bad", "valid",
                                       f"BA-{i}", 1) for k, i in enumerate(ids.values())])
    assert count["n"] <= 12
    count["n"] = 0
    store.mark_acknowledged_many([Acknowledgement(i, "accepted") for i in ids.values()])
    assert count["n"] <= 8
    with store.engine.connect() as c:
        states = dict(c.execute(select(Exchange.state, func.count())
                                .group_by(Exchange.state)).all())
        acks = c.execute(select(func.count()).where(
            Exchange.receipt_status == "ack:accepted")).scalar()
    assert states == {"delivered": n - len(range(0, n, 3)), "failed": len(range(0, n, 3))}
    assert acks == n


def test_an_outcome_for_a_packet_no_longer_pending_is_detected_and_logged(store, caplog):
    """Another instance concluded the packet first: its outcome stands, ours is not written
    over it, and the log says so (the executemany's row count is checked)."""
    ids = list(received(store, 3).values())
    store.finish_round([InboundOutcome(ids[1], False, "quarantined by the other instance")])
    with caplog.at_level(logging.WARNING, logger="adapter.store"):
        store.finish_round([InboundOutcome(i, True, None, "valid", f"BA-{i}", 1)
                            for i in ids])
    with store.engine.connect() as c:
        rows = dict(c.execute(select(Exchange.id, Exchange.state)).all())
        error = c.execute(select(Exchange.last_error).where(Exchange.id == ids[1])).scalar()
    assert rows == {ids[0]: "delivered", ids[1]: "failed", ids[2]: "delivered"}
    assert error == "quarantined by the other instance"
    lost = [r.getMessage() for r in caplog.records if "no longer pending" in r.getMessage()]
    assert len(lost) == 1 and f"exchange {ids[1]}:" in lost[0]


def test_outcomes_with_different_columns_keep_their_own_values(store):
    """Grouped by the columns they write: a quarantine without a source key leaves the
    one recorded at receipt alone, an import sets its key and version."""
    ids = list(received(store, 2).values())
    store.finish_round([InboundOutcome(ids[0], True, None, "valid", "BA-9", 4),
                        InboundOutcome(ids[1], False, "bad signature", "invalid")])
    with store.engine.connect() as c:
        rows = {r.id: r for r in c.execute(select(Exchange))}
    assert (rows[ids[0]].source_key, rows[ids[0]].source_version) == ("BA-9", 4)
    assert (rows[ids[1]].source_key, rows[ids[1]].source_version) == ("p-1", 0)
    assert rows[ids[1]].signature == "invalid" and rows[ids[0]].delivered_at is not None
    assert rows[ids[1]].delivered_at is None
    assert {r.attempts for r in rows.values()} == {1}


def test_copying_a_record_does_not_share_child_rows():
    """(guard for the tests above: judgment() builds independent child lists)"""
    a = judgment(1)
    b = copy.deepcopy(a)
    b["parties"][0]["full_name"] = "changed"
    assert a["parties"][0]["full_name"] != "changed"
