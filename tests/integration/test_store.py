"""The state database on SQLite and on a real PostgreSQL server."""

import datetime as dt
import threading

import pytest
from sqlalchemy import select, update

from adapter.dbutil import make_engine
from adapter.store import AttemptOutcome, ExchangeStore, NewExchange, RetryPolicy, State, utcnow
from adapter.store.models import Exchange
from adapter.store.states import IllegalTransition, check

POLICY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


def new(i: int, error: str | None = None) -> NewExchange:
    return NewExchange(packet_id=f"00000000-0000-0000-0000-{i:012d}", kind="case",
                       source_key=f"THA-{i}", source_version=1, peer="000.00.00.G22",
                       payload=None if error else f"<p n='{i}'/>".encode(), error=error)


@pytest.fixture
def store(db_url):
    s = ExchangeStore(make_engine(db_url), instance="test-1")
    s.create_schema()
    return s


def state_of(store, ident):
    return store.get(str(ident)).state


def test_adding_twice_creates_one_exchange_and_the_cursor_only_moves_forward(store):
    assert len(store.add_exchanges("r", [new(1), new(2)], "2026-01-01T00:00:02.000000|2")) == 2
    assert store.add_exchanges("r", [new(2), new(3)], "2026-01-01T00:00:01.000000|9") == \
        {new(3).packet_id}
    assert store.cursor("r") == "2026-01-01T00:00:02.000000|2"
    assert store.existing_packet_ids([new(1).packet_id, "nope"]) == {new(1).packet_id}
    assert store.payload_of(new(3).packet_id) == b"<p n='3'/>"


def test_a_record_that_could_not_be_mapped_is_failed_with_its_reason(store):
    store.add_exchanges("r", [new(7, error="field officer: required")], None)
    e = store.get(new(7).packet_id)
    assert e.state == State.FAILED and "officer" in e.last_error
    assert store.claim("r", limit=10, lease_seconds=30) == []


def test_claim_is_exclusive_between_concurrent_claimers(db_url, store):
    store.add_exchanges("r", [new(i) for i in range(1, 201)], None)
    stores = [ExchangeStore(make_engine(db_url), instance=f"inst-{n}") for n in range(4)]
    got: list[list[int]] = [[] for _ in stores]

    def worker(n: int) -> None:
        while True:
            batch = stores[n].claim("r", limit=7, lease_seconds=60)
            if not batch:
                return
            got[n].extend(c.id for c in batch)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [i for g in got for i in g]
    assert len(claimed) == 200
    assert len(set(claimed)) == 200  # nobody claimed an exchange another one holds


def test_outcomes_follow_the_state_machine(store):
    store.add_exchanges("r", [new(i) for i in range(1, 5)], None)
    claimed = {c.id: c for c in store.claim("r", limit=10, lease_seconds=60)}
    ids = sorted(claimed)
    now = utcnow()
    store.record_outcomes([
        AttemptOutcome(ids[0], now, 5, "delivered", platform_message_id="M1",
                       receipt_status="accepted"),
        AttemptOutcome(ids[1], now, 5, "rejected", error="BUSINESS_REJECTED: no", permanent=True),
        AttemptOutcome(ids[2], now, 5, "transient", error="timed out"),
        AttemptOutcome(ids[3], now, 5, "sent", platform_message_id="M4", receipt_status="queued"),
    ], claimed, POLICY)
    assert [state_of(store, i) for i in ids] == [State.DELIVERED, State.FAILED,
                                                 State.RETRY_WAIT, State.SENT]
    e = store.get(str(ids[2]))
    assert e.next_attempt_at is not None and e.last_error == "timed out"
    assert [a.outcome for a in store.attempts_of(ids[1])] == ["rejected"]
    assert store.get(str(ids[0])).platform_message_id == "M1"


def test_transient_failures_end_in_failed_after_max_attempts(store):
    store.add_exchanges("r", [new(1)], None)
    for n in range(1, 4):
        later = utcnow() + dt.timedelta(seconds=10 * n)
        claimed = {c.id: c for c in store.claim("r", limit=1, lease_seconds=60, now=later)}
        assert len(claimed) == 1, f"attempt {n} was not claimable"
        (cid,) = claimed
        store.record_outcomes([AttemptOutcome(cid, later, 1, "transient", error="down")],
                              claimed, POLICY)
    e = store.get(new(1).packet_id)
    assert e.state == State.FAILED and e.attempts == 3
    assert len(store.attempts_of(e.id)) == 3


def test_expired_lease_is_claimed_again_and_a_late_answer_is_ignored(store):
    store.add_exchanges("r", [new(1)], None)
    first = {c.id: c for c in store.claim("r", limit=1, lease_seconds=5, owner="a")}
    assert store.claim("r", limit=1, lease_seconds=5, owner="b") == []
    later = utcnow() + dt.timedelta(seconds=6)
    second = {c.id: c for c in store.claim("r", limit=1, lease_seconds=60, owner="b", now=later)}
    assert list(second) == list(first)
    (cid,) = second
    store.record_outcomes([AttemptOutcome(cid, later, 1, "delivered")], second, POLICY, owner="b")
    # the first owner's answer arrives late: it must not overwrite what b recorded
    store.record_outcomes([AttemptOutcome(cid, later, 1, "transient", error="late")], first,
                          POLICY, owner="a")
    assert state_of(store, cid) == State.DELIVERED


def test_release_leases_returns_sending_exchanges_to_the_queue(store):
    store.add_exchanges("r", [new(1), new(2)], None)
    store.claim("r", limit=2, lease_seconds=600)
    assert store.release_leases() == 2
    assert len(store.claim("r", limit=5, lease_seconds=60)) == 2


def test_counts_and_outstanding(store):
    store.add_exchanges("r", [new(1), new(2), new(3, error="bad")], None)
    assert store.counts() == {("case", "pending"): 2, ("case", "failed"): 1}
    assert store.outstanding() == 2


def test_illegal_transitions_are_refused():
    check(State.SENDING, State.DELIVERED)
    check(State.FAILED, State.PENDING)
    with pytest.raises(IllegalTransition):
        check(State.DELIVERED, State.PENDING)
    with pytest.raises(IllegalTransition):
        check(State.PENDING, State.DELIVERED)


def test_backoff_has_full_jitter_under_a_cap():
    import random
    p = RetryPolicy(base_delay=1, max_delay=10)
    rng = random.Random(1)
    samples = [p.backoff(6, rng) for _ in range(500)]
    assert max(samples) <= 10 and min(samples) >= 0
    assert max(samples) > 8 and min(samples) < 2  # spread over the whole window
    assert max(p.backoff(1, rng) for _ in range(100)) <= 1


def test_claim_skips_retry_wait_that_is_not_yet_due(store):
    store.add_exchanges("r", [new(1)], None)
    future = utcnow() + dt.timedelta(hours=1)
    with store.engine.begin() as c:
        c.execute(update(Exchange).values(state=State.RETRY_WAIT, next_attempt_at=future))
    assert store.claim("r", limit=1, lease_seconds=60) == []
    assert len(store.claim("r", limit=1, lease_seconds=60,
                           now=future + dt.timedelta(seconds=1))) == 1
    with store.engine.connect() as c:
        assert c.execute(select(Exchange.attempts)).scalar() == 1


def test_a_lease_stolen_between_claim_and_record_is_detected_and_logged(store, caplog):
    """Outcomes are written in one executemany per kind; the lease condition still holds
    per row, and a row it refused is named in the log, not skipped silently."""
    store.add_exchanges("r", [new(i) for i in range(1, 7)], None)
    first = {c.id: c for c in store.claim("r", limit=10, lease_seconds=5, owner="a")}
    ids = sorted(first)
    # the lease of two of them expires and another instance takes them over
    later = utcnow() + dt.timedelta(seconds=6)
    with store.engine.begin() as c:
        c.execute(update(Exchange).where(Exchange.id.in_(ids[2:])).values(
            lease_expires_at=utcnow() + dt.timedelta(seconds=600)))
    stolen = {c.id for c in store.claim("r", limit=10, lease_seconds=60, owner="b",
                                        now=later)}
    assert stolen == set(ids[:2])
    now = utcnow()
    with caplog.at_level("WARNING", logger="adapter.store"):
        lost = store.record_outcomes(
            [AttemptOutcome(ids[0], now, 1, "delivered", platform_message_id="M0",
                            receipt_status="accepted"),
             AttemptOutcome(ids[1], now, 1, "transient", error="down"),
             AttemptOutcome(ids[2], now, 1, "delivered", platform_message_id="M2",
                            receipt_status="accepted"),
             AttemptOutcome(ids[3], now, 1, "transient", error="down"),
             AttemptOutcome(ids[4], now, 1, "rejected", error="no", permanent=True),
             AttemptOutcome(ids[5], now, 1, "sent", platform_message_id="M5",
                            receipt_status="queued")],
            first, POLICY, owner="a")
    assert lost == set(ids[:2])
    for i in ids[:2]:
        assert f"exchange {i} " in caplog.text and "lease lost" in caplog.text
        e = store.get(str(i))
        assert (e.state, e.lease_owner) == (State.SENDING, "b")  # b's lease untouched
    assert [state_of(store, i) for i in ids[2:]] == [State.DELIVERED, State.RETRY_WAIT,
                                                     State.FAILED, State.SENT]
    assert store.get(str(ids[2])).platform_message_id == "M2"
    assert len(store.attempts_of(ids[0])) == 1  # the attempt happened: it is recorded
