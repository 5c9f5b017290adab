"""The last known circuit-breaker state of each endpoint, per instance, for `status`."""

from __future__ import annotations

from sqlalchemy import select

from adapter.store.base import StoreBase, utcnow
from adapter.store.evidence import table_of
from adapter.store.models import BreakerState
from adapter.store.records import BreakerRecord

BR = table_of(BreakerState)


class Breakers(StoreBase):
    def save_breaker(self, endpoint: str, state: str, failures: int, opened_for: float) -> None:
        now = utcnow()
        stmt = self._insert(BR).values(
            endpoint=endpoint, instance=self.instance, state=state, failures=failures,
            opened_for=int(opened_for), updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["endpoint", "instance"],
            set_=dict(state=state, failures=failures, opened_for=int(opened_for),
                      updated_at=now))
        with self.engine.begin() as c:
            c.execute(stmt)

    def breakers(self) -> list[BreakerRecord]:
        with self.engine.connect() as c:
            return [BreakerRecord(*r) for r in c.execute(select(
                BR.c.endpoint, BR.c.instance, BR.c.state, BR.c.failures, BR.c.opened_for,
                BR.c.updated_at).order_by(BR.c.endpoint, BR.c.instance))]
