"""The exchange state machine: the one place that says which state follows which.

    pending -> sending -> sent -> delivered
                  |  \\-> delivered
                  +-> retry_wait -> sending ... -> failed (dead letter)
    failed -> pending (operator replay);  pending | retry_wait | failed -> cancelled

`sending` carries a lease: if the process dies mid-call the lease expires and the exchange
is claimed again, with the same packet id, so the receiver deduplicates.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    RETRY_WAIT = "retry_wait"
    FAILED = "failed"
    CANCELLED = "cancelled"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.SENDING, State.FAILED, State.CANCELLED}),
    State.SENDING: frozenset({State.SENT, State.DELIVERED, State.RETRY_WAIT, State.FAILED,
                              State.PENDING}),
    State.SENT: frozenset({State.DELIVERED, State.RETRY_WAIT, State.FAILED}),
    State.RETRY_WAIT: frozenset({State.SENDING, State.FAILED, State.CANCELLED}),
    State.FAILED: frozenset({State.PENDING, State.CANCELLED}),
    State.DELIVERED: frozenset(),
    State.CANCELLED: frozenset(),
}
#: inbound exchanges: stored (pending), then imported (delivered) or quarantined (failed);
#: an operator may send a quarantined one through again.
INBOUND_TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.DELIVERED, State.FAILED}),
    State.FAILED: frozenset({State.PENDING, State.CANCELLED}),
    State.DELIVERED: frozenset(),
    State.CANCELLED: frozenset(),
}
INITIAL = frozenset({State.PENDING, State.FAILED})
FINAL = frozenset({State.DELIVERED, State.CANCELLED})


class IllegalTransition(RuntimeError):
    pass


def check(current: State | str, target: State | str, direction: str = "out") -> None:
    cur, tgt = State(current), State(target)
    table = TRANSITIONS if direction == "out" else INBOUND_TRANSITIONS
    if tgt not in table.get(cur, frozenset()):
        raise IllegalTransition(f"{direction}bound exchange cannot go from {cur} to {tgt}")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 12
    base_delay: float = 5.0
    max_delay: float = 3600.0
    max_age: dt.timedelta = dt.timedelta(hours=72)

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^(n-1))]."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1))
        return (rng or random).uniform(0, ceiling)


@dataclass(frozen=True)
class Decision:
    state: State
    next_attempt_at: dt.datetime | None = None


def after_failure(*, permanent: bool, attempts: int, created_at: dt.datetime,
                  now: dt.datetime, policy: RetryPolicy) -> Decision:
    """What follows a failed attempt: permanent errors and exhausted budgets end in
    `failed`; everything else waits and retries."""
    if permanent or attempts >= policy.max_attempts or now - created_at >= policy.max_age:
        return Decision(State.FAILED)
    return Decision(State.RETRY_WAIT,
                    now + dt.timedelta(seconds=policy.backoff(attempts)))
