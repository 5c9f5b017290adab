"""Alembic revisions of the state database, one file per schema change (Alembic skips this
file)."""
