"""The operator guide's PostgreSQL role for operators, run for real: the SQL block is read
from docs/operator-guide.md and executed on the suite's server, then the operator CLI runs
as that role. Operators list, show, replay and cancel; the packets' bytes stay out of reach."""

import re

import psycopg
import pytest
from sqlalchemy import select

from adapter.cli.main import main
from adapter.dbutil import make_engine
from adapter.store.models import Exchange, OperatorAction
from adapter.store.repository import ExchangeStore, NewExchange
from tests.conftest import ROOT, free_port, write_config

CITIZEN_ID = "079203001234"


def _guide_sql() -> str:
    guide = (ROOT / "docs" / "operator-guide.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- operator-role -->\s*```sql\n(.*?)```", guide, re.S)
    assert m, "the operator guide's PostgreSQL operator role (```sql after <!-- operator-role -->)"
    return m.group(1)


@pytest.fixture
def state(pg_url, tmp_path, pki):
    """The service's database (created as the owner), two exchanges, one with a packet."""
    owner_cfg = write_config(tmp_path / "svc", pki, state_db=pg_url, sim_port=free_port())
    assert main(["--config", str(owner_cfg), "init"]) == 0
    store = ExchangeStore(make_engine(pg_url))
    store.add_exchanges("cases", [
        NewExchange(f"00000000-0000-0000-0000-00000000000{n}", "case", f"K-{n}", 1,
                    "000.00.00.G22",
                    payload=f"<Case><CitizenId>{CITIZEN_ID}</CitizenId></Case>".encode())
        for n in (1, 2)], None)
    with store.engine.begin() as c:
        c.execute(Exchange.__table__.update().values(state="failed"))
    sql = _guide_sql().replace("thads_adapter", pg_url.rsplit("/", 1)[1])
    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"),
                         autocommit=True) as c:
        c.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                  "'thads_operator') THEN CREATE ROLE thads_operator; END IF; END $$")
        c.execute("DROP ROLE IF EXISTS alice")
        c.execute(sql.replace("CREATE ROLE thads_operator;", ""))
    operator_url = pg_url.replace("//postgres@", "//alice@")
    cfg = write_config(tmp_path / "op", pki, state_db=operator_url, sim_port=free_port())
    return store, cfg, operator_url


def test_the_operator_role_lists_shows_replays_and_cancels(state, capsys):
    store, cfg, _ = state
    ids = sorted(r.id for r in store.engine.connect().execute(select(Exchange.id)))
    for argv in (["status"], ["exchanges", "list"], ["exchanges", "show", str(ids[0])],
                 ["replay", str(ids[0]), "--reason", "platform fixed"],
                 ["exchanges", "cancel", str(ids[1]), "--reason", "duplicate case"]):
        assert main(["--config", str(cfg), *argv]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "K-1" in out and CITIZEN_ID not in out
    with store.engine.connect() as c:
        actions = c.execute(select(OperatorAction.action, OperatorAction.actor)).all()
    assert {a for a, _ in actions} == {"replay", "cancel"}


def test_the_operator_role_cannot_read_packet_bytes_through_the_cli_or_sql(state, capsys):
    store, cfg, operator_url = state
    some_id = store.engine.connect().execute(select(Exchange.id)).scalars().first()
    assert main(["--config", str(cfg), "exchanges", "show", str(some_id), "--xml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'alice' may not do this" in err and "packets" in err
    with psycopg.connect(operator_url.replace("postgresql+psycopg", "postgresql")) as c, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("SELECT payload FROM packets").fetchall()
    with psycopg.connect(operator_url.replace("postgresql+psycopg", "postgresql")) as c, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("UPDATE evidence SET detail = 'x'")
