"""Read queries for operators: `status`, `exchanges list/show`, the service's exit code."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import cast

from sqlalchemy import ColumnElement, Engine, Select, Table, case, func, or_, select
from sqlalchemy.orm import Session

from adapter.store import recipients
from adapter.store.base import StoreBase
from adapter.store.evidence import EvidenceHead
from adapter.store.models import Attempt, Exchange, Packet
from adapter.store.records import ExchangeFilter
from adapter.store.states import State

EX = cast(Table, Exchange.__table__)
PK = cast(Table, Packet.__table__)


class Queries(StoreBase):
    def counts(self) -> dict[tuple[str, str], int]:
        """(kind, state) -> how many exchanges."""
        with self.engine.connect() as c:
            rows = c.execute(select(EX.c.kind, EX.c.state, func.count())
                             .group_by(EX.c.kind, EX.c.state)).all()
        return {(k, s): n for k, s, n in rows}

    def outstanding(self, route: str | None = None) -> int:
        """Exchanges that are not final and not failed: work still to do."""
        cond: list[ColumnElement[bool]] = [
            EX.c.state.in_([State.PENDING, State.SENDING, State.SENT, State.RETRY_WAIT])]
        if route:
            cond.append(EX.c.route == route)
        with self.engine.connect() as c:
            return c.execute(select(func.count()).where(*cond)).scalar_one()

    def has_outstanding(self, route: str | None = None) -> bool:
        """Whether any work is left: what `--until-idle` polls. One index probe
        (ix_exchanges_state, or ix_exchanges_queue for a route), where counting would read
        every outstanding row on each poll."""
        cond: list[ColumnElement[bool]] = [
            EX.c.state.in_([State.PENDING, State.SENDING, State.SENT, State.RETRY_WAIT])]
        if route:
            cond.append(EX.c.route == route)
        with self.engine.connect() as c:
            return c.execute(select(EX.c.id).where(*cond).limit(1)).first() is not None

    def oldest_outstanding(self) -> dt.datetime | None:
        with self.engine.connect() as c:
            return c.execute(select(func.min(EX.c.created_at)).where(EX.c.state.in_(
                [State.PENDING, State.SENDING, State.RETRY_WAIT]))).scalar()

    def last_delivery(self) -> dict[str, dt.datetime]:
        """route -> when it last delivered."""
        with self.engine.connect() as c:
            rows = c.execute(select(EX.c.route, func.max(EX.c.delivered_at))
                             .where(EX.c.state == State.DELIVERED).group_by(EX.c.route)).all()
        return {r: t for r, t in rows}

    def failed_outbound_since(self, since: dt.datetime) -> int:
        """Outbound exchanges that ended failed since `since` (the service's exit code)."""
        with self.engine.connect() as c:
            return c.execute(select(func.count()).where(
                EX.c.state == State.FAILED, EX.c.direction == "out",
                EX.c.updated_at >= since)).scalar_one()

    def evidence_entries(self) -> int | None:
        """How long the evidence chain is; None when the log was never written."""
        with self.engine.connect() as c:
            if not self.engine.dialect.has_table(c, EvidenceHead.__tablename__):
                return None
            return c.execute(select(EvidenceHead.seq).where(EvidenceHead.id == 1)
                             ).scalar() or 0

    def get(self, ident: str) -> Exchange | None:
        """An exchange by number or packet id."""
        with Session(self.engine) as s:
            q = select(Exchange).where(or_(Exchange.packet_id == ident,
                                           Exchange.id == (int(ident) if ident.isdigit() else -1)))
            return s.execute(q).scalar_one_or_none()

    def find(self, f: ExchangeFilter, *, limit: int | None = None) -> list[Exchange]:
        """Exchanges matching the filter, newest first."""
        q = _filtered(f)
        if limit is not None:
            q = q.limit(limit)
        with Session(self.engine) as s:
            return list(s.execute(q).scalars())

    def match_counts(self, f: ExchangeFilter) -> tuple[int, int]:
        """How many exchanges match the filter, and how many of them are failed: one
        aggregate, no row loaded."""
        failed = func.coalesce(func.sum(case((EX.c.state == State.FAILED, 1), else_=0)), 0)
        with self.engine.connect() as c:
            n, f_ = c.execute(select(func.count(), failed).where(*_conditions(f))).one()
        return int(n), int(f_)

    def ids_in_chunks(self, f: ExchangeFilter, chunk: int = 500) -> Iterator[list[int]]:
        """The ids matching the filter, ascending, `chunk` at a time."""
        return ids_in_chunks(self.engine, f, chunk)

    def attempts_of(self, exchange_id: int) -> list[Attempt]:
        with Session(self.engine) as s:
            return list(s.execute(select(Attempt).where(Attempt.exchange_id == exchange_id)
                                  .order_by(Attempt.id)).scalars())

    def recipients_of(self, exchange_id: int) -> list[recipients.RecipientTimeline]:
        with self.engine.connect() as c:
            return recipients.timelines(c, exchange_id)

    def payload_of(self, packet_id: str) -> bytes | None:
        with self.engine.connect() as c:
            return c.execute(select(PK.c.payload).join(EX, EX.c.id == PK.c.exchange_id)
                             .where(EX.c.packet_id == packet_id)).scalar()


def ids_in_chunks(engine: Engine, f: ExchangeFilter, chunk: int = 500) -> Iterator[list[int]]:
    """The ids matching the filter, ascending, `chunk` at a time (keyset paging: each
    chunk is one short query, so millions of matches never sit in memory, and rows that
    change between chunks are neither skipped nor repeated)."""
    after = 0
    cond = _conditions(f)
    while True:
        with engine.connect() as c:
            ids = list(c.execute(select(EX.c.id).where(*cond, EX.c.id > after)
                                 .order_by(EX.c.id).limit(chunk)).scalars())
        if not ids:
            return
        yield ids
        after = ids[-1]


def _conditions(f: ExchangeFilter) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = []
    for attr in ("state", "kind", "route", "direction"):
        value = getattr(f, attr)
        if value:
            cond.append(EX.c[attr] == value)
    if f.ids is not None:
        cond.append(EX.c.id.in_(list(f.ids)))
    if f.since:
        cond.append(EX.c.updated_at >= f.since)
    if f.until:
        cond.append(EX.c.updated_at < f.until)
    if f.search:
        like = f"%{f.search}%"
        cond.append(or_(EX.c.source_key.like(like), EX.c.packet_id.like(like)))
    return cond


def _filtered(f: ExchangeFilter) -> Select:
    return select(Exchange).where(*_conditions(f)).order_by(Exchange.id.desc())
