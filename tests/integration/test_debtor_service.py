"""Debtor register notices through the service, end to end: source rows -> signed packets
(in a spawned sign worker, as in production) -> the simulator over HTTP -> the evidence
log; a notice the register refused is replayed by the operator once its cause is gone."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest
from sqlalchemy import func, insert, select

from adapter.dbutil import make_engine
from adapter.mapping import packet_id
from adapter.service.runner import Service
from adapter.sources.models import DebtorEntryRow
from adapter.sources.synth import generate, sample_notices
from adapter.store.evidence import EvidenceEntry
from adapter.store.models import Exchange
from adapter.store.records import ExchangeFilter
from adapter.store.repository import ExchangeStore
from adapter.store.states import State
from tests.conftest import free_port, write_config

pytestmark = pytest.mark.slow

ROUTE = """
[[routes]]
name = "debtors"
kind = "debtor"
recipient = "000.00.00.G22"
interval_seconds = 0.5
batch_size = 50
"""


@pytest.fixture
def config_file(tmp_path, pki):
    return write_config(tmp_path, pki, sim_port=free_port(), sign_workers=1, routes=ROUTE)


def run(settings) -> int:
    service = Service(settings)
    service.ctx.store.create_schema()
    try:
        return service.run(until_idle=True, poll=0.05)
    finally:
        service.ctx.close()


def source_notices(settings) -> list[tuple[str, int, str]]:
    with make_engine(settings.url(settings.source.url)).connect() as c:
        return [tuple(r) for r in c.execute(select(
            DebtorEntryRow.entry_code, DebtorEntryRow.version, DebtorEntryRow.action)
            .order_by(DebtorEntryRow.entry_code, DebtorEntryRow.version))]


def test_notices_are_delivered_once_in_order_and_logged(settings, sim):
    totals = generate(make_engine(settings.url(settings.source.url)), cases=300)
    notices = source_notices(settings)
    assert len(notices) == totals["debtor_notices"] > totals["debtors"] > 0
    actions = Counter(a for _, _, a in notices)
    assert actions["CN"] and actions["RUT"]  # the demo has updates and withdrawals

    assert run(settings) == 0
    report = sim.report()
    expected = {packet_id("debtor", key, v) for key, v, _ in notices}
    assert set(report["packets"]) == expected
    assert set(report["packets"].values()) == {1}  # each sent once
    last = {key: a for key, _, a in notices}  # the register shows each entry's last notice
    word = {"CB": "cong-bo", "CN": "cap-nhat", "RUT": "rut"}
    assert report["debtor_register"] == dict(Counter(word[a] for a in last.values()))

    store = ExchangeStore(make_engine(settings.url(settings.adapter.state_db)))
    found = store.find(ExchangeFilter(kind="debtor"))
    assert {e.packet_id for e in found} == expected
    assert {e.state for e in found} == {State.DELIVERED}
    with store.engine.connect() as c:
        logged = c.execute(select(EvidenceEntry.event, EvidenceEntry.packet_id,
                                  EvidenceEntry.detail).where(EvidenceEntry.kind == "debtor")
                           ).all()
    built = {p for e, p, _ in logged if e == "built"}
    delivered = {p for e, p, d in logged if e == "attempt"
                 and json.loads(d)["outcome"] == "delivered"}
    assert built == delivered == expected


def test_a_refused_withdrawal_is_replayed_after_the_publish_arrives(settings, sim):
    engine = make_engine(settings.url(settings.source.url))
    generate(engine, cases=20)
    assert run(settings) == 0
    base = {k: v for k, v in sample_notices()[0].items() if k != "case_code"}
    entry = "CDK-TEST-00000001"
    at = dt.datetime(2027, 3, 1, 9, 0)
    withdraw = dict(base, entry_code=entry, version=2, action="RUT", updated_at=at,
                    action_reason="Người phải thi hành án đã có điều kiện thi hành án")
    with engine.begin() as c:  # the office's software wrote the withdrawal, not the publish
        c.execute(insert(DebtorEntryRow), [withdraw])
    assert run(settings) == 1  # something failed
    store = ExchangeStore(make_engine(settings.url(settings.adapter.state_db)))
    [failed] = store.find(ExchangeFilter(kind="debtor", state=State.FAILED))
    assert failed.source_key == entry and failed.source_version == 2
    assert "never published" in failed.last_error

    with engine.begin() as c:  # the missing publish is written; it leaves as version 1
        c.execute(insert(DebtorEntryRow), [dict(base, entry_code=entry, version=1,
                                                updated_at=at + dt.timedelta(days=1))])
    assert run(settings) == 0
    assert store.get(str(failed.id)).state == State.FAILED  # nothing resends it by itself
    assert store.replay([failed.id], actor="operator", reason="publish now delivered").done \
        == [failed.id]
    assert run(settings) == 0
    report = sim.report()
    assert report["packets"][packet_id("debtor", entry, 1)] == 1
    assert report["packets"][packet_id("debtor", entry, 2)] == 1  # stored once
    assert store.get(str(failed.id)).state == State.DELIVERED
    with store.engine.connect() as c:
        events = [e for e, in c.execute(select(EvidenceEntry.event).where(
            EvidenceEntry.exchange_id == failed.id).order_by(EvidenceEntry.seq))]
        n = c.execute(select(func.count()).select_from(Exchange).where(
            Exchange.kind == "debtor", Exchange.source_key == entry)).scalar()
    assert events[0] == "built" and "replay" in events and events[-1] == "attempt"
    assert n == 2  # the replay sent the same exchange again, it made no new one
