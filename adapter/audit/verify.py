"""Verify the evidence log: the chain, the packet bytes, the head, and the checkpoints.

It reads the state database only (a copy will do, with the service stopped) and reports
every problem, first one first, naming the entry and what is wrong: modified, deleted,
inserted, reordered, truncated, packet bytes changed, forged checkpoint.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from sqlalchemy import select
from sqlalchemy.engine import Engine

from adapter.audit.checkpoint import Checkpoint, statement
from adapter.audit.timestamp import verify_token
from adapter.crypto.trust import Purpose, UntrustedCertificate, verify_signer
from adapter.store.evidence import (
    GENESIS,
    EvidenceArchive,
    EvidenceBlob,
    EvidenceEntry,
    EvidenceHead,
    entry_hash,
)
from adapter.store.models import StateBase


@dataclass(frozen=True)
class Problem:
    seq: int | None
    #: modified | deleted | inserted | reordered | truncated | bytes | checkpoint | timestamp
    what: str
    detail: str

    def __str__(self) -> str:
        where = f"entry {self.seq}" if self.seq is not None else "log"
        return f"{where}: {self.what}: {self.detail}"


@dataclass
class Report:
    entries: int = 0
    checkpoints: int = 0
    last_checkpoint_seq: int = 0
    unstamped: int = 0
    archived_to: int = 0
    #: packet signatures verified again and found as recorded (or reported)
    signatures: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def _signature_outcome(verifier, blob: bytes) -> str | None:
    """valid | invalid | absent | untrusted for a THADS packet; None for other packets
    (edXML outcomes depend on the peer's profile and are checked as recorded at receipt)."""
    from adapter.errors import PacketError, SignatureError
    from adapter.xml.safe import parse_untrusted

    try:
        root = parse_untrusted(blob)
    except PacketError:
        return "invalid"
    if not root.tag.startswith("{urn:thads-adapter:exchange:1}"):
        return None
    try:
        verifier.verify(root)
    except SignatureError as exc:
        return exc.outcome
    except PacketError:
        return "invalid"
    return "valid"


def verify_log(engine: Engine, trust_anchors: list[x509.Certificate], *,
               batch: int = 5000, tsa_ca: Path | None = None) -> Report:
    StateBase.metadata.create_all(engine, tables=[Checkpoint.__table__])
    from adapter.crypto.verify import PacketVerifier

    verifier = PacketVerifier(trust_anchors)
    received: dict[int, str] = {}  # exchange id -> sha256 of the packet as received
    rep = Report()
    prev, expected, last = GENESIS, 1, None
    t = EvidenceEntry.__table__
    StateBase.metadata.create_all(engine, tables=[EvidenceArchive.__table__])
    with engine.connect() as c:
        arch = c.execute(select(EvidenceArchive.__table__)
                         .order_by(EvidenceArchive.id.desc()).limit(1)).first()
        if arch is not None:  # the chain goes on from the archived tip
            prev, expected = arch.tip_hash, arch.seq_to + 1
            rep.archived_to = arch.seq_to
            rep.notes.append(f"entries 1..{arch.seq_to} are archived in {arch.bundle} "
                             f"(sha256 {arch.bundle_sha256[:16]}…); check it with "
                             "audit verify-bundle")
        after = expected - 1
        head_row = c.execute(select(EvidenceHead.seq).where(EvidenceHead.id == 1)).scalar()
        head_seq = head_row if head_row is not None else 10**18
        while True:
            rows = c.execute(select(t).where(t.c.seq > after).order_by(t.c.seq)
                             .limit(batch)).all()
            if not rows:
                break
            for r in rows:
                e = dict(r._mapping)
                if e["seq"] > head_seq:
                    rep.problems.append(Problem(e["seq"], "inserted", (
                        f"it lies after the head (entry {head_seq}): added outside the "
                        "adapter")))
                    rep.entries += 1
                    continue
                if e["seq"] != expected:
                    rep.problems.append(Problem(expected, "deleted", (
                        f"entries {expected}..{e['seq'] - 1} are missing")
                        if e["seq"] > expected else f"sequence {e['seq']} out of order"))
                if entry_hash(e["prev_hash"], e) != e["entry_hash"]:
                    rep.problems.append(Problem(e["seq"], "modified",
                                                "its content no longer matches its hash"))
                elif e["prev_hash"] != prev:
                    other = c.execute(select(t.c.seq).where(t.c.entry_hash == e["prev_hash"])
                                      ).scalar()
                    if other is not None:
                        rep.problems.append(Problem(e["seq"], "reordered", (
                            f"it follows entry {other} in the chain, not entry "
                            f"{e['seq'] - 1}")))
                    else:
                        rep.problems.append(Problem(e["seq"], "inserted", (
                            "it does not follow any entry of the chain (it was inserted, or "
                            "the entry before it was deleted)")))
                if e["event"] == "received" and e["content_sha256"]:
                    received[e["exchange_id"]] = e["content_sha256"]
                sha = e["content_sha256"] or (received.get(e["exchange_id"])
                                              if e["signature"] else None)
                blob = None
                if sha:
                    blob = c.execute(select(EvidenceBlob.content).where(
                        EvidenceBlob.sha256 == sha)).scalar()
                if e["content_sha256"]:
                    if blob is None:
                        rep.problems.append(Problem(e["seq"], "bytes", "packet bytes missing"))
                    elif hashlib.sha256(blob).hexdigest() != e["content_sha256"]:
                        rep.problems.append(Problem(e["seq"], "bytes", (
                            "packet bytes changed: their SHA-256 is not the recorded one")))
                        blob = None
                if blob is not None and e["signature"]:
                    found = _signature_outcome(verifier, blob)
                    if found is not None:
                        rep.signatures += 1
                        if found != e["signature"]:
                            rep.problems.append(Problem(e["seq"], "signature", (
                                f"recorded {e['signature']}, but the packet's signature is "
                                f"{found}")))
                prev, expected, last = e["entry_hash"], max(expected, e["seq"]) + 1, e
                rep.entries += 1
            after = rows[-1].seq
        head = c.execute(select(EvidenceHead.seq, EvidenceHead.hash)
                         .where(EvidenceHead.id == 1)).first()
        last_seq = last["seq"] if last else expected - 1
        if head is not None and head.seq > last_seq:
            rep.problems.append(Problem(last_seq + 1, "truncated", (
                f"the log ends at entry {last_seq}, its head records entry {head.seq}")))
        elif head is not None and head.hash != prev:
            rep.problems.append(Problem(last_seq, "modified", "the head's hash is not the "
                                        "last entry's"))
        cps = [r._mapping for r in c.execute(select(Checkpoint.__table__)
                                              .order_by(Checkpoint.id))]
        for cp in cps:
            rep.checkpoints += 1
            problem = _check_checkpoint(cp, trust_anchors)
            if problem:
                rep.problems.append(Problem(cp["seq"], "checkpoint", problem))
                continue
            at = c.execute(select(t.c.entry_hash).where(t.c.seq == cp["seq"])).scalar()
            if cp["seq"] <= rep.archived_to:
                at = cp["tip_hash"] if cp["seq"] < rep.archived_to else prev_archive_tip(
                    c, cp["seq"])
            if at is None:
                rep.problems.append(Problem(cp["seq"], "truncated", (
                    f"a checkpoint signed entry {cp['seq']}, which is no longer in the log")))
            elif at != cp["tip_hash"]:
                rep.problems.append(Problem(cp["seq"], "checkpoint", (
                    "the signed tip does not match the chain: entries up to here were "
                    "rewritten")))
            rep.last_checkpoint_seq = max(rep.last_checkpoint_seq, cp["seq"])
            if cp["tsa_token"] is not None:
                if tsa_ca is None:
                    rep.notes.append(f"checkpoint at entry {cp['seq']}: timestamp not checked "
                                     "(no TSA CA given)")
                else:
                    why = verify_token(cp["statement"].encode(), cp["tsa_token"], tsa_ca)
                    if why:
                        rep.problems.append(Problem(cp["seq"], "timestamp", (
                            f"the checkpoint's timestamp token does not verify: {why}")))
            else:
                rep.unstamped += 1
    if rep.unstamped:
        rep.notes.append(f"{rep.unstamped} checkpoints have no timestamp yet (the timestamp "
                         "authority was unreachable or is not configured)")
    uncovered = last_seq - rep.last_checkpoint_seq
    if uncovered > 0:
        rep.notes.append(f"{uncovered} entries after the last checkpoint are chained but not "
                         "yet signed: a truncation there would only show against the head")
    rep.problems.sort(key=lambda p: (p.seq if p.seq is not None else 0))
    return rep


def _check_checkpoint(cp, anchors: list[x509.Certificate]) -> str | None:
    if statement(cp["seq"], cp["tip_hash"], cp["at"]) != cp["statement"]:
        return "forged checkpoint: its statement does not say what its fields say"
    try:
        cert = x509.load_pem_x509_certificate(cp["cert_pem"].encode())
        sig = base64.b64decode(cp["signature"])
        key = cert.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, cp["statement"].encode(), ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(sig, cp["statement"].encode(), padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, InvalidSignature):
        return "forged checkpoint: the signature does not verify"
    try:
        verify_signer(cert, [], anchors, Purpose.CHECKPOINT)
    except UntrustedCertificate as exc:
        return f"forged checkpoint: signed by an untrusted key ({exc})"
    return None


def prev_archive_tip(c, seq: int) -> str | None:
    return c.execute(select(EvidenceArchive.tip_hash).where(EvidenceArchive.seq_to == seq)
                     ).scalar()
