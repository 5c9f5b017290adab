"""Database engines for SQLite and PostgreSQL with the settings each needs to be safe.

SQLite: WAL, a busy timeout and `BEGIN IMMEDIATE`, so a writer takes the lock up front
instead of failing half-way with "database is locked"; synchronous=FULL so a committed
state change survives a power cut. PostgreSQL: a pre-pinged pool, READ COMMITTED, and
`FOR UPDATE SKIP LOCKED` claims (see store.repository).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def make_engine(url: str, *, echo: bool = False) -> Engine:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 60})

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
    return create_engine(u, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10,
                         isolation_level="READ COMMITTED")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
