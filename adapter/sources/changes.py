"""Change capture: rows changed since a stored cursor, in bounded batches.

The cursor is (updated_at, id), encoded so that string order is cursor order, which lets
the state database advance it with a plain `WHERE position < new`. Each batch loads its
child rows with one IN query per table, so memory is bounded by the batch size, whatever
the backlog.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import Engine, and_, or_, select

from adapter.sources.models import (
    CaseRow,
    DecisionRow,
    JudgmentRow,
    ObligationRow,
    PartyRow,
    ReceiptRow,
    ReceivedDocumentRow,
)

_EPOCH = dt.datetime(1970, 1, 1)


@dataclass(frozen=True, order=True)
class SourceCursor:
    updated_at: dt.datetime
    row_id: int

    def encode(self) -> str:
        return f"{self.updated_at.strftime('%Y-%m-%dT%H:%M:%S.%f')}|{self.row_id:015d}"

    @classmethod
    def decode(cls, text: str | None) -> SourceCursor:
        if not text:
            return cls(_EPOCH, 0)
        t, _, i = text.partition("|")
        return cls(dt.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%f"), int(i))

    def minus(self, seconds: float) -> SourceCursor:
        return SourceCursor(self.updated_at - dt.timedelta(seconds=seconds), 0) if seconds else self


@dataclass(frozen=True)
class SourceRecord:
    kind: str
    key: str
    version: int
    cursor: SourceCursor
    data: dict[str, Any]


def _row_dict(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns if c.key not in skip}


_PARTY_COLS = ("role", "kind", "full_name", "citizen_id", "tax_code", "birth_date", "address")
_OBLIGATION_COLS = ("type", "amount", "asset_description")


class ChangeReader:
    """Reads one kind of record (case, receipt, judgment) in change order."""

    _TABLES: ClassVar = {"case": CaseRow, "receipt": ReceiptRow, "judgment": JudgmentRow,
                         "edoc": DecisionRow, "status": ReceivedDocumentRow}
    _KEYS: ClassVar = {"case": "case_code", "receipt": "receipt_code",
                       "judgment": "judgment_code", "edoc": "decision_code",
                       "status": "document_id"}

    def __init__(self, engine: Engine, kind: str, batch_size: int = 500) -> None:
        if kind not in self._TABLES:
            raise ValueError(f"no change capture for kind {kind!r}")
        self.engine, self.kind, self.batch_size = engine, kind, batch_size
        self.table = self._TABLES[kind].__table__

    def batches(self, after: SourceCursor) -> Iterator[list[SourceRecord]]:
        """Successive batches after `after`, until no row is left."""
        while True:
            batch = self.read(after)
            if not batch:
                return
            yield batch
            after = batch[-1].cursor

    def read(self, after: SourceCursor) -> list[SourceRecord]:
        t = self.table
        cond = or_(t.c.updated_at > after.updated_at,
                   and_(t.c.updated_at == after.updated_at, t.c.id > after.row_id))
        q = select(t).where(cond).order_by(t.c.updated_at, t.c.id).limit(self.batch_size)
        with self.engine.connect() as c:
            rows = [dict(r._mapping) for r in c.execute(q)]
            if not rows:
                return []
            ids = [r["id"] for r in rows]
            if self.kind in ("case", "judgment"):
                fk = "case_id" if self.kind == "case" else "judgment_id"
                self._attach(c, rows, ids, fk)
            if self.kind == "receipt":
                case_ids = {r["case_id"] for r in rows if r["case_id"] is not None}
                codes = dict(c.execute(select(CaseRow.id, CaseRow.case_code)
                                       .where(CaseRow.id.in_(case_ids))).all()) if case_ids else {}
                for r in rows:
                    r["case_code"] = codes.get(r["case_id"])
        key = self._KEYS[self.kind]
        return [SourceRecord(self.kind, str(r[key]), int(r["version"]),
                             SourceCursor(r["updated_at"], r["id"]), r) for r in rows]

    @staticmethod
    def _attach(c, rows: list[dict], ids: list[int], fk: str) -> None:
        parties: dict[int, list[dict]] = defaultdict(list)
        obligations: dict[int, list[dict]] = defaultdict(list)
        pt, ot = PartyRow.__table__, ObligationRow.__table__
        for p in c.execute(select(pt).where(pt.c[fk].in_(ids)).order_by(pt.c.id)):
            parties[p._mapping[fk]].append({k: p._mapping[k] for k in _PARTY_COLS})
        for o in c.execute(select(ot).where(ot.c[fk].in_(ids)).order_by(ot.c.id)):
            obligations[o._mapping[fk]].append({k: o._mapping[k] for k in _OBLIGATION_COLS})
        for r in rows:
            r["parties"] = parties.get(r["id"], [])
            r["obligations"] = obligations.get(r["id"], [])
