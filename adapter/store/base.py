"""What every part of the store shares: the engine, who we are, whether evidence is kept."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from adapter.dbutil import is_sqlite
from adapter.store.models import StateBase


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class StoreBase:
    def __init__(self, engine: Engine, *, instance: str = "adapter",
                 evidence: bool = True) -> None:
        self.engine = engine
        self.instance = instance
        #: append to the evidence log in the same transaction as each state change
        self.evidence = evidence
        self._insert = (sqlite.insert if is_sqlite(engine) else postgresql.insert)

    def create_schema(self) -> None:
        StateBase.metadata.create_all(self.engine)
