"""Change capture on SQLite and PostgreSQL: batches, cursor order, updates seen again."""

import datetime as dt
import tracemalloc

from sqlalchemy import update

from adapter.dbutil import make_engine
from adapter.sources.changes import ChangeReader, SourceCursor
from adapter.sources.models import CaseRow
from adapter.sources.synth import generate


def test_batches_are_bounded_ordered_and_complete(db_url):
    engine = make_engine(db_url)
    totals = generate(engine, cases=230)
    assert generate(engine, cases=230)["cases"] == 0  # idempotent
    for kind, expected in (("case", 230), ("receipt", totals["receipts"]),
                           ("judgment", totals["judgments"])):
        reader = ChangeReader(engine, kind, batch_size=50)
        seen, last = [], SourceCursor.decode(None)
        for batch in reader.batches(last):
            assert 0 < len(batch) <= 50
            for r in batch:
                assert r.cursor > last
                last = r.cursor
                seen.append(r.key)
        assert len(seen) == len(set(seen)) == expected


def test_case_records_carry_their_parties_and_obligations(db_url):
    engine = make_engine(db_url)
    generate(engine, cases=20)
    rec = ChangeReader(engine, "case", 5).read(SourceCursor.decode(None))[0]
    assert rec.data["parties"] and rec.data["obligations"]
    assert {p["role"] for p in rec.data["parties"]} >= {"PTHA", "DTHA"}
    receipts = ChangeReader(engine, "receipt", 5).read(SourceCursor.decode(None))
    assert all(r.data["case_code"].startswith("THA-") for r in receipts)


def test_an_updated_row_is_read_again_with_its_new_version(db_url):
    engine = make_engine(db_url)
    generate(engine, cases=30)
    reader = ChangeReader(engine, "case", 100)
    everything = reader.read(SourceCursor.decode(None))
    cursor = everything[-1].cursor
    assert reader.read(cursor) == []
    with engine.begin() as c:
        c.execute(update(CaseRow).where(CaseRow.id == 3).values(
            version=CaseRow.version + 1, status="XONG",
            updated_at=cursor.updated_at + dt.timedelta(seconds=5)))
    again = reader.read(cursor)
    assert [(r.key, r.version, r.data["status"]) for r in again] == \
        [(everything[2].key, 2, "XONG")]


def test_cursor_encoding_sorts_like_the_cursor():
    a = SourceCursor(dt.datetime(2026, 1, 1, 9, 0, 0), 99)
    b = SourceCursor(dt.datetime(2026, 1, 1, 9, 0, 0), 100)
    c = SourceCursor(dt.datetime(2026, 1, 1, 10, 0, 0), 1)
    assert a.encode() < b.encode() < c.encode()
    assert SourceCursor.decode(b.encode()) == b


def test_memory_stays_flat_as_the_backlog_grows(tmp_path):
    """Reading 4,000 cases in batches of 200 must not hold more than a few batches."""
    engine = make_engine(f"sqlite:///{tmp_path}/big.db")
    generate(engine, cases=4000)
    reader = ChangeReader(engine, "case", batch_size=200)

    def peak_after(n_batches: int) -> int:
        tracemalloc.start()
        for i, _ in enumerate(reader.batches(SourceCursor.decode(None))):
            if i + 1 >= n_batches:
                break
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, large = peak_after(2), peak_after(20)
    assert large < small * 2.0, (small, large)


def test_a_status_record_is_versioned_by_its_progress_code(db_url):
    """The registry's version column: one status packet per document and progress code."""
    from sqlalchemy import insert

    from adapter.sources.models import ReceivedDocumentRow, SourceBase

    engine = make_engine(db_url)
    SourceBase.metadata.create_all(engine)
    with engine.begin() as c:
        c.execute(insert(ReceivedDocumentRow), [dict(
            document_id="000.00.79.H29,2026/03/01,12/QĐ-CCTHADS", sender="000.00.79.H29",
            progress="05", version=7, updated_at=dt.datetime(2026, 3, 1, 9, 0))])
    rec, = ChangeReader(engine, "status", 10).read(SourceCursor.decode(None))
    assert (rec.kind, rec.key, rec.version) == ("status",
                                                "000.00.79.H29,2026/03/01,12/QĐ-CCTHADS", 5)


def test_rows_of_one_instant_split_across_batches_are_each_read_once(db_url):
    """The cursor is (updated_at, id): a batch may end in the middle of rows changed at the
    same instant, and the next batch must take up exactly the rest of them."""
    engine = make_engine(db_url)
    generate(engine, cases=60)
    instant = dt.datetime(2026, 3, 1, 8, 0, 0)
    with engine.begin() as c:  # forty cases changed at one instant, the rest around it
        c.execute(update(CaseRow).where(CaseRow.id.between(10, 49)).values(updated_at=instant))
    reader = ChangeReader(engine, "case", batch_size=7)
    keys = [r.key for batch in reader.batches(SourceCursor.decode(None)) for r in batch]
    assert len(keys) == len(set(keys)) == 60


def test_each_batch_seeks_to_the_cursor_in_the_change_index_on_sqlite(tmp_path):
    """The query of a batch reads the change index from the cursor on, not from its first
    entry: a scan made each batch of a 200,000-case backfill dearer than the one before."""
    import sqlite3

    from sqlalchemy import event

    path = tmp_path / "source.db"
    engine = make_engine(f"sqlite:///{path}")
    generate(engine, cases=300)
    seen: list[tuple[str, tuple]] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, sql, params, _ctx, _many: seen.append((sql, params)))
    for kind, table in (("case", "cases"), ("receipt", "receipts"), ("judgment", "judgments")):
        reader = ChangeReader(engine, kind, batch_size=50)
        first = reader.read(SourceCursor.decode(None))
        seen.clear()
        reader.read(first[-1].cursor)
        sql, params = next((s, p) for s, p in seen if s.lstrip().startswith("SELECT")
                           and f"FROM {table}" in s)
        with sqlite3.connect(path) as raw:
            plan = [row[-1] for row in raw.execute("EXPLAIN QUERY PLAN " + sql, params)]
        assert any(line.startswith(f"SEARCH {table} USING INDEX") and "updated_at>" in line
                   for line in plan), (kind, plan)
        assert not any(line.startswith("SCAN") or "TEMP B-TREE" in line for line in plan), \
            (kind, plan)
