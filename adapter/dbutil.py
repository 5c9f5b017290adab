"""Database engines for SQLite and PostgreSQL with the settings each needs to be safe.

SQLite: WAL, a busy timeout and `BEGIN IMMEDIATE`, so a writer takes the lock up front
instead of failing half-way with "database is locked"; synchronous=FULL so a committed
state change survives a power cut. PostgreSQL: a pre-pinged pool, READ COMMITTED, and
`FOR UPDATE SKIP LOCKED` claims (see store.repository).

An SQLite file holds personal data: it is created without any permission for others
(0660 less the umask: 0640 under umask 022, 0600 under 077), and SQLite gives its -wal and
-shm files the database's own mode. A file that cannot be used (not a database, or not
readable and writable by this user) is refused before SQLAlchemy opens it, with one line
naming the file and the permission needed.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from adapter.errors import AdapterError

SQLITE_MAGIC = b"SQLite format 3\x00"
#: a new database file's mode before the umask: never anything for others.
NEW_DB_MODE = 0o660


class DatabaseUnavailable(AdapterError):
    """A database this user cannot use; the message names the file or role and the fix."""

    #: not the exchange's fault: a round that meets it leaves the exchange to be retried.
    permanent = False


def make_engine(url: str, *, echo: bool = False) -> Engine:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        path = (Path(u.database) if u.database and u.database != ":memory:"
                and not u.database.startswith("file:") else None)
        if path is not None:
            _check_directory(path)
            if path.exists():
                prepare_sqlite_file(path)  # refuse an unusable file before anything opens it
        engine = create_engine(url, echo=echo, connect_args={"timeout": 60})

        @event.listens_for(engine, "do_connect")
        def _create_private(_dialect, _record, _cargs, _cparams) -> None:
            # created on first use only (never by merely naming it: `run` and `status`
            # must not leave an empty database behind), and private from its first byte
            if path is not None and not path.exists():
                prepare_sqlite_file(path)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if u.get_backend_name() == "postgresql" and u.get_driver_name() in ("", "psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    engine = create_engine(u, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10,
                           isolation_level="READ COMMITTED")
    event.listen(engine, "handle_error", _permission_denied)
    return engine


def _permission_denied(ctx) -> None:
    """A privilege the PostgreSQL role lacks (SQLSTATE 42501) becomes one line naming the
    role and what was refused, instead of a traceback; anything else is left to SQLAlchemy.
    (SQLite's file permissions are checked before opening, in prepare_sqlite_file.)"""
    exc = ctx.original_exception
    url = ctx.engine.url if ctx.engine is not None else None
    if getattr(exc, "sqlstate", None) == "42501":
        first = str(exc).splitlines()[0] if str(exc) else "permission denied"
        role = url.username if url is not None else "?"
        raise DatabaseUnavailable(
            f"the database role {role!r} may not do this: {first} (full packets are for "
            f"auditors; see 'Who can read the state database' in the operator guide)") from None


def _check_directory(path: Path) -> None:
    """The database's directory exists (created if need be) and this user may enter it:
    otherwise the file cannot even be seen, and SQLite would only say 'unable to open'."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise DatabaseUnavailable(
            f"cannot create the directory {path.parent} of the database {path}: permission "
            f"denied") from None
    if not os.access(path.parent, os.X_OK):
        raise DatabaseUnavailable(
            f"cannot open the database {path}: permission denied on the directory "
            f"{path.parent} ({_user_name()} needs search permission on it; see 'Who can read "
            f"the state database' in the operator guide)")


def prepare_sqlite_file(path: Path) -> None:
    """Create the file private (if missing) and refuse one SQLite cannot use, in one line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, NEW_DB_MODE)
        os.close(fd)
    except FileExistsError:
        pass
    except PermissionError:
        raise DatabaseUnavailable(
            f"cannot create the database {path}: permission denied (this user needs write "
            f"permission on {path.parent})") from None
    _check_access(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except IsADirectoryError:
        raise DatabaseUnavailable(f"{path} is a directory, not an SQLite database") from None
    if head and head != SQLITE_MAGIC:  # empty: a new database, SQLite writes the header
        raise DatabaseUnavailable(
            f"{path} is not an SQLite database (it does not start with 'SQLite format 3'): "
            f"check the URL in the configuration")


def _check_access(path: Path) -> None:
    """SQLite needs to read and write the file, its -wal and -shm files, and to create those
    in the directory when they are missing; say which is not allowed, and to whom."""
    user = _user_name()
    need = "read and write permission"
    if not os.access(path, os.R_OK | os.W_OK):
        raise DatabaseUnavailable(
            f"cannot open the database {path}: permission denied ({user} needs {need} on it; "
            f"see 'Who can read the state database' in the operator guide)")
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            if not os.access(side, os.R_OK | os.W_OK):
                raise DatabaseUnavailable(
                    f"cannot open the database {path}: permission denied on {side} "
                    f"({user} needs {need} on it, as on the database)")
        elif not os.access(path.parent, os.W_OK | os.X_OK):
            raise DatabaseUnavailable(
                f"cannot open the database {path}: permission denied on {path.parent} "
                f"({user} needs write permission there, for SQLite's {path.name}{suffix})")


def _user_name() -> str:
    import pwd

    try:
        return f"user {pwd.getpwuid(os.getuid()).pw_name!r}"
    except KeyError:
        return f"uid {os.getuid()}"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
