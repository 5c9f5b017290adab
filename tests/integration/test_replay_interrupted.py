"""A bulk replay stopped half-way (Ctrl-C, a lost terminal) and run again replays every
failed exchange exactly once, and what it replayed is due at once with its stored bytes."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update

from adapter.dbutil import make_engine
from adapter.store import ExchangeStore, NewExchange, State
from adapter.store.base import utcnow
from adapter.store.models import Exchange, OperatorAction
from adapter.store.records import ExchangeFilter

FAILED = 1100  # three chunks of 500


def _new(i: int) -> NewExchange:
    return NewExchange(packet_id=f"00000000-0000-0000-0000-{i:012d}", kind="case",
                       source_key=f"THA-{i}", source_version=1, peer="000.00.00.G22",
                       payload=f"<signed n='{i}'/>".encode())


@pytest.fixture
def store(db_url):
    s = ExchangeStore(make_engine(db_url))
    s.create_schema()
    s.add_exchanges("cases", [_new(i) for i in range(1, FAILED + 1)], None)
    with s.engine.begin() as c:
        # failed after a full retry budget, with a backoff time left over from the last try
        c.execute(update(Exchange).values(
            state=State.FAILED, attempts=12, last_error="BUSINESS_REJECTED: recipient",
            next_attempt_at=utcnow() + dt.timedelta(days=1)))
    yield s
    s.engine.dispose()


class Interrupted(Exception):
    pass


def test_an_interrupted_replay_run_again_replays_each_exchange_once(store):
    def stop_after_first_chunk(done: int) -> None:
        raise Interrupted(done)

    with pytest.raises(Interrupted):
        store.replay_matching(ExchangeFilter(state="failed"), actor="op", reason="fixed",
                              progress=stop_after_first_chunk)
    with store.engine.connect() as c:
        states = dict(c.execute(select(Exchange.state, func.count())
                                .group_by(Exchange.state)).all())
    assert states == {State.PENDING: 500, State.FAILED: FAILED - 500}  # the first chunk held

    again = store.replay_matching(ExchangeFilter(state="failed"), actor="op", reason="fixed")
    assert len(again.done) == FAILED - 500 and not again.refused
    # a third run finds nothing: nothing is replayed twice
    assert store.replay_matching(ExchangeFilter(state="failed"), actor="op").done == []
    with store.engine.connect() as c:
        per_exchange = c.execute(select(OperatorAction.exchange_id, func.count())
                                 .group_by(OperatorAction.exchange_id)).all()
    assert len(per_exchange) == FAILED
    assert {n for _, n in per_exchange} == {1}

    # due at once (no backoff left from before), a fresh budget, the stored bytes as they were
    claimed = store.claim("cases", limit=FAILED + 10, lease_seconds=60)
    assert len(claimed) == FAILED
    assert all(c.payload == _new(c.id).payload for c in claimed)
    assert all(c.attempts == 1 for c in claimed)
