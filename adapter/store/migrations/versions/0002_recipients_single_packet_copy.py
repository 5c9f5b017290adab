"""Recipients as rows, packet bytes stored once, archives name their last checkpoint.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Issue 8's state schema:

- `exchange_recipients`: one row per addressee of an edXML document we sent (the
  comma-joined `exchanges.peer`, cut at 40 characters, lost the third and later ones).
  Backfilled for every outbound `edoc` exchange: the addressees are the complete
  organisation ids of `peer`; when `peer` was cut, the `To` list of the stored packet (the
  signed bytes we sent) instead, since it names every one. Each row gets its latest status
  report (`status`, `status_at`) and the first report that settled it (`settled`: the code
  of the first 02-06 answer, as adapter.store.recipients writes it).
- `ix_packets_sha256`: evidence entries now name packet bytes by SHA-256 in `packets`.
- `evidence_blobs` dropped: it was the second copy of every packet. Dropped only if each of
  its blobs is in `packets` with the same SHA-256 and the same bytes; otherwise the upgrade
  stops, listing them, and nothing is changed (evidence bytes are never lost).
- `evidence_archives.checkpoint_number`, `.checkpoint_hash` (NULL for archives made before
  v2 checkpoints).

`checkpoints` needs nothing here: revision 0001 has it, and adopting a database of release
0.1.0 creates it when 0.1.0 had not yet.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

log = logging.getLogger("adapter.store.migrations")

#: how release 0.1.0 stored the recipients of a document: comma-joined, cut at this length
PEER_LENGTH = 40
ORGAN_ID = re.compile(r"\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}")
EDXML = "{http://www.mic.gov.vn/TBT/QCVN_102_2016}"
TO_IDS = f"{EDXML}edXMLEnvelope/{EDXML}edXMLHeader/{EDXML}MessageHeader/{EDXML}To/{EDXML}OrganId"
SETTLING = ("02", "03", "04", "05", "06")
BATCH = 500
#: blobs named in the abort message (all of them go to the log)
LISTED = 20

exchanges = sa.table("exchanges", sa.column("id", sa.Integer), sa.column("kind", sa.String),
                     sa.column("direction", sa.String), sa.column("peer", sa.String),
                     sa.column("packet_id", sa.String))
packets = sa.table("packets", sa.column("packet_id", sa.String), sa.column("sha256", sa.String),
                   sa.column("payload", sa.LargeBinary))
status_reports = sa.table("status_reports", sa.column("id", sa.Integer),
                          sa.column("exchange_id", sa.Integer), sa.column("organ_id", sa.String),
                          sa.column("code", sa.String), sa.column("received_at", sa.DateTime))
evidence = sa.table("evidence", sa.column("content_sha256", sa.String))


def _note(text: str) -> None:
    """Tell the operator: the log, and the notes `upgrade_to_head` returns to print."""
    log.warning("%s", text)
    config = op.get_context().config
    if config is not None:
        config.attributes.setdefault("notes", []).append(text)


# ---- exchange_recipients ------------------------------------------------------------------

def _create_recipients() -> None:
    op.create_table(
        "exchange_recipients",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("exchange_id", sa.Integer(), nullable=False),
        sa.Column("organ_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(2), nullable=True),
        sa.Column("status_at", sa.DateTime(), nullable=True),
        sa.Column("settled", sa.String(2), nullable=True),
        sa.ForeignKeyConstraint(["exchange_id"], ["exchanges.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("exchange_id", "organ_id", name="uq_exchange_recipients"),
    )


def _split_peer(peer: str | None) -> tuple[list[str], str | None]:
    """(the complete organisation ids of `peer`, the cut-off last fragment or None)."""
    parts = [p.strip() for p in (peer or "").split(",") if p.strip()]
    if parts and not ORGAN_ID.fullmatch(parts[-1]) and len(peer or "") >= PEER_LENGTH:
        return parts[:-1], parts[-1]
    return parts, None


def _addressed(payload: bytes | None, ex_id: int) -> list[str] | None:
    """The `To` organisation ids of the document as we sent it; None when the bytes are
    gone or unreadable."""
    from adapter.errors import PacketError
    from adapter.xml.safe import parse_untrusted

    if not payload:
        return None
    try:
        root = parse_untrusted(bytes(payload), name=f"exchange {ex_id}",
                               max_bytes=len(payload))
    except PacketError:
        return None
    return [(el.text or "").strip() for el in root.iterfind(TO_IDS) if (el.text or "").strip()]


def _recipients_of(conn: sa.Connection, ex_id: int, peer: str | None, packet_id: str,
                   cut: list[str], unrecovered: list[str]) -> list[str]:
    ids, fragment = _split_peer(peer)
    if fragment is None:
        return ids
    payload = conn.execute(sa.select(packets.c.payload)
                           .where(packets.c.packet_id == packet_id)).scalar()
    sent = _addressed(payload, ex_id)
    if sent is None:
        unrecovered.append(f"{ex_id} (kept {', '.join(ids) or 'none'}; dropped {fragment!r})")
        return ids
    cut.append(f"{ex_id} ({fragment!r})")
    return list(dict.fromkeys([*sent, *ids]))


def _reports(conn: sa.Connection, ex_ids: Sequence[int]) -> dict[tuple[int, str], list]:
    """Each (exchange, organisation)'s status reports in the order they were received."""
    sr = status_reports
    out: dict[tuple[int, str], list] = {}
    for r in conn.execute(sa.select(sr.c.exchange_id, sr.c.organ_id, sr.c.code,
                                    sr.c.received_at)
                          .where(sr.c.exchange_id.in_(list(ex_ids))).order_by(sr.c.id)):
        out.setdefault((r.exchange_id, r.organ_id), []).append(r)
    return out


def _backfill_recipients(conn: sa.Connection) -> None:
    rc = sa.table("exchange_recipients", sa.column("exchange_id", sa.Integer),
                  sa.column("organ_id", sa.String), sa.column("status", sa.String),
                  sa.column("status_at", sa.DateTime), sa.column("settled", sa.String))
    x = exchanges
    after, documents, rows_made = 0, 0, 0
    cut: list[str] = []
    unrecovered: list[str] = []
    while batch := conn.execute(
            sa.select(x.c.id, x.c.peer, x.c.packet_id)
            .where(x.c.kind == "edoc", x.c.direction == "out", x.c.id > after)
            .order_by(x.c.id).limit(BATCH)).all():
        after = batch[-1].id
        reports = _reports(conn, [b.id for b in batch])
        rows = []
        for ex in batch:
            documents += 1
            for organ in _recipients_of(conn, ex.id, ex.peer, ex.packet_id, cut, unrecovered):
                timeline = reports.get((ex.id, organ), [])
                latest = timeline[-1] if timeline else None
                settled = next((r.code for r in timeline if r.code in SETTLING), None)
                rows.append(dict(exchange_id=ex.id, organ_id=organ,
                                 status=latest.code if latest else None,
                                 status_at=latest.received_at if latest else None,
                                 settled=settled))
        if rows:
            conn.execute(sa.insert(rc), rows)
            rows_made += len(rows)
    if documents:
        _note(f"exchange_recipients: {rows_made} recipients of {documents} documents sent")
    if cut:
        _note(f"{len(cut)} documents had their recipients cut at {PEER_LENGTH} characters: "
              f"taken from the packets sent instead (exchange and dropped fragment: "
              f"{'; '.join(cut)})")
    if unrecovered:
        _note(f"{len(unrecovered)} documents had their recipients cut at {PEER_LENGTH} "
              f"characters and their packet is unreadable: only the complete ids were kept, "
              f"check them with `exchanges show` ({'; '.join(unrecovered)})")


# ---- packet bytes stored once ---------------------------------------------------------------

def _blobs_not_in_packets(conn: sa.Connection) -> list[str]:
    blobs = sa.table("evidence_blobs", sa.column("sha256", sa.String),
                     sa.column("content", sa.LargeBinary))
    same = sa.select(sa.literal(1)).where(packets.c.sha256 == blobs.c.sha256,
                                          packets.c.payload == blobs.c.content)
    return list(conn.execute(sa.select(blobs.c.sha256).where(~same.exists())
                             .order_by(blobs.c.sha256)).scalars())


def _drop_blobs(conn: sa.Connection) -> None:
    from adapter.store.schema_version import SchemaVersionError

    missing = _blobs_not_in_packets(conn)
    if missing:
        log.error("evidence_blobs not in packets (sha256): %s", ", ".join(missing))
        more = f" (and {len(missing) - LISTED} more, in the log)" if len(missing) > LISTED \
            else ""
        raise SchemaVersionError(
            f"upgrade to revision {revision} stopped, nothing was changed: {len(missing)} "
            f"evidence blobs have no packet with the same SHA-256 and bytes, and dropping "
            f"evidence_blobs would lose them (sha256 {', '.join(missing[:LISTED])}{more}); "
            "keep this database on the release that made it and report it")
    op.drop_table("evidence_blobs")


def upgrade() -> None:
    conn = op.get_bind()
    _create_recipients()
    _backfill_recipients(conn)
    op.create_index("ix_packets_sha256", "packets", ["sha256"])
    _drop_blobs(conn)
    with op.batch_alter_table("evidence_archives") as b:
        b.add_column(sa.Column("checkpoint_number", sa.Integer(), nullable=True))
        b.add_column(sa.Column("checkpoint_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    """Back to release 0.1.0's schema. The second copy of the packet bytes the log names is
    restored (from `packets`; bytes `audit archive` has freed stay in their bundle); the
    recipients' rows and the archives' checkpoint numbers are lost (`peer` still holds
    the recipients as 0.1.0 kept them)."""
    conn = op.get_bind()
    with op.batch_alter_table("evidence_archives") as b:
        b.drop_column("checkpoint_hash")
        b.drop_column("checkpoint_number")
    op.create_table(
        "evidence_blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    named = sa.select(evidence.c.content_sha256).where(evidence.c.content_sha256.is_not(None))
    first = (sa.select(packets.c.sha256, sa.func.min(packets.c.packet_id).label("packet_id"))
             .where(packets.c.sha256.in_(named), sa.func.length(packets.c.payload) > 0)
             .group_by(packets.c.sha256).subquery())
    conn.execute(sa.insert(sa.table("evidence_blobs", sa.column("sha256"),
                                    sa.column("content"))).from_select(
        ["sha256", "content"],
        sa.select(packets.c.sha256, packets.c.payload).join(
            first, packets.c.packet_id == first.c.packet_id)))
    op.drop_index("ix_packets_sha256", table_name="packets")
    op.drop_table("exchange_recipients")
