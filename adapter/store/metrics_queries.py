"""Reads for the service's metrics, each shaped so its cost is known on a large table.

Per scrape (bounded by the backlog, not the history):
- `state_counts(engine, routes, BACKLOG)`: one `count(*) WHERE route = ? AND state = ?` per
  route and state, each an index range count on ix_exchanges_claim (route, state, ...):
  it reads as many index entries as there are exchanges in that state, never delivered rows.
- `oldest_waiting`: per route and waiting state, `min(id)` over the same index range
  (the rowid is part of every SQLite index; on PostgreSQL the range is read from the
  index), then `created_at` of those few rows by primary key. Exchange ids grow with their
  creation time, so the smallest id waiting is the oldest.
- `evidence_position`: the chain's head row (one row) and the newest checkpoint (primary
  key, descending, limit 1).

On the slower cadence of `[metrics] totals_seconds` (they grow with the history):
- `state_counts(engine, routes, HISTORY)`: delivered and cancelled, the same index range
  counts, as long as the history of each route (about 0.1 s per million rows on SQLite).
- `unstamped_checkpoints`: a count over the checkpoints table (one row per checkpoint
  interval: about 100,000 a year at 5 minutes); the checkpoint job reads the same rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from sqlalchemy import Engine, func, select

from adapter.store.evidence import Checkpoint, EvidenceHead
from adapter.store.models import Exchange
from adapter.store.states import State

EX = Exchange.__table__
CP = Checkpoint.__table__

#: states an exchange leaves again (or a dead letter waiting for an operator): few rows.
BACKLOG = (State.PENDING, State.SENDING, State.SENT, State.RETRY_WAIT, State.FAILED)
#: final states: as many rows as the route's history.
HISTORY = (State.DELIVERED, State.CANCELLED)
#: states in which an exchange waits to be sent (its age is the oldest-pending figure).
WAITING = (State.PENDING, State.SENDING, State.RETRY_WAIT)


def state_counts(engine: Engine, routes: Iterable[str],
                 states: Sequence[str]) -> dict[tuple[str, str], int]:
    """(route, state) -> how many exchanges, for every route and state asked (0 included)."""
    out: dict[tuple[str, str], int] = {}
    with engine.connect() as c:
        for route in routes:
            for state in states:
                out[(route, str(state))] = c.execute(
                    count_statement(route, str(state))).scalar_one()
    return out


def count_statement(route: str, state: str):
    return select(func.count()).select_from(EX).where(EX.c.route == route,
                                                      EX.c.state == state)


def oldest_waiting(engine: Engine, routes: Iterable[str]) -> dict[str, dt.datetime]:
    """route -> when its oldest exchange still waiting to be sent was created (naive UTC);
    routes with nothing waiting are left out."""
    out: dict[str, dt.datetime] = {}
    with engine.connect() as c:
        for route in routes:
            ids = [i for i in (c.execute(min_id_statement(route, str(s))).scalar()
                               for s in WAITING) if i is not None]
            if ids:
                oldest = c.execute(select(func.min(EX.c.created_at))
                                   .where(EX.c.id.in_(ids))).scalar()
                if oldest is not None:
                    out[route] = oldest
    return out


def min_id_statement(route: str, state: str):
    return select(func.min(EX.c.id)).where(EX.c.route == route, EX.c.state == state)


def evidence_position(engine: Engine) -> tuple[int, int, str | None] | None:
    """(entries in the chain, entry the newest checkpoint signs, when it was signed), or
    None when the evidence log has no tables."""
    with engine.connect() as c:
        if not engine.dialect.has_table(c, EvidenceHead.__tablename__):
            return None
        head = c.execute(select(EvidenceHead.seq).where(EvidenceHead.id == 1)).scalar() or 0
        last = c.execute(select(CP.c.seq, CP.c.at).order_by(CP.c.id.desc()).limit(1)).first()
    return head, (last.seq if last else 0), (last.at if last else None)


def unstamped_checkpoints(engine: Engine) -> int:
    """Checkpoints still waiting for their RFC 3161 timestamp."""
    with engine.connect() as c:
        if not engine.dialect.has_table(c, Checkpoint.__tablename__):
            return 0
        return c.execute(select(func.count()).select_from(CP)
                         .where(CP.c.tsa_token.is_(None))).scalar_one()
