"""Writing received judgments into the enforcement database, idempotently.

One transaction per batch, one SAVEPOINT per judgment: a judgment's row, parties and
obligations are replaced together or not at all, and a judgment the database refuses (a
value too long for its column, a constraint) is rolled back alone and reported as that
judgment's failure while the others commit. The packet's version decides: a newer version
replaces, the same version is already there (a re-delivery), an older one is refused (a
replay).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from adapter.sources.models import (
    JudgmentRow,
    ObligationRow,
    PartyRow,
    ReceivedDocumentRow,
    SourceBase,
)

_JUDGMENT_COLS = ("court_code", "court_name", "number", "issued_date", "effective_date",
                  "case_type", "instance", "summary", "document_name", "document_media_type",
                  "document_sha256", "document")


@dataclass(frozen=True)
class ImportResult:
    #: imported (new or newer version), unchanged (this version is there), stale (older)
    status: str
    stored_version: int


class JudgmentImporter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        SourceBase.metadata.create_all(engine)  # the demo schema; existing tables are kept

    def import_many(self, items: Sequence[tuple[dict[str, Any], int]]
                    ) -> list[ImportResult | Exception]:
        """Import (record, version) pairs in one transaction; each outcome in item order is
        its result or the exception that refused that judgment alone. An outage of the
        database (connection lost, locked) raises instead: it is no judgment's fault."""
        if not items:
            return []
        with self.engine.begin() as c:
            return [self._isolated(c, record, version) for record, version in items]

    def _isolated(self, c: Connection, record: dict[str, Any], version: int
                  ) -> ImportResult | Exception:
        for attempt in (1, 2):
            try:
                with c.begin_nested():
                    return self._upsert(c, record, version)
            except Exception as exc:
                if _outage(exc):
                    raise
                if isinstance(exc, IntegrityError) and attempt == 1:
                    # another instance inserted the same judgment between our read and our
                    # write: read again, and the version rule decides.
                    continue
                return exc
        raise AssertionError("unreachable")

    def _upsert(self, c: Connection, record: dict[str, Any], version: int) -> ImportResult:
        t = JudgmentRow.__table__
        code = record["judgment_code"]
        now = dt.datetime.now()
        values = {col: record.get(col) for col in _JUDGMENT_COLS}
        q = select(t.c.id, t.c.version).where(t.c.judgment_code == code)
        if self.engine.dialect.name != "sqlite":
            q = q.with_for_update()
        row = c.execute(q).first()
        if row is not None and row.version > version:
            return ImportResult("stale", row.version)
        if row is not None and row.version == version:
            return ImportResult("unchanged", row.version)
        if row is None:
            jid = c.execute(insert(t).values(judgment_code=code, version=version,
                                             updated_at=now, **values)
                            .returning(t.c.id)).scalar_one()
        else:
            jid = row.id
            c.execute(update(t).where(t.c.id == jid).values(version=version, updated_at=now,
                                                            **values))
            c.execute(delete(PartyRow.__table__).where(PartyRow.__table__.c.judgment_id == jid))
            c.execute(delete(ObligationRow.__table__)
                      .where(ObligationRow.__table__.c.judgment_id == jid))
        parties = [dict(p, judgment_id=jid, case_id=None) for p in record.get("parties") or []]
        obligations = [dict(o, judgment_id=jid, case_id=None)
                       for o in record.get("obligations") or []]
        if parties:
            c.execute(insert(PartyRow.__table__), parties)
        if obligations:
            c.execute(insert(ObligationRow.__table__), obligations)
        return ImportResult("imported", version)

def _outage(exc: Exception) -> bool:
    """The database, not the judgment, failed: the connection broke or it is locked."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


class ReceivedDocuments:
    """Documents received over the axis, into the office's `received_documents` table: one
    row per DocumentId (a re-delivery finds the row there and changes nothing). One
    transaction per batch, a SAVEPOINT per document, as for judgments."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        SourceBase.metadata.create_all(engine)  # the demo schema; existing tables are kept

    def add_many(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
        """Each outcome in order: the row as stored (the earlier one for a re-delivery), or
        the exception that refused that document alone."""
        if not rows:
            return []
        with self.engine.begin() as c:
            return [self._isolated(c, values) for values in rows]

    @staticmethod
    def _isolated(c: Connection, values: dict[str, Any]) -> dict[str, Any] | Exception:
        t = ReceivedDocumentRow.__table__
        try:
            with c.begin_nested():
                existing = c.execute(select(t).where(
                    t.c.document_id == values["document_id"])).first()
                if existing is not None:
                    return dict(existing._mapping)
                c.execute(insert(t).values(**values))
                return values
        except Exception as exc:
            if _outage(exc):
                raise
            return exc
