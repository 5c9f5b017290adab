"""The state database's Alembic environment and revisions, shipped inside the package so an
installed adapter can upgrade its own database (see adapter.store.schema_version)."""
