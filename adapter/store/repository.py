"""Narrow interface to the state database (the pyas2lib habit): the engine, service and CLI
call named methods with dataclasses at the boundary and never build SQL themselves. The
store is split by concern; `ExchangeStore` is the one object callers hold.

    outbox.py     cursors, prepared exchanges, claims, attempts, delivery status
    inbox.py      received packets, their outcome, acknowledgements, status reports
    recipients.py the addressees of an edXML document and their status timelines
    operators.py  replay and cancel, with their audit rows
    breakers.py   circuit-breaker states for `status`
    queries.py    reads for `status`, `exchanges list/show`, the exit code
    evidence.py   the hash-chained evidence log (appended inside each transaction above)
"""

from __future__ import annotations

from adapter.store.base import utcnow
from adapter.store.breakers import Breakers
from adapter.store.inbox import Inbox
from adapter.store.operators import OperatorActions
from adapter.store.outbox import Outbox
from adapter.store.queries import Queries
from adapter.store.records import AttemptOutcome, ClaimedExchange, NewExchange


class ExchangeStore(Outbox, Inbox, OperatorActions, Breakers, Queries):
    """The adapter's state database, every concern through one object."""


__all__ = ["AttemptOutcome", "ClaimedExchange", "ExchangeStore", "NewExchange", "utcnow"]
