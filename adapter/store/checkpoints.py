"""The statements on the checkpoint table (the audit room signs and checks; the store reads
and writes), so that every statement on the state database lives in adapter/store."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from adapter.store.evidence import Checkpoint, EvidenceHead, table_of

CP = table_of(Checkpoint)
HEAD = table_of(EvidenceHead)


def head_for_checkpoint(conn: Connection) -> Any:
    """(seq, hash) of the chain's head; on PostgreSQL the row is locked, as appenders lock
    it, so two instances never sign with the same checkpoint number."""
    q = select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1)
    if conn.dialect.name != "sqlite":
        q = q.with_for_update()
    return conn.execute(q).first()


def newest(conn: Connection) -> Any:
    """The newest checkpoint row (seq, tip_hash, statement, at), or None."""
    return conn.execute(select(CP.c.seq, CP.c.tip_hash, CP.c.statement, CP.c.at)
                        .order_by(CP.c.id.desc()).limit(1)).first()


def statements(conn: Connection) -> list[str]:
    return list(conn.execute(select(CP.c.statement).order_by(CP.c.id)).scalars())


def add(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(CP).values(**row))


def unstamped(conn: Connection) -> list[tuple[int, str]]:
    """(id, statement) of the checkpoints still without an RFC 3161 token, oldest first."""
    return [(r.id, r.statement) for r in conn.execute(
        select(CP.c.id, CP.c.statement).where(CP.c.tsa_token.is_(None)).order_by(CP.c.id))]


def count_unstamped(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(CP)
                        .where(CP.c.tsa_token.is_(None))).scalar_one()


def set_token(conn: Connection, checkpoint_id: int, token: bytes) -> None:
    conn.execute(update(CP).where(CP.c.id == checkpoint_id).values(
        tsa_token=token, stamped_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)))
