"""The adapter's own state database: exchanges, packets, attempts, cursors."""

from adapter.store.repository import (
    AttemptOutcome,
    ClaimedExchange,
    ExchangeStore,
    NewExchange,
    utcnow,
)
from adapter.store.states import RetryPolicy, State

__all__ = ["AttemptOutcome", "ClaimedExchange", "ExchangeStore", "NewExchange", "RetryPolicy",
           "State", "utcnow"]
