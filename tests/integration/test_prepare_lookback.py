"""Preparing looks up only the packet ids it may have prepared before: those of the records
the lookback window reads again. A record after the stored cursor is new (the cursor moves
in the transaction that adds its exchange), so it is built without a lookup: each lookup is
a read at a random place of the largest index of the state database."""

import datetime as dt

from sqlalchemy import func, select, update

from adapter.config import load_settings
from adapter.dbutil import make_engine
from adapter.engine.context import Context
from adapter.engine.outbound import OutboundEngine
from adapter.mapping import packet_id
from adapter.sources.changes import SourceCursor
from adapter.sources.models import CaseRow
from adapter.sources.synth import generate
from adapter.store.models import Exchange
from tests.conftest import write_config


def test_only_records_inside_the_lookback_window_are_looked_up_and_none_is_built_twice(
        tmp_path, pki, monkeypatch):
    cfg = write_config(tmp_path, pki)
    cfg.write_text(cfg.read_text().replace("[source]\n", "[source]\nlookback_seconds = 86400\n",
                                           1))
    s = load_settings(cfg)
    assert s.source.lookback_seconds == 86400
    source = make_engine(s.url(s.source.url))
    generate(source, cases=40)
    ctx = Context(s)
    ctx.store.create_schema()
    asked: list[list[str]] = []
    built: list[list[str]] = []
    lookup, build_many = ctx.store.existing_packet_ids, ctx.build_many
    monkeypatch.setattr(ctx.store, "existing_packet_ids",
                        lambda ids: asked.append(list(ids)) or lookup(ids))
    monkeypatch.setattr(ctx, "build_many",
                        lambda rs, to: built.append([r.key for r in rs]) or build_many(rs, to))
    route = s.route("cases")
    engine = OutboundEngine(ctx)
    try:
        first = engine.prepare(route)
        assert first.prepared == 40
        assert sum(map(len, built)) == 40 and not any(asked)  # no cursor yet: all new

        asked.clear()
        built.clear()
        again = engine.prepare(route)  # the window reads the last day again
        assert again.prepared == again.rejected == 0
        reread = {i for ids in asked for i in ids}
        assert reread and not any(built)  # looked up, found, not built again
        cursor = SourceCursor.decode(ctx.store.cursor(route.name))

        with source.begin() as c:  # one case changes after the cursor: a new version
            key = c.execute(select(CaseRow.case_code).where(CaseRow.id == 7)).scalar_one()
            c.execute(update(CaseRow).where(CaseRow.id == 7).values(
                version=CaseRow.version + 1,
                updated_at=cursor.updated_at + dt.timedelta(seconds=5)))
        asked.clear()
        built.clear()
        third = engine.prepare(route)
        assert third.prepared == 1
        assert [k for keys in built for k in keys] == [key]
        new_id = packet_id("case", key, 2)
        assert new_id not in {i for ids in asked for i in ids}  # after the cursor: no lookup
        # the window, as before (less case 7's first version: that row now reads as its second)
        assert {i for ids in asked for i in ids} == reread - {packet_id("case", key, 1)}
        with ctx.state_engine.connect() as c:
            assert c.execute(select(func.count()).select_from(Exchange)).scalar() == 41
    finally:
        ctx.close()


def test_a_packet_another_instance_added_first_is_not_counted_as_prepared(tmp_path, pki):
    """Two instances may read the same records (each from its own view of the cursor): the
    insert keeps the first exchange, and the round counts only what it added."""
    from adapter.sources.changes import ChangeReader

    s = load_settings(write_config(tmp_path, pki))
    source = make_engine(s.url(s.source.url))
    generate(source, cases=10)
    ctx = Context(s)
    ctx.store.create_schema()
    route = s.route("cases")
    try:
        rec = ChangeReader(source, "case", 500).read(SourceCursor.decode(None))[3]
        # the other instance's exchange, committed before this one moved its cursor
        assert len(ctx.store.add_exchanges(route.name, ctx.build_many([rec], ""), None)) == 1
        stats = OutboundEngine(ctx).prepare(route)
        assert (stats.prepared, stats.rejected) == (9, 0)
        with ctx.state_engine.connect() as c:
            assert c.execute(select(func.count()).select_from(Exchange)).scalar() == 10
    finally:
        ctx.close()
