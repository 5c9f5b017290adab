"""`replay --state failed` streams its selection: counted by one aggregate, then replayed in
chunks of ids, never loading every matching row (a national backlog can fail by millions)."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select, update

from adapter.cli.main import main
from adapter.dbutil import make_engine
from adapter.kinds import KINDS, KindSpec
from adapter.store import ExchangeStore, NewExchange, State
from adapter.store.models import Exchange, OperatorAction

FAILED, DELIVERED = 1234, 300


def _new(i: int) -> NewExchange:
    return NewExchange(packet_id=f"00000000-0000-0000-0000-{i:012d}", kind="case",
                       source_key=f"THA-{i}", source_version=1, peer="000.00.00.G22",
                       payload=f"<p n='{i}'/>".encode())


@pytest.fixture
def failed_store(settings):
    store = ExchangeStore(make_engine(settings.url(settings.adapter.state_db)))
    store.create_schema()
    store.add_exchanges("cases", [_new(i) for i in range(1, FAILED + DELIVERED + 1)], None)
    with store.engine.begin() as c:
        c.execute(update(Exchange).where(Exchange.id <= FAILED).values(
            state=State.FAILED, attempts=12, last_error="BUSINESS_REJECTED: recipient"))
        c.execute(update(Exchange).where(Exchange.id > FAILED).values(state=State.DELIVERED))
    yield store
    store.engine.dispose()


def test_replay_streams_the_failed_selection_in_chunks(failed_store, config_file, capsys,
                                                        monkeypatch):
    # the command opens its own engine: watch every statement any engine runs
    seen: list[str] = []
    from sqlalchemy.engine import Engine

    def grab(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", grab)
    try:
        code = main(["--config", str(config_file), "replay", "--state", "failed", "--yes",
                     "--reason", "recipient fixed"])
    finally:
        event.remove(Engine, "before_cursor_execute", grab)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"{FAILED} exchanges match, {FAILED} of them failed" in out
    assert f"replayed {FAILED} exchanges" in out
    reads = [s for s in seen if s.startswith("SELECT") and "FROM exchanges" in s]
    # every read of the exchanges is an aggregate or bounded by LIMIT: none loads them all
    unbounded = [s for s in reads if "LIMIT" not in s and "count(" not in s
                 and "exchanges.id IN" not in s]
    assert not unbounded, unbounded
    moved = [s for s in seen if s.startswith("UPDATE exchanges SET state")]
    assert len(moved) == -(-FAILED // 500)  # one transaction per chunk of 500
    with failed_store.engine.connect() as c:
        states = dict(c.execute(select(Exchange.state, func.count())
                                .group_by(Exchange.state)).all())
        audit = c.execute(select(func.count()).select_from(OperatorAction)).scalar()
    assert states == {State.PENDING: FAILED, State.DELIVERED: DELIVERED}
    assert audit == FAILED


def test_replay_of_named_exchanges_refuses_those_not_failed(failed_store, config_file, capsys):
    code = main(["--config", str(config_file), "replay", "1", str(FAILED + 1), "--yes"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{FAILED + 1}: not replayed: is delivered" in out
    assert "replayed 1 exchanges" in out
    assert failed_store.get("1").state == State.PENDING


def test_kind_choices_come_from_the_registry(failed_store, config_file, capsys, monkeypatch):
    assert main(["--config", str(config_file), "exchanges", "list", "--kind", "notice"]) == 2
    assert "invalid choice: 'notice'" in capsys.readouterr().err
    import adapter.cli.exchanges as cli

    notice = KindSpec("notice", table="notices", key="notice_code", outbound="lgsp",
                      mapping="case.yaml", schema="thads/exchange.xsd")
    monkeypatch.setattr(cli, "KINDS", KINDS.with_kinds(notice))
    assert main(["--config", str(config_file), "exchanges", "list", "--kind", "notice"]) == 0
