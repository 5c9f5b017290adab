"""The service end to end, in process: source rows -> signed packets -> simulator over HTTP."""

import datetime as dt

import pytest
from sqlalchemy import func, insert, select, update

from adapter.config import load_settings
from adapter.dbutil import make_engine
from adapter.mapping import packet_id
from adapter.service.runner import Service
from adapter.sources.models import CaseRow, ObligationRow, PartyRow, ReceiptRow
from adapter.sources.synth import BASE_TIME, generate
from adapter.store.models import Attempt, Exchange
from adapter.store.states import State
from tests.conftest import free_port, write_config

pytestmark = pytest.mark.slow


@pytest.fixture
def config_file(tmp_path, pki):
    """The production default: packets are signed in a spawned worker process."""
    return write_config(tmp_path, pki, sim_port=free_port(), sign_workers=1)


@pytest.fixture
def demo(settings):
    totals = generate(make_engine(settings.url(settings.source.url)), cases=60)
    return settings, totals["cases"] + totals["receipts"]


def run(settings) -> tuple[int, Service]:
    service = Service(settings)
    service.ctx.store.create_schema()
    try:
        code = service.run(until_idle=True, poll=0.05)
    finally:
        service.ctx.close()
    return code, service


def states(settings) -> dict[str, int]:
    with make_engine(settings.url(settings.adapter.state_db)).connect() as c:
        return dict(c.execute(select(Exchange.state, func.count()).group_by(Exchange.state)).all())


def test_every_packet_is_delivered_exactly_once(demo, sim):
    settings, expected = demo
    code, _ = run(settings)
    assert code == 0
    report = sim.report()
    assert report["accepted"] == expected
    assert set(report["packets"].values()) == {1}
    assert states(settings) == {"delivered": expected}
    # a second run finds nothing new and sends nothing again
    code, _ = run(settings)
    assert code == 0 and sim.report()["submissions"] == expected


def _add_bad_rows(engine) -> dict[str, str]:
    """Bad records of every kind the issue lists; returns source key -> expected reason."""
    t = BASE_TIME + dt.timedelta(days=1)
    bad = {}
    with engine.begin() as c:
        base = dict(acceptance_no="1/TLTHA", acceptance_date=dt.date(2026, 1, 2),
                    office_code="000.00.01.H26", kind="CD", decision_no="9/2026/QĐ-CCTHADS",
                    decision_date=dt.date(2026, 1, 3), judgment_no="1161/2025/QĐST-DS",
                    judgment_date=dt.date(2025, 5, 1), court_code="TAND-HNI", officer="Lê Văn An",
                    status="DTH", collected_amount=0, version=1)
        rows = {
            9001: (dict(officer=None), "field officer: required"),
            9002: ({}, "citizen_id: citizen id opens with 099"),
            9003: (dict(officer="NguyÔn V¨n Hïng"), "TCVN3"),
        }
        for i, (over, reason) in rows.items():
            c.execute(insert(CaseRow), [dict(base, id=i, case_code=f"THA-BAD-{i}",
                                              updated_at=t + dt.timedelta(seconds=i), **over)])
            cid = "099123456789" if i == 9002 else "001090001234"
            c.execute(insert(PartyRow), [dict(case_id=i, role="PTHA", kind="CN",
                                              full_name="Trần Thị Bình", citizen_id=cid),
                                         dict(case_id=i, role="DTHA", kind="CN",
                                              full_name="Lê Văn Cường", citizen_id=None)])
            c.execute(insert(ObligationRow), [dict(case_id=i, type="AP", amount=300_000)])
            bad[f"THA-BAD-{i}"] = reason
        rbase = dict(form_code="C1-10/NS", series="AA/26P", number="9000001",
                     issued_at=dt.datetime(2026, 2, 1, 9, 0), office_code="000.00.01.H26",
                     payer_name="Trần Thị Bình", kind="AP", method="TM", case_id=9001,
                     collector="Lê Thị Hoa", status="PH", version=1)
        receipts = {
            9101: (dict(amount=0), "field amount: amount must be greater than 0"),
            9102: (dict(amount=150_000, amount_words="Một trăm nghìn đồng"),
                   "do not read the amount 150000"),
        }
        for i, (over, reason) in receipts.items():
            c.execute(insert(ReceiptRow), [dict(rbase, id=i, receipt_code=f"BL-BAD-{i}",
                                                updated_at=t + dt.timedelta(seconds=i), **over)])
            bad[f"BL-BAD-{i}"] = reason
    return bad


def test_bad_records_fail_with_their_reason_and_the_batch_goes_on(demo, sim):
    settings, expected = demo
    bad = _add_bad_rows(make_engine(settings.url(settings.source.url)))
    code, _ = run(settings)
    assert code == 1  # something ended failed
    engine = make_engine(settings.url(settings.adapter.state_db))
    with engine.connect() as c:
        failed = dict(c.execute(select(Exchange.source_key, Exchange.last_error)
                                .where(Exchange.state == State.FAILED)).all())
        attempts = c.execute(select(func.count()).select_from(Attempt).join(
            Exchange, Attempt.exchange_id == Exchange.id).where(
            Exchange.state == State.FAILED)).scalar()
    assert set(failed) == set(bad)
    for key, reason in bad.items():
        assert reason in failed[key], (key, failed[key])
        kind = "case" if key.startswith("THA") else "receipt"
        assert f"packet {kind} {key}" in failed[key]  # names the packet
    assert attempts == 0  # nothing was sent for them
    report = sim.report()
    assert report["accepted"] == expected  # every good record went through
    for key in bad:
        kind = "case" if key.startswith("THA") else "receipt"
        assert packet_id(kind, key, 1) not in report["packets"]


def test_platform_rejection_is_recorded_and_not_retried(demo, sim):
    settings, expected = demo
    sim.control(reject_rate=1.0)
    code, _ = run(settings)
    assert code == 1
    engine = make_engine(settings.url(settings.adapter.state_db))
    with engine.connect() as c:
        errors = c.execute(select(Exchange.last_error, Exchange.attempts)).all()
        outcomes = set(c.execute(select(Attempt.outcome)).scalars())
    assert len(errors) == expected
    assert all("BUSINESS_REJECTED" in e and n == 1 for e, n in errors)
    assert outcomes == {"rejected"}
    assert sim.report()["accepted"] == 0


def test_outage_and_flaky_platform_lose_nothing_and_duplicate_nothing(demo, sim):
    settings, expected = demo
    # small batches: many calls, so the injected faults surely happen
    settings = settings.model_copy(update={"lgsp": settings.lgsp.model_copy(
        update={"batch_size": 3, "operation_timeout": 1.0})})
    sim.control(down_for_seconds=1.0, error_rate=0.3, lost_response_rate=0.3, seed=7,
                reset_rate=0.15, timeout_rate=0.15, timeout_seconds=1.5, spike_rate=0.1,
                spike_ms=400)
    code, _ = run(settings)
    assert code == 0
    report = sim.report()
    assert report["accepted"] == expected
    assert states(settings) == {"delivered": expected}
    engine = make_engine(settings.url(settings.adapter.state_db))
    with engine.connect() as c:
        transient = c.execute(select(func.count()).where(Attempt.outcome == "transient")).scalar()
        lost = c.execute(select(func.count()).where(
            Attempt.error.like("%after storing%"))).scalar()
        kinds = {e.split(":")[0] for e in c.execute(select(Attempt.error).where(
            Attempt.outcome == "transient")).scalars()}
    assert transient > 0  # the faults really happened, and were retried
    assert lost > 0
    # every kind of transient failure happened: outage, server error, lost answer,
    # timeout (a latency spike beyond the operation timeout) and a dropped connection
    assert {"platform fault UNAVAILABLE", "platform fault INTERNAL", "timed out",
            "cannot reach platform"} <= kinds, kinds
    assert report["submissions"] > expected  # lost answers were resent and deduplicated


def test_deferred_delivery_goes_through_sent(demo, sim):
    settings, expected = demo
    sim.control(deferred_seconds=0)
    code, _ = run(settings)
    assert code == 0
    assert states(settings) == {"delivered": expected}
    engine = make_engine(settings.url(settings.adapter.state_db))
    with engine.connect() as c:
        assert set(c.execute(select(Exchange.receipt_status)).scalars()) == {"queued"}
        assert set(c.execute(select(Attempt.outcome)).scalars()) == {"sent"}


def test_once_runs_each_job_once(demo, sim):
    settings, expected = demo
    service = Service(settings)
    service.ctx.store.create_schema()
    try:
        assert service.run_once() == 0
    finally:
        service.ctx.close()
    assert sim.report()["accepted"] == expected


def test_state_and_source_on_postgresql(tmp_path, pki, pg_url, pg_server, sim, settings):
    import psycopg
    src = pg_url.rsplit("/", 1)[0] + "/src_" + pg_url.rsplit("_", 1)[1]
    with psycopg.connect(pg_server.replace("postgresql+psycopg", "postgresql") + "/postgres",
                         autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{src.rsplit("/", 1)[1]}"')
    cfg = write_config(tmp_path / "pg", pki, state_db=pg_url, source_db=src, sign_workers=1,
                       sim_port=settings.simulator.port)
    pg_settings = load_settings(cfg)
    totals = generate(make_engine(src), cases=40)
    code, _ = run(pg_settings)
    assert code == 0
    assert states(pg_settings) == {"delivered": totals["cases"] + totals["receipts"]}
    assert sim.report()["accepted"] == totals["cases"] + totals["receipts"]


def test_changed_record_leaves_again_as_a_new_version(demo, sim):
    settings, expected = demo
    assert run(settings)[0] == 0
    engine = make_engine(settings.url(settings.source.url))
    with engine.begin() as c:
        c.execute(update(CaseRow).where(CaseRow.id == 5).values(
            version=2, status="XONG", updated_at=dt.datetime(2027, 1, 1)))
        key = c.execute(select(CaseRow.case_code).where(CaseRow.id == 5)).scalar()
    assert run(settings)[0] == 0
    report = sim.report()
    assert report["accepted"] == expected + 1
    assert packet_id("case", key, 2) in report["packets"]


def test_circuit_breaker_rests_the_endpoint_during_an_outage(demo, sim):
    settings, expected = demo
    settings = settings.model_copy(update={
        "retry": settings.retry.model_copy(update={"breaker_failures": 2,
                                                   "breaker_open_seconds": 1.5}),
        "lgsp": settings.lgsp.model_copy(update={"batch_size": 10})})
    sim.control(down_for_seconds=4.0)
    code, _ = run(settings)
    assert code == 0 and sim.report()["accepted"] == expected
    engine = make_engine(settings.url(settings.adapter.state_db))
    with engine.connect() as c:
        worst = c.execute(select(func.max(Exchange.attempts))).scalar()
        failed_tries = c.execute(select(func.count()).where(
            Attempt.outcome == "transient")).scalar()
    # backoff alone (0.05 s doubling to 0.5 s) would try every exchange 8 times or more in
    # a 4 s outage; with the breaker the endpoint rests and probes with one exchange
    assert failed_tries > 0
    assert worst <= 4, worst
    from adapter.store.repository import ExchangeStore
    states_seen = {b.state for b in ExchangeStore(engine).breakers()}
    assert states_seen <= {"closed", "open", "half_open"} and states_seen


def test_a_locked_state_database_makes_the_service_wait_not_fail(demo, sim):
    import sqlite3
    import threading
    import time as _time

    settings, expected = demo
    path = settings.url(settings.adapter.state_db).removeprefix("sqlite:///")
    Service(settings).ctx.store.create_schema()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the database

    def release() -> None:
        _time.sleep(3)
        holder.execute("COMMIT")

    t = threading.Thread(target=release)
    t.start()
    t0 = _time.monotonic()
    code, _ = run(settings)
    t.join()
    assert _time.monotonic() - t0 >= 3  # it really waited for the lock
    assert code == 0
    assert states(settings) == {"delivered": expected}
    assert set(sim.report()["packets"].values()) == {1}
