"""Writing received judgments into the enforcement database, idempotently.

One transaction per judgment: the row and its parties and obligations are replaced
together or not at all. The packet's version decides: a newer version replaces, the same
version is already there (a re-delivery), an older one is refused (a replay).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from adapter.sources.models import JudgmentRow, ObligationRow, PartyRow, SourceBase

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

    def upsert(self, record: dict[str, Any], version: int) -> ImportResult:
        try:
            return self._upsert(record, version)
        except IntegrityError:
            # another instance inserted the same judgment between our read and our write:
            # read again, and the version rule decides.
            return self._upsert(record, version)

    def _upsert(self, record: dict[str, Any], version: int) -> ImportResult:
        t = JudgmentRow.__table__
        code = record["judgment_code"]
        now = dt.datetime.now()
        values = {c: record.get(c) for c in _JUDGMENT_COLS}
        with self.engine.begin() as c:
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
