"""Alembic environment of the state database: run through adapter.store.schema_version,
which passes an open connection (the URL comes from `[adapter] state_db`), so no
alembic.ini is needed at run time."""

from __future__ import annotations

from alembic import context

from adapter.store.schema_version import state_metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # `alembic` run by hand, or offline (--sql) mode: not supported
    raise RuntimeError("the state database migrations run through `thads-adapter db upgrade` "
                       "(adapter.store.schema_version), which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=state_metadata(),
    # SQLite cannot ALTER most things: batch mode copies the table instead
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    compare_server_default=True,
)
with context.begin_transaction():
    context.run_migrations()
