"""Writing received records into the enforcement database, idempotently.

The enforcement database is the ministry's own: the service never creates tables in it
(only `init --demo` creates the demo schema, adapter.sources.synth). A table the import
needs and does not find stops the round with `SourceSchemaMissing`, naming the table;
nothing is created and no packet is blamed.

One transaction per batch, one SAVEPOINT per record: a record's row and child rows (a
judgment's parties and obligations) are replaced together or not at all, and a record the
database refuses (a value too long for its column, a constraint) is rolled back alone and
reported as that record's failure while the others commit. The packet's version decides:
a newer version replaces, the same version is already there (a re-delivery), an older one
is refused (a replay). Which table, key and child rows: the kind's registry entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    bindparam,
    delete,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from adapter.errors import AdapterError
from adapter.kinds import KindSpec
from adapter.sources.models import ReceivedDocumentRow, source_table

#: columns the importer writes itself, never from a packet
_OWN_COLUMNS = frozenset({"id", "version", "updated_at"})


class SourceSchemaMissing(AdapterError):
    """The enforcement database lacks a table the import writes to."""


def require_tables(engine: Engine, names: Iterable[str]) -> None:
    """Raise SourceSchemaMissing naming each table the enforcement database lacks."""
    present = set(inspect(engine).get_table_names())
    missing = [n for n in names if n not in present]
    if missing:
        tables = f"table {missing[0]!r}" if len(missing) == 1 else \
            f"tables {', '.join(repr(m) for m in missing)}"
        raise SourceSchemaMissing(
            f"the enforcement database has no {tables}: "
            "the adapter never creates tables there; create the ministry's schema (or, for "
            "the demo, run `thads-adapter init --demo`)")


class SourceTables:
    """The enforcement database's tables, checked to exist (once) and described from the
    demo schema when it declares them, reflected otherwise."""

    def __init__(self, engine: Engine, names: Iterable[str]) -> None:
        self.engine, self.names = engine, tuple(dict.fromkeys(names))
        self._checked = False
        self._metadata = MetaData()

    def require(self) -> None:
        if not self._checked:
            require_tables(self.engine, self.names)
            self._checked = True

    def __getitem__(self, name: str) -> Table:
        return source_table(self.engine, self._metadata, name)


@dataclass(frozen=True)
class ImportResult:
    #: imported (new or newer version), unchanged (this version is there), stale (older)
    status: str
    stored_version: int


class RecordImporter:
    """Received records of one kind into its table (`spec.table`, keyed by `spec.key`),
    with their child rows (`spec.children`, replaced through their foreign key)."""

    def __init__(self, engine: Engine, spec: KindSpec) -> None:
        self.engine, self.spec = engine, spec
        self.tables = SourceTables(engine, [spec.table, *(c.table for c in spec.children)])
        #: the record table's columns a record may set (known once the table is)
        self._writable: frozenset[str] | None = None

    def require(self) -> None:
        """The tables must be there (SourceSchemaMissing otherwise)."""
        self.tables.require()

    def import_many(self, items: Sequence[tuple[dict[str, Any], int]]
                    ) -> list[ImportResult | Exception]:
        """Import (record, version) pairs in one transaction; each outcome in item order is
        its result or the exception that refused that record alone. An outage of the
        database (connection lost, locked) raises instead: it is no record's fault.

        The batch is written first as a whole (one read of the stored versions, one
        statement per table and kind of write) inside one SAVEPOINT; when the database
        refuses any of it, that SAVEPOINT is rolled back and every record is written again
        in a SAVEPOINT of its own, so the one it refuses fails alone."""
        if not items:
            return []
        self.require()
        with self.engine.begin() as c:
            try:
                with c.begin_nested():
                    return self._batch(c, items)
            except Exception as exc:
                if _outage(exc):
                    raise
            return [self._isolated(c, record, version) for record, version in items]

    def _batch(self, c: Connection, items: Sequence[tuple[dict[str, Any], int]]
               ) -> list[ImportResult | Exception]:
        """The batch's writes, a few statements whatever its size; raises on any refusal."""
        spec = self.spec
        t = self.tables[spec.table]
        keys = [record[spec.key] for record, _ in items]
        if len(set(keys)) != len(keys):  # one record twice: the version rule runs in order
            raise _OneByOne()
        stored: dict[Any, tuple[int, int]] = {}
        for chunk in _chunks(keys, 500):
            q = select(t.c[spec.key], t.c.id, t.c[spec.version_column]).where(
                t.c[spec.key].in_(chunk))
            if self.engine.dialect.name != "sqlite":
                q = q.with_for_update()
            stored.update({r[0]: (r[1], int(r[2])) for r in c.execute(q)})
        now = dt.datetime.now()
        out: list[ImportResult | Exception] = []
        fresh: list[tuple[dict[str, Any], dict[str, Any]]] = []
        newer: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for (record, version), key in zip(items, keys, strict=True):
            was = stored.get(key)
            if was is not None and was[1] > version:
                out.append(ImportResult("stale", was[1]))
                continue
            if was is not None and was[1] == version:
                out.append(ImportResult("unchanged", was[1]))
                continue
            out.append(ImportResult("imported", version))
            values = {**self._values(t, record), spec.version_column: version,
                      "updated_at": now}
            if was is None:
                fresh.append((record, {spec.key: key, **values}))
            else:
                newer.append((record, {"_row_id": was[0], **values}))
        for group in _same_columns([v for _, v in fresh]):
            c.execute(insert(t), group)
        ids = {key: rid for key, (rid, _) in stored.items()}
        new_keys = [v[spec.key] for _, v in fresh]
        for chunk in _chunks(new_keys, 500):
            ids.update(c.execute(select(t.c[spec.key], t.c.id).where(
                t.c[spec.key].in_(chunk))).all())
        for group in _same_columns([v for _, v in newer]):
            c.execute(update(t).where(t.c.id == bindparam("_row_id")), group)
        replaced = [v["_row_id"] for _, v in newer]
        for ch in spec.children:
            ct = self.tables[ch.table]
            for chunk in _chunks(replaced, 500):
                c.execute(delete(ct).where(ct.c[ch.foreign_key].in_(chunk)))
            rows = [dict({k: r.get(k) for k in ch.columns},
                         **{ch.foreign_key: ids[record[spec.key]]})
                    for record, _ in (*fresh, *newer) for r in record.get(ch.name) or []]
            if rows:
                c.execute(insert(ct), rows)
        return out

    def _values(self, t: Table, record: dict[str, Any]) -> dict[str, Any]:
        """The record's own columns (not its key, its child rows or the importer's)."""
        if self._writable is None:
            spec = self.spec
            self._writable = frozenset(
                c.key for c in t.c
                if c.key not in _OWN_COLUMNS and c.key != spec.key
                and c.key not in {ch.name for ch in spec.children})
        return {k: v for k, v in record.items() if k in self._writable}

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
                    # another instance inserted the same record between our read and our
                    # write: read again, and the version rule decides.
                    continue
                return exc
        raise AssertionError("unreachable")

    def _upsert(self, c: Connection, record: dict[str, Any], version: int) -> ImportResult:
        spec = self.spec
        t = self.tables[spec.table]
        key = record[spec.key]
        values = self._values(t, record)
        now = dt.datetime.now()
        q = select(t.c.id, t.c[spec.version_column]).where(t.c[spec.key] == key)
        if self.engine.dialect.name != "sqlite":
            q = q.with_for_update()
        row = c.execute(q).first()
        stored = None if row is None else int(row[1])
        if stored is not None and stored > version:
            return ImportResult("stale", stored)
        if stored is not None and stored == version:
            return ImportResult("unchanged", stored)
        if row is None:
            rid = c.execute(insert(t).values({spec.key: key, spec.version_column: version,
                                              "updated_at": now, **values})
                            .returning(t.c.id)).scalar_one()
        else:
            rid = row[0]
            c.execute(update(t).where(t.c.id == rid).values(
                {spec.version_column: version, "updated_at": now, **values}))
            for ch in spec.children:
                ct = self.tables[ch.table]
                c.execute(delete(ct).where(ct.c[ch.foreign_key] == rid))
        for ch in spec.children:
            rows = [dict({k: r.get(k) for k in ch.columns}, **{ch.foreign_key: rid})
                    for r in record.get(ch.name) or []]
            if rows:
                c.execute(insert(self.tables[ch.table]), rows)
        return ImportResult("imported", version)


class _OneByOne(Exception):
    """The batch cannot be written as a whole: write each record in its own SAVEPOINT."""


def _chunks(values: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def _same_columns(rows: Sequence[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    """Rows grouped by their set of columns (one executemany each), in order of first
    appearance: a column a record leaves out is left alone, never set to NULL."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(frozenset(r), []).append(r)
    return groups.values()


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
        self.tables = SourceTables(engine, [ReceivedDocumentRow.__tablename__])

    def require(self) -> None:
        """The table must be there (SourceSchemaMissing otherwise)."""
        self.tables.require()

    def add_many(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
        """Each outcome in order: the row as stored (the earlier one for a re-delivery), or
        the exception that refused that document alone."""
        if not rows:
            return []
        self.require()
        with self.engine.begin() as c:
            return [self._isolated(c, values) for values in rows]

    def _isolated(self, c: Connection, values: dict[str, Any]) -> dict[str, Any] | Exception:
        t = self.tables[ReceivedDocumentRow.__tablename__]
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
