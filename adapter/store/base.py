"""What every part of the store shares: the engine, who we are, whether evidence is kept."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from adapter.dbutil import is_sqlite

if TYPE_CHECKING:
    from adapter.store.schema_version import UpgradeResult


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

    def create_schema(self) -> UpgradeResult:
        """Bring the state database to this release's revision through its migrations
        (what `init` does), so tests and tools get the schema the service will find."""
        from adapter.store.schema_version import upgrade_to_head

        return upgrade_to_head(self.engine)
