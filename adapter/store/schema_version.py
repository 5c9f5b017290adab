"""The state database's schema revision: upgrade it, read it, refuse to run on an old one.

Alembic runs programmatically from the migrations shipped in adapter/store/migrations (no
alembic.ini): `init` and `db upgrade` call upgrade_to_head, the service calls require_current
at start. A database created by release 0.1.0 (create_all, no alembic_version table) is
recognised as the baseline revision only when its tables are exactly the baseline's, and the
caller is told; anything else is refused with one line saying why.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Alembic narrates every step at INFO; the caller prints one line of what happened instead.
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.migration import MigrationContext  # noqa: E402
from alembic.operations import Operations  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import Connection, Engine, MetaData, create_engine, inspect  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402

from adapter.errors import AdapterError  # noqa: E402

MIGRATIONS = Path(__file__).with_name("migrations")
#: release 0.1.0's schema, which databases created before migrations are adopted as
BASELINE = "0001"
UPGRADE_HINT = "run `thads-adapter db upgrade`"


class SchemaVersionError(AdapterError):
    """The state database is not at the revision this release needs, or cannot be brought
    there automatically; the message is one line and names the command to run."""


@dataclass(frozen=True)
class UpgradeResult:
    before: str | None
    after: str
    #: a database of release 0.1.0 (no revision recorded) recognised and stamped as BASELINE
    adopted: bool = False
    #: baseline tables 0.1.0 made only on first use, created while adopting
    created: list[str] = field(default_factory=list)
    #: what the revisions run had to tell the operator (data they filled in or left out)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.adopted:
            made = f"; created its missing tables: {', '.join(self.created)}" if self.created \
                else ""
            tail = f", then upgraded to {self.after}" if self.after != BASELINE else ""
            return (f"recognised a state database of release 0.1.0 (no revision recorded) as "
                    f"revision {BASELINE} and stamped it{made}{tail}")
        if self.before is None:
            return f"created at revision {self.after}"
        if self.before == self.after:
            return f"already at revision {self.after} (head)"
        return f"upgraded from revision {self.before} to {self.after}"


def state_metadata() -> MetaData:
    """Every table of the state database: importing the modules that declare them fills
    StateBase.metadata (the evidence tables, checkpoints included, are in evidence.py)."""
    from adapter.store.models import StateBase

    importlib.import_module("adapter.store.evidence")
    return StateBase.metadata


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    return cfg


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None, "no migration revisions shipped"
    return head


def history() -> list[tuple[str, str]]:
    """(revision, title) of every revision this release ships, base first."""
    return [(s.revision, (s.doc or "").strip().splitlines()[0] if s.doc else "")
            for s in reversed(list(_scripts().walk_revisions()))]


def known_revisions() -> list[str]:
    return [rev for rev, _ in history()]


def _missing_sqlite_file(engine: Engine) -> bool:
    u = engine.url
    db = u.database or ""
    return (u.get_backend_name() == "sqlite" and db not in ("", ":memory:")
            and not db.startswith("file:") and not Path(db).exists())


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _one_line(exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _database_errors(engine: Engine) -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        raise SchemaVersionError(f"state database {_where(engine)}: {_one_line(exc)}") from exc


def _revision_of(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    """The revision recorded in the database; None when none is (empty, or release 0.1.0)."""
    with _database_errors(engine), engine.connect() as conn:
        return _revision_of(conn)


def _state_tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) & set(_baseline_module().TABLES)


def require_current(engine: Engine) -> None:
    """Raise SchemaVersionError (one line, naming the command) unless the database is at
    this release's head revision. The service calls this before it starts anything."""
    head = head_revision()
    if _missing_sqlite_file(engine):  # looking must not create an empty file
        raise SchemaVersionError(
            f"state database {_where(engine)} does not exist yet, this release needs revision "
            f"{head}: run `thads-adapter init` (or `thads-adapter db upgrade`)")
    with _database_errors(engine), engine.connect() as conn:
        current = _revision_of(conn)
        legacy = current is None and bool(_state_tables(conn))
    if current == head:
        return
    if current is None and legacy:
        raise SchemaVersionError(
            f"state database {_where(engine)} was created by release 0.1.0 and has no "
            f"revision, this release needs {head}: {UPGRADE_HINT}")
    if current is None:
        raise SchemaVersionError(
            f"state database {_where(engine)} has no tables yet, this release needs revision "
            f"{head}: run `thads-adapter init` (or `thads-adapter db upgrade`)")
    if current not in known_revisions():
        raise SchemaVersionError(
            f"state database is at revision {current}, which this release does not know "
            f"(its newest is {head}): it was upgraded by a newer release; run that release")
    raise SchemaVersionError(
        f"state database is at revision {current}, this release needs {head}: {UPGRADE_HINT}")


# ---- upgrading ---------------------------------------------------------------------------

@contextlib.contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """One transaction for the whole upgrade, serialised against other writers.

    SQLite: foreign keys off while batch mode copies tables (dropping a referenced table
    would fail otherwise; the pragma cannot change inside a transaction), checked before
    commit. PostgreSQL: an advisory lock, so two instances starting together upgrade once."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        raw = conn.connection.dbapi_connection if sqlite else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                if not sqlite:
                    conn.exec_driver_sql(
                        "SELECT pg_advisory_xact_lock(hashtext('thads-adapter schema'))")
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise SchemaVersionError(
                            f"upgrade left {len(broken)} rows with a broken foreign key "
                            f"(first: table {broken[0][0]}); nothing was changed")
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


def upgrade_to_head(engine: Engine) -> UpgradeResult:
    """Create the schema on an empty database, or bring an older one to head, in one
    transaction. A database of release 0.1.0 is first recognised as the baseline, never
    silently: the result says so (UpgradeResult.adopted)."""
    head = head_revision()
    with _database_errors(engine), _migrating(engine) as conn:
        before = _revision_of(conn)
        created: list[str] = []
        adopted = False
        if before is None and _state_tables(conn):
            created = _adopt(conn)
            adopted, before = True, None
        elif before is not None and before not in known_revisions():
            raise SchemaVersionError(
                f"state database is at revision {before}, which this release does not know "
                f"(its newest is {head}): it was upgraded by a newer release")
        cfg = _config(conn)
        command.upgrade(cfg, "head")
        after = _revision_of(conn)
    assert after == head, f"upgrade ended at {after}, not {head}"
    return UpgradeResult(before=before, after=head, adopted=adopted, created=created,
                         notes=list(cfg.attributes.get("notes", [])))


# ---- adopting a database of release 0.1.0 ---------------------------------------------------

def _baseline_module() -> Any:
    return _scripts().get_revision(BASELINE).module


def _type_key(t: Any) -> str:
    """A type as both dialects reflect it: VARCHAR(36), TEXT, INTEGER, DATETIME, BLOB."""
    from sqlalchemy import DateTime, Integer, LargeBinary, String, Text

    for cls, name in ((Text, "TEXT"), (String, "VARCHAR"), (Integer, "INTEGER"),
                      (DateTime, "DATETIME"), (LargeBinary, "BLOB")):
        if isinstance(t, cls):
            length = getattr(t, "length", None) if cls is String else None
            return f"{name}({length})" if length else name
    return type(t).__name__.upper()


def _shape(conn: Connection, tables: set[str]) -> dict[str, dict[str, Any]]:
    """What adoption compares, per table, in terms both SQLite and PostgreSQL reflect alike:
    columns (type, nullability), primary key, unique constraints, foreign keys, indexes."""
    ins = inspect(conn)
    out = {}
    for t in sorted(tables):
        out[t] = dict(
            columns={c["name"]: (_type_key(c["type"]), c["nullable"])
                     for c in ins.get_columns(t)},
            primary_key=tuple(ins.get_pk_constraint(t)["constrained_columns"]),
            unique={tuple(u["column_names"]) for u in ins.get_unique_constraints(t)},
            foreign_keys={(tuple(f["constrained_columns"]), f["referred_table"],
                           tuple(f["referred_columns"])) for f in ins.get_foreign_keys(t)},
            indexes={i["name"]: (tuple(i["column_names"]), bool(i["unique"]))
                     for i in ins.get_indexes(t) if not i.get("duplicates_constraint")},
        )
    return out


def _baseline_shape() -> dict[str, dict[str, Any]]:
    """The baseline revision run into an in-memory SQLite database, then reflected."""
    scratch = create_engine("sqlite://")
    try:
        with scratch.begin() as conn:
            command.upgrade(_config(conn), BASELINE)
            return _shape(conn, set(_baseline_module().TABLES))
    finally:
        scratch.dispose()


def _differences(found: dict, wanted: dict) -> list[str]:
    out = []
    for table, have in found.items():
        want = wanted[table]
        for col in sorted(set(want["columns"]) - set(have["columns"])):
            out.append(f"{table}: column {col} missing")
        for col in sorted(set(have["columns"]) - set(want["columns"])):
            out.append(f"{table}: column {col} not in release 0.1.0")
        for col in sorted(set(have["columns"]) & set(want["columns"])):
            (ht, hn), (wt, wn) = have["columns"][col], want["columns"][col]
            if ht != wt:
                out.append(f"{table}.{col}: type {ht}, release 0.1.0 has {wt}")
            if hn != wn:
                out.append(f"{table}.{col}: {'nullable' if hn else 'NOT NULL'}, release 0.1.0 "
                           f"has {'nullable' if wn else 'NOT NULL'}")
        for key in ("primary_key", "unique", "foreign_keys", "indexes"):
            if have[key] != want[key]:
                out.append(f"{table}: {key.replace('_', ' ')} {_plain(have[key])}, release "
                           f"0.1.0 has {_plain(want[key])}")
    return out


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}{list(v[0])}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, set):
        return str(sorted(value))
    return str(list(value))


def _adopt(conn: Connection) -> list[str]:
    """Stamp a database of release 0.1.0 as BASELINE if its tables are the baseline's;
    create the baseline tables it lacks (0.1.0 created checkpoints on first use only).
    Tables the later models know but the baseline does not mean it is something else."""
    baseline = _baseline_module()
    present = _state_tables(conn)
    unknown = (set(inspect(conn).get_table_names()) & set(state_metadata().tables)) - present
    problems = [f"table {t} is not in release 0.1.0" for t in sorted(unknown)]
    problems += _differences(_shape(conn, present), _baseline_shape())
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise SchemaVersionError(
            "state database has no revision and its tables are not those of release 0.1.0, "
            f"so it cannot be upgraded automatically: {'; '.join(problems[:3])}{more}")
    missing = [t for t in baseline.TABLES if t not in present]
    with Operations.context(MigrationContext.configure(conn)):
        for t in missing:
            baseline.TABLES[t]()
    command.stamp(_config(conn), BASELINE)
    return missing


# ---- for developers: a draft of the next revision ------------------------------------------

def draft_revision(message: str) -> Path:
    """Write versions/NNNN_<message>.py: what the models now have that head does not,
    compared on a scratch SQLite database at head (operations in batch mode, so they run on
    SQLite and PostgreSQL). A draft: read it, name constraints, move data, then test it."""
    number = max(int(rev) for rev in known_revisions() if rev.isdigit()) + 1
    scratch = create_engine("sqlite://")
    try:
        with scratch.begin() as conn:
            command.upgrade(_config(conn), "head")
            script = command.revision(_config(conn), message=message, autogenerate=True,
                                      rev_id=f"{number:04d}")
    finally:
        scratch.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


if __name__ == "__main__":  # python -m adapter.store.schema_version "add foo to exchanges"
    import sys

    print(draft_revision(" ".join(sys.argv[1:]) or "change"))
