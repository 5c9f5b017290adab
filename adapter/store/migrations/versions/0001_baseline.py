"""Baseline: the state database of release 0.1.0, as its models created it.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Written by hand, frozen: it must keep describing release 0.1.0 whatever the models become,
because a database that 0.1.0 created (with create_all, no alembic_version table) is adopted
as this revision (adapter.store.schema_version). Constraint names are left to each database's
defaults, as create_all left them, so later revisions find the same names in adopted and in
fresh databases. One function per table: adoption creates the tables 0.1.0 made only on first
use (checkpoints) with the same definitions.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), autoincrement=True, nullable=False)


def _exchanges() -> None:
    op.create_table(
        "exchanges",
        _id(),
        sa.Column("packet_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("peer", sa.String(40), nullable=True),
        sa.Column("source_key", sa.String(80), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(120), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("platform_message_id", sa.String(80), nullable=True),
        sa.Column("receipt_status", sa.String(20), nullable=True),
        sa.Column("signature", sa.String(12), nullable=True),
        sa.Column("replayed_at", sa.DateTime(), nullable=True),
        sa.Column("attempts_at_replay", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("packet_id"),
    )
    op.create_index("ix_exchanges_document_id", "exchanges", ["document_id"])
    op.create_index("ix_exchanges_claim", "exchanges", ["route", "state", "next_attempt_at"])
    op.create_index("ix_exchanges_state", "exchanges", ["state", "kind"])
    op.create_index("ix_exchanges_source", "exchanges", ["source_key"])


def _packets() -> None:
    op.create_table(
        "packets",
        sa.Column("packet_id", sa.String(36), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["packet_id"], ["exchanges.packet_id"]),
        sa.PrimaryKeyConstraint("packet_id"),
    )


def _attempts() -> None:
    op.create_table(
        "attempts",
        _id(),
        sa.Column("exchange_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("instance", sa.String(120), nullable=True),
        sa.ForeignKeyConstraint(["exchange_id"], ["exchanges.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_attempts_exchange_id", "attempts", ["exchange_id"])


def _cursors() -> None:
    op.create_table(
        "cursors",
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("position", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("route"),
    )


def _status_reports() -> None:
    op.create_table(
        "status_reports",
        _id(),
        sa.Column("exchange_id", sa.Integer(), nullable=False),
        sa.Column("organ_id", sa.String(40), nullable=False),
        sa.Column("code", sa.String(2), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("reported_at", sa.String(19), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["exchange_id"], ["exchanges.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_status_reports_exchange_id", "status_reports", ["exchange_id"])


def _operator_actions() -> None:
    op.create_table(
        "operator_actions",
        _id(),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("exchange_id", sa.Integer(), nullable=False),
        sa.Column("packet_id", sa.String(36), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["exchange_id"], ["exchanges.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_operator_actions_exchange_id", "operator_actions", ["exchange_id"])


def _breakers() -> None:
    op.create_table(
        "breakers",
        sa.Column("endpoint", sa.String(40), nullable=False),
        sa.Column("instance", sa.String(120), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("opened_for", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("endpoint", "instance"),
    )


def _evidence() -> None:
    op.create_table(
        "evidence",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("direction", sa.String(3), nullable=True),
        sa.Column("peer", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("exchange_id", sa.Integer(), nullable=True),
        sa.Column("packet_id", sa.String(36), nullable=True),
        sa.Column("content_sha256", sa.String(64), nullable=True),
        sa.Column("signature", sa.String(12), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_evidence_exchange_id", "evidence", ["exchange_id"])
    op.create_index("ix_evidence_packet_id", "evidence", ["packet_id"])


def _evidence_blobs() -> None:
    op.create_table(
        "evidence_blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )


def _evidence_head() -> None:
    op.create_table(
        "evidence_head",
        _id(),  # a single row (id 1), but SERIAL on PostgreSQL as create_all made it
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def _evidence_archives() -> None:
    op.create_table(
        "evidence_archives",
        _id(),
        sa.Column("seq_to", sa.Integer(), nullable=False),
        sa.Column("tip_hash", sa.String(64), nullable=False),
        sa.Column("bundle", sa.String(300), nullable=False),
        sa.Column("bundle_sha256", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def _checkpoints() -> None:
    op.create_table(
        "checkpoints",
        _id(),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("tip_hash", sa.String(64), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("tsa_token", sa.LargeBinary(), nullable=True),
        sa.Column("stamped_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


#: every table of release 0.1.0, in an order that creates referenced tables first
TABLES: dict[str, Callable[[], None]] = {
    "exchanges": _exchanges,
    "packets": _packets,
    "attempts": _attempts,
    "cursors": _cursors,
    "status_reports": _status_reports,
    "operator_actions": _operator_actions,
    "breakers": _breakers,
    "evidence": _evidence,
    "evidence_blobs": _evidence_blobs,
    "evidence_head": _evidence_head,
    "evidence_archives": _evidence_archives,
    "checkpoints": _checkpoints,
}


def upgrade() -> None:
    for create in TABLES.values():
        create()


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
