"""Packet bytes keyed by exchange id; no index on packet digests or evidence packet ids.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Issue 12: the backfill's cost per packet grew with the table. Packet ids and digests are
hash-like, so every index keyed by them took each insert at a random position and dirtied
a page of its own once it outgrew the page cache (a 500-packet prepare wrote 624 pages at
0 rows, 2,719 at 90,000). `packets` is now keyed by the exchange id (grows with time:
inserts append); `ix_packets_sha256` and `ix_evidence_packet_id` served no hot path and are
dropped (the audit finds a packet's bytes through the packet id its entry names, via
`exchanges`). The unique `exchanges.packet_id` stays: it makes packet ids idempotent.

The upgrade copies every packet once (in exchange order) into the new table: on a large
database run `db upgrade` in a quiet hour (about a minute per million packets on SQLite).
PostgreSQL: the grants on the old table are carried over to the new one, a column grant on
`packet_id` becoming one on `exchange_id` (docs/operator-guide.md lists the operator role's).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _grants() -> list[tuple[str, str, str | None]]:
    """(grantee, privilege, column or None) of everyone but the owner on `packets`."""
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return []
    tables = conn.execute(sa.text(
        "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
        "WHERE table_name = 'packets' AND table_schema = current_schema() "
        "AND grantee <> current_user")).all()
    columns = conn.execute(sa.text(
        "SELECT grantee, privilege_type, column_name FROM information_schema.column_privileges "
        "WHERE table_name = 'packets' AND table_schema = current_schema() "
        "AND grantee <> current_user")).all()
    whole = {(g, p) for g, p in tables}
    return [(g, p, None) for g, p in sorted(whole)] + \
        [(g, p, c) for g, p, c in sorted(columns) if (g, p) not in whole]


def _regrant(grants: list[tuple[str, str, str | None]], renamed: dict[str, str]) -> None:
    quote = op.get_bind().dialect.identifier_preparer.quote
    for grantee, privilege, col in grants:
        cols = "" if col is None else f" ({quote(renamed.get(col, col))})"
        op.execute(f"GRANT {privilege}{cols} ON packets TO {quote(grantee)}")


def _rename_constraints(old_table: str) -> None:
    """PostgreSQL names a table's constraints after it: keep the names a fresh database has."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for suffix in ("pkey", "exchange_id_fkey", "packet_id_fkey"):
        op.execute(f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = "
                   f"'{old_table}_{suffix}') THEN ALTER TABLE packets RENAME CONSTRAINT "
                   f"{old_table}_{suffix} TO packets_{suffix}; END IF; END $$")


def upgrade() -> None:
    grants = _grants()
    op.drop_index("ix_evidence_packet_id", table_name="evidence")
    op.create_table(
        "packets_by_exchange",
        sa.Column("exchange_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["exchange_id"], ["exchanges.id"]),
        sa.PrimaryKeyConstraint("exchange_id"),
    )
    op.execute("INSERT INTO packets_by_exchange (exchange_id, sha256, payload) "
               "SELECT x.id, p.sha256, p.payload FROM packets p "
               "JOIN exchanges x ON x.packet_id = p.packet_id ORDER BY x.id")
    op.drop_index("ix_packets_sha256", table_name="packets")
    op.drop_table("packets")
    op.rename_table("packets_by_exchange", "packets")
    _rename_constraints("packets_by_exchange")
    _regrant(grants, {"packet_id": "exchange_id"})


def downgrade() -> None:
    """Back to packets keyed by packet id, with both indexes."""
    grants = _grants()
    op.create_table(
        "packets_by_id",
        sa.Column("packet_id", sa.String(36), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["packet_id"], ["exchanges.packet_id"]),
        sa.PrimaryKeyConstraint("packet_id"),
    )
    op.execute("INSERT INTO packets_by_id (packet_id, sha256, payload) "
               "SELECT x.packet_id, p.sha256, p.payload FROM packets p "
               "JOIN exchanges x ON x.id = p.exchange_id ORDER BY x.id")
    op.drop_table("packets")
    op.rename_table("packets_by_id", "packets")
    _rename_constraints("packets_by_id")
    op.create_index("ix_packets_sha256", "packets", ["sha256"])
    op.create_index("ix_evidence_packet_id", "evidence", ["packet_id"])
    _regrant(grants, {"exchange_id": "packet_id"})
