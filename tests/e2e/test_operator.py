"""The operator's replay and cancel, in bulk, with no duplicate at the receiver."""

import pytest
from sqlalchemy import func, select

from adapter.cli.main import main
from adapter.dbutil import make_engine
from adapter.service.runner import Service
from adapter.sources.synth import generate
from adapter.store.models import Exchange, OperatorAction

pytestmark = pytest.mark.slow


def run(settings) -> int:
    service = Service(settings)
    service.ctx.store.create_schema()
    try:
        return service.run(until_idle=True, poll=0.05)
    finally:
        service.ctx.close()


def states(settings) -> dict[str, int]:
    with make_engine(settings.url(settings.adapter.state_db)).connect() as c:
        return dict(c.execute(select(Exchange.state, func.count()).group_by(Exchange.state)).all())


def test_bulk_replay_of_1000_failed_exchanges_delivers_each_once(settings, sim, config_file,
                                                                 capsys):
    totals = generate(make_engine(settings.url(settings.source.url)), cases=510)
    expected = totals["cases"] + totals["receipts"]
    assert expected >= 1000
    sim.control(reject_rate=1.0)  # the platform refuses everything (say, a wrong recipient)
    assert run(settings) == 1
    assert states(settings) == {"failed": expected}
    cfg = ["--config", str(config_file)]
    # dry run changes nothing
    assert main([*cfg, "replay", "--state", "failed", "--dry-run"]) == 0
    assert f"{expected} exchanges match, {expected} of them failed" in capsys.readouterr().out
    assert states(settings) == {"failed": expected}
    # bulk replay needs a confirmation; without a terminal, --yes
    assert main([*cfg, "replay", "--state", "failed"]) == 2
    assert "need --yes" in capsys.readouterr().err
    sim.control(reject_rate=0.0)  # the cause is fixed
    assert main([*cfg, "replay", "--state", "failed", "--yes", "--reason", "recipient fixed"]) == 0
    assert f"replayed {expected} exchanges" in capsys.readouterr().out
    assert run(settings) == 0
    assert states(settings) == {"delivered": expected}
    report = sim.report()
    assert report["accepted"] == expected and set(report["packets"].values()) == {1}
    with make_engine(settings.url(settings.adapter.state_db)).connect() as c:
        audit = c.execute(select(OperatorAction.action, OperatorAction.reason,
                                 func.count()).group_by(OperatorAction.action,
                                                        OperatorAction.reason)).all()
    assert audit == [("replay", "recipient fixed", expected)]


def test_replay_refuses_what_cannot_be_replayed_and_cancel_records_why(settings, sim,
                                                                        config_file, capsys):
    generate(make_engine(settings.url(settings.source.url)), cases=5)
    assert run(settings) == 0
    cfg = ["--config", str(config_file)]
    assert main([*cfg, "replay", "1"]) == 1
    assert "only failed exchanges are replayed" in capsys.readouterr().out
    assert main([*cfg, "exchanges", "cancel", "1", "--reason", "sent by mistake"]) == 1
    assert "only pending, retry_wait or failed" in capsys.readouterr().out
    sim.control(reject_rate=1.0)
    engine = make_engine(settings.url(settings.source.url))
    with engine.begin() as c:
        from sqlalchemy import update

        from adapter.sources.models import CaseRow
        c.execute(update(CaseRow).where(CaseRow.id == 2).values(
            version=2, updated_at=__import__("datetime").datetime(2027, 1, 1)))
    assert run(settings) == 1
    with make_engine(settings.url(settings.adapter.state_db)).connect() as c:
        (failed_id,) = c.execute(select(Exchange.id).where(Exchange.state == "failed")).scalars()
    assert main([*cfg, "exchanges", "cancel", str(failed_id), "--reason", "duplicate case"]) == 0
    assert main([*cfg, "exchanges", "show", str(failed_id)]) == 0
    out = capsys.readouterr().out
    assert "state cancelled" in out and "cancel" in out and "duplicate case" in out
