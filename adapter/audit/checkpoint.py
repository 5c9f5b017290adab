"""Checkpoints: the chain's tip, signed with the adapter's key.

A checkpoint turns "the chain is consistent" into "the chain is what the adapter had at that
moment": deleting or rewriting entries up to a checkpoint, even with the hashes recomputed,
no longer matches the signed tip. The statement is plain text, so `openssl dgst -verify`
can check it without our code.
"""

from __future__ import annotations

import base64
import datetime as dt

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from sqlalchemy import DateTime, Integer, LargeBinary, String, Text, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from adapter.crypto.keys import SigningIdentity
from adapter.store.evidence import EvidenceHead
from adapter.store.models import StateBase


class Checkpoint(StateBase):
    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(Integer)
    tip_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[str] = mapped_column(String(32))
    statement: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(Text)  # base64
    cert_pem: Mapped[str] = mapped_column(Text)
    tsa_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    stamped_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


def statement(seq: int, tip: str, at: str) -> str:
    return f"thads-adapter evidence checkpoint v1\nseq={seq}\ntip={tip}\nat={at}\n"


def sign_statement(identity: SigningIdentity, text: str) -> str:
    data = text.encode()
    if isinstance(identity.key, ec.EllipticCurvePrivateKey):
        sig = identity.key.sign(data, ec.ECDSA(hashes.SHA256()))
    else:
        sig = identity.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig).decode()


def make_checkpoint(engine: Engine, identity: SigningIdentity) -> Checkpoint | None:
    """Sign the current tip, unless the last checkpoint already covers it."""
    StateBase.metadata.create_all(engine, tables=[Checkpoint.__table__])
    with engine.begin() as c:
        head = c.execute(select(EvidenceHead.seq, EvidenceHead.hash)
                         .where(EvidenceHead.id == 1)).first()
        if head is None or head.seq == 0:
            return None
        last = c.execute(select(func.max(Checkpoint.seq))).scalar()
        if last is not None and last >= head.seq:
            return None
        now = dt.datetime.now(dt.UTC)
        at = now.isoformat(timespec="seconds")
        identity = identity.at(now)  # a rotation: the key that is current at this moment
        text = statement(head.seq, head.hash, at)
        pem = identity.cert.public_bytes(serialization.Encoding.PEM).decode()
        row = dict(seq=head.seq, tip_hash=head.hash, at=at, statement=text,
                   signature=sign_statement(identity, text), cert_pem=pem)
        c.execute(insert(Checkpoint.__table__).values(**row))
    return Checkpoint(**row)


def stamp_pending(engine: Engine, tsa_url: str) -> tuple[int, str | None]:
    """Timestamp every checkpoint still without a token; returns (stamped, last error).
    Called at every checkpoint round, so an outage only delays the stamps."""
    from sqlalchemy import update

    from adapter.audit.timestamp import TimestampError, request_token

    with engine.connect() as c:
        pending = c.execute(select(Checkpoint.id, Checkpoint.statement).where(
            Checkpoint.tsa_token.is_(None)).order_by(Checkpoint.id)).all()
    stamped = 0
    for cp_id, text in pending:
        try:
            token = request_token(text.encode(), tsa_url)
        except TimestampError as exc:
            return stamped, str(exc)
        with engine.begin() as c:
            c.execute(update(Checkpoint).where(Checkpoint.id == cp_id).values(
                tsa_token=token, stamped_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)))
        stamped += 1
    return stamped, None
