"""Checkpoints: the chain's tip, signed with the adapter's key, in a chain of their own.

A checkpoint turns "the chain is consistent" into "the chain is what the adapter had at that
moment": deleting or rewriting entries up to a checkpoint, even with the hashes recomputed,
no longer matches the signed tip. Each v2 statement also signs where its range starts
(`first`, `start`: the previous checkpoint's seq + 1 and tip), its own number, the hash of
the previous statement and the latest archive record, so deleting checkpoints, cutting the
head of a bundle or fabricating an archive record breaks a signature. The statement is plain
text, so `openssl dgst -verify` can check it without our code.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from sqlalchemy.engine import Connection, Engine

from adapter.crypto.keys import SigningIdentity
from adapter.store import checkpoints, evidence
from adapter.store.evidence import GENESIS, Checkpoint

__all__ = [
    "Checkpoint",
    "CheckpointSummary",
    "Statement",
    "checkpoint_in",
    "make_checkpoint",
    "sign_statement",
    "stamp_pending",
    "statement",
    "statement_hash",
    "summary",
]

V1 = "thads-adapter evidence checkpoint v1"
V2 = "thads-adapter evidence checkpoint v2"


def statement(seq: int, tip: str, at: str) -> str:
    """A v1 statement (releases before the checkpoint chain): the tip only."""
    return f"{V1}\nseq={seq}\ntip={tip}\nat={at}\n"


def statement_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Statement:
    """What a checkpoint signs. v2 adds its place in the chain of checkpoints."""

    version: int
    seq: int
    tip: str
    at: str
    number: int = 0
    first: int = 0
    start: str = GENESIS
    prev: str = GENESIS
    #: the latest archive record: "seq_to tip bundle_sha256 checkpoint_number
    #: checkpoint_hash", or "none"
    archive: str = "none"

    def text(self) -> str:
        if self.version == 1:
            return statement(self.seq, self.tip, self.at)
        return (f"{V2}\nnumber={self.number}\nseq={self.seq}\ntip={self.tip}\n"
                f"first={self.first}\nstart={self.start}\nprev={self.prev}\n"
                f"archive={self.archive}\nat={self.at}\n")

    @classmethod
    def parse(cls, text: str) -> Statement:
        """Read a statement; ValueError unless it is exactly what `text()` would write."""
        lines = text.split("\n")
        fields = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
        try:
            if lines[0] == V1:
                st = cls(1, int(fields["seq"]), fields["tip"], fields["at"])
            elif lines[0] == V2:
                st = cls(2, int(fields["seq"]), fields["tip"], fields["at"],
                         int(fields["number"]), int(fields["first"]), fields["start"],
                         fields["prev"], fields["archive"])
            else:
                raise ValueError(f"unknown statement version {lines[0]!r}")
        except (KeyError, IndexError) as exc:
            raise ValueError(f"statement lacks {exc}") from None
        if st.text() != text:
            raise ValueError("statement is not in its canonical form")
        return st


def archive_line(row: dict | None) -> str:
    if row is None:
        return "none"
    return (f"{row['seq_to']} {row['tip_hash']} {row['bundle_sha256']} "
            f"{row['checkpoint_number'] or 0} {row['checkpoint_hash'] or GENESIS}")


def sign_statement(identity: SigningIdentity, text: str) -> str:
    data = text.encode()
    if isinstance(identity.key, ec.EllipticCurvePrivateKey):
        sig = identity.key.sign(data, ec.ECDSA(hashes.SHA256()))
    else:
        sig = identity.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig).decode()


def numbers(statements: list[str], arch: dict | None) -> list[int]:
    """Each checkpoint's number: its own for v2; for v1 (no number signed), its position
    after the last checkpoint an archive moved out (archives before v2 moved none)."""
    n = (arch or {}).get("checkpoint_number") or 0
    out = []
    for text in statements:
        st = Statement.parse(text)
        n = st.number if st.version == 2 else n + 1
        out.append(n)
    return out


def chain_position(conn: Connection) -> tuple[int, str, int, str]:
    """(number, statement hash, seq, tip) of the newest checkpoint, or where the chain
    of checkpoints starts when there is none (after an archive, or at genesis)."""
    arch = evidence.latest_archive(conn)
    last = checkpoints.newest(conn)
    if last is not None:
        st = Statement.parse(last.statement)
        number = st.number if st.version == 2 else numbers(  # v1: count them, once
            checkpoints.statements(conn), arch)[-1]
        return number, statement_hash(last.statement), last.seq, last.tip_hash
    if arch is not None:
        return (arch["checkpoint_number"] or 0, arch["checkpoint_hash"] or GENESIS,
                arch["seq_to"], arch["tip_hash"])
    return 0, GENESIS, 0, GENESIS


def checkpoint_in(conn: Connection, identity: SigningIdentity, *,
                  force: bool = False) -> Checkpoint | None:
    """Sign the current tip inside the caller's transaction, unless the newest checkpoint
    covers it already (`force`: sign anyway, e.g. to sign a new archive record)."""
    head = checkpoints.head_for_checkpoint(conn)  # locked: one checkpoint number each
    if head is None or head.seq == 0:
        return None
    number, prev, last_seq, last_tip = chain_position(conn)
    if last_seq >= head.seq and not force:
        return None
    now = dt.datetime.now(dt.UTC)
    at = now.isoformat(timespec="seconds")
    identity = identity.at(now)  # a rotation: the key that is current at this moment
    arch = evidence.latest_archive(conn)
    text = Statement(2, head.seq, head.hash, at, number + 1, last_seq + 1, last_tip, prev,
                     archive_line(arch)).text()
    pem = identity.cert.public_bytes(serialization.Encoding.PEM).decode()
    row = dict(seq=head.seq, tip_hash=head.hash, at=at, statement=text,
               signature=sign_statement(identity, text), cert_pem=pem)
    checkpoints.add(conn, row)
    return Checkpoint(**row)


def make_checkpoint(engine: Engine, identity: SigningIdentity) -> Checkpoint | None:
    """Sign the current tip, unless the last checkpoint already covers it."""
    with engine.begin() as c:
        return checkpoint_in(c, identity)


def stamp_pending(engine: Engine, tsa_url: str) -> tuple[int, str | None]:
    """Timestamp every checkpoint still without a token; returns (stamped, last error).
    Called at every checkpoint round, so an outage only delays the stamps."""
    from adapter.audit.timestamp import TimestampError, request_token

    with engine.connect() as c:
        pending = checkpoints.unstamped(c)
    stamped = 0
    for cp_id, text in pending:
        try:
            token = request_token(text.encode(), tsa_url)
        except TimestampError as exc:
            return stamped, str(exc)
        with engine.begin() as c:
            checkpoints.set_token(c, cp_id, token)
        stamped += 1
    return stamped, None


@dataclass(frozen=True)
class CheckpointSummary:
    """Where signing stands, for `status` and the service's checkpoint job."""

    #: the entry the newest checkpoint signs, and when it was signed (0, None: none yet)
    last_seq: int
    last_at: str | None
    #: checkpoints still waiting for their RFC 3161 timestamp
    unstamped: int


def summary(engine: Engine) -> CheckpointSummary:
    with engine.connect() as c:
        last = checkpoints.newest(c)
        unstamped = checkpoints.count_unstamped(c)
    return CheckpointSummary(last.seq if last else 0, last.at if last else None, unstamped)
