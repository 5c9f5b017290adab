"""The claim reads the due set through indexes: `ix_exchanges_queue`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Issue 12: a claim of due exchanges used to read every row of its route and sort the due
ones, so its cost grew with the table (70 ms at 400,000 rows). With (route, state, id) the
pending set is an index range scan in id order that stops after `limit` rows; retry_wait is
served by the existing (route, state, next_attempt_at). On a large table, creating the index
takes a while once (PostgreSQL: run `db upgrade` in a quiet hour, or create the index
CONCURRENTLY beforehand under this name and the upgrade finds it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _exists(name: str) -> bool:
    return name in {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("exchanges")}


def upgrade() -> None:
    if not _exists("ix_exchanges_queue"):  # perhaps created CONCURRENTLY beforehand
        op.create_index("ix_exchanges_queue", "exchanges", ["route", "state", "id"])


def downgrade() -> None:
    op.drop_index("ix_exchanges_queue", table_name="exchanges")
