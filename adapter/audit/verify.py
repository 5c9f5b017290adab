"""Verify the evidence log: the chain, the packet bytes, the head, and the checkpoints.

It reads the state database only, through a read-only connection (a copy will do), and
reports every problem, first one first, naming the entry and what is wrong: modified,
deleted, inserted, reordered, truncated, packet bytes changed, forged checkpoint. What the
database alone cannot prove (that nothing newer than its newest checkpoint was removed) it
proves against the checkpoint the auditor saw last (`expect`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine, make_url

from adapter.audit.checkpoint import Statement, archive_line, statement_hash
from adapter.audit.timestamp import verify_token
from adapter.crypto.trust import Purpose, UntrustedCertificate, verify_signer
from adapter.store import evidence
from adapter.store.evidence import GENESIS, entry_hash


def readonly_engine(url: str) -> Engine:
    """The state database opened so that nothing can be written, tables included: SQLite
    through a `mode=ro` URI, PostgreSQL in read-only transactions."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        path = Path(u.database or "").resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no state database at {path}")
        return create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    if u.get_driver_name() in ("", "psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    return create_engine(u, connect_args={"options": "-c default_transaction_read_only=on"})


@dataclass(frozen=True)
class Problem:
    seq: int | None
    #: modified | deleted | inserted | reordered | truncated | bytes | checkpoint |
    #: timestamp | signature | archive
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
    #: (number, tip) of the newest checkpoint: what the auditor keeps for the next run
    latest: tuple[int, str] | None = None
    unstamped: int = 0
    archived_to: int = 0
    #: packet signatures verified again and found as recorded (or reported)
    signatures: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Expectations:
    """What the auditor brings from outside the database."""

    #: the adapter's own checkpoint certificates (the configured signing certificate, and
    #: earlier ones after a rotation): a checkpoint signed by anyone else is forged.
    signers: tuple[x509.Certificate, ...]
    #: the newest checkpoint the auditor saw before: (number, tip)
    checkpoint: tuple[int, str] | None = None
    #: CA file for RFC 3161 tokens
    tsa_ca: Path | None = None
    #: stamping configured: a checkpoint older than this many seconds needs a token
    stamping_grace: float | None = None


def parse_expected(text: str) -> tuple[int, str]:
    """`COUNT:TIP`, as `audit verify` prints it."""
    number, _, tip = text.partition(":")
    if not number.isdigit() or len(tip) != 64 or any(c not in "0123456789abcdef" for c in tip):
        raise ValueError(f"expected checkpoint {text!r} is not COUNT:TIP (a number, a colon "
                         "and 64 hex digits)")
    return int(number), tip


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


def verify_log(engine: Engine, trust_anchors: list[x509.Certificate], expect: Expectations,
               *, batch: int = 5000) -> Report:
    rep = Report()
    with engine.connect() as c:
        if not evidence.has_tables(c, "evidence", "evidence_head"):
            rep.notes.append("the state database has no evidence log yet")
            return rep
        arch_rows = evidence.archives(c) if evidence.has_tables(c, "evidence_archives") else []
        arch = arch_rows[-1] if arch_rows else None
        last_seq, _ = _walk_chain(c, rep, trust_anchors, arch, batch)
        cps = evidence.checkpoints(c) if evidence.has_tables(c, "checkpoints") else []
        _check_checkpoints(c, rep, cps, arch, expect, trust_anchors)
    if rep.unstamped:
        rep.notes.append(f"{rep.unstamped} checkpoints have no timestamp yet (the timestamp "
                         "authority was unreachable or is not configured)")
    uncovered = last_seq - rep.last_checkpoint_seq
    if uncovered > 0:
        rep.notes.append(f"{uncovered} entries after the last checkpoint are chained but not "
                         "yet signed: a truncation there would only show against the head")
    rep.problems.sort(key=lambda p: (p.seq if p.seq is not None else 0))
    return rep


def _walk_chain(c: Connection, rep: Report, anchors: list[x509.Certificate],
                arch: dict | None, batch: int) -> tuple[int, str]:
    """Recompute the chain from genesis or the last archive; returns (last seq, tip)."""
    from adapter.crypto.verify import PacketVerifier

    verifier = PacketVerifier(anchors)
    received: dict[int, str] = {}  # exchange id -> sha256 of the packet as received
    received_id: dict[int, str] = {}  # exchange id -> its packet id (how bytes are found)
    prev, expected, last = GENESIS, 1, None
    if arch is not None:  # the chain goes on from the archived tip
        prev, expected = arch["tip_hash"], arch["seq_to"] + 1
        rep.archived_to = arch["seq_to"]
        rep.notes.append(f"entries 1..{arch['seq_to']} are archived in {arch['bundle']} "
                         f"(sha256 {arch['bundle_sha256'][:16]}…); check it with "
                         "audit verify-bundle")
    after = expected - 1
    h = evidence.head(c)
    head_seq = h[0] if h is not None else 10**18
    while rows := evidence.entries(c, after=after, limit=batch):
        blobs = evidence.packet_bytes(c, {r["content_sha256"] for r in rows
                                          if r["content_sha256"]}
                                      | {received[r["exchange_id"]] for r in rows
                                         if r["signature"] and r["exchange_id"] in received},
                                      {r["packet_id"] for r in rows} | {
                                          received_id[r["exchange_id"]] for r in rows
                                          if r["signature"] and r["exchange_id"] in received})
        for e in rows:
            if e["seq"] > head_seq:
                rep.problems.append(Problem(e["seq"], "inserted", (
                    f"it lies after the head (entry {head_seq}): added outside the adapter")))
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
                other = evidence.seq_with_hash(c, e["prev_hash"])
                rep.problems.append(Problem(e["seq"], "reordered", (
                    f"it follows entry {other} in the chain, not entry {e['seq'] - 1}"))
                    if other is not None else Problem(e["seq"], "inserted", (
                        "it does not follow any entry of the chain (it was inserted, or "
                        "the entry before it was deleted)")))
            if e["event"] == "received" and e["content_sha256"]:
                received[e["exchange_id"]] = e["content_sha256"]
                received_id[e["exchange_id"]] = e["packet_id"]
            _check_bytes(e, rep, verifier, blobs, received)
            prev, expected, last = e["entry_hash"], max(expected, e["seq"]) + 1, e
            rep.entries += 1
        after = rows[-1]["seq"]
    last_seq = last["seq"] if last else expected - 1
    if h is not None and h[0] > last_seq:
        rep.problems.append(Problem(last_seq + 1, "truncated", (
            f"the log ends at entry {last_seq}, its head records entry {h[0]}")))
    elif h is not None and h[1] != prev:
        rep.problems.append(Problem(last_seq, "modified",
                                    "the head's hash is not the last entry's"))
    return last_seq, prev


def _check_bytes(e: dict, rep: Report, verifier, blobs: dict[str, bytes],
                 received: dict[int, str]) -> None:
    sha = e["content_sha256"] or (received.get(e["exchange_id"]) if e["signature"] else None)
    blob = blobs.get(sha) if sha else None
    if e["content_sha256"]:
        if blob is None:
            rep.problems.append(Problem(e["seq"], "bytes", (
                "packet bytes missing from the packets table (an entry still in the log "
                "needs them: they are freed only when archived)")))
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
                    f"recorded {e['signature']}, but the packet's signature is {found}")))


def _check_checkpoints(c: Connection, rep: Report, cps: list[dict], arch: dict | None,
                       expect: Expectations, anchors: list[x509.Certificate]) -> None:
    """Each checkpoint: its signature by one of our own certificates, its place in the
    chain of checkpoints, its tip against the entries, its archive record, its token."""
    v1_legacy = arch is not None and arch["checkpoint_number"] is None
    number = arch["checkpoint_number"] if arch and not v1_legacy else 0
    prev_hash = arch["checkpoint_hash"] if arch and not v1_legacy else GENESIS
    prev_seq, prev_tip = (arch["seq_to"], arch["tip_hash"]) if arch and not v1_legacy \
        else (0, GENESIS)
    seen_v2, v1_count = False, 0
    by_number: dict[int, str] = {}
    now = dt.datetime.now(dt.UTC)
    for cp in cps:
        rep.checkpoints += 1
        number += 1
        why = _check_signature(cp, expect.signers, anchors)
        try:
            st = Statement.parse(cp["statement"])
        except ValueError as exc:
            why = why or f"forged checkpoint: unreadable statement ({exc})"
            st = None
        if st is not None and (st.seq, st.tip, st.at) != (cp["seq"], cp["tip_hash"], cp["at"]):
            why = why or "forged checkpoint: its statement does not say what its fields say"
        if why is not None or st is None:
            rep.problems.append(Problem(cp["seq"], "checkpoint", why or ""))
            continue
        if st.version == 1:
            v1_count += 1
            if seen_v2:
                rep.problems.append(Problem(cp["seq"], "checkpoint", (
                    "forged checkpoint: a v1 statement after v2 ones (only checkpoints made "
                    "before the upgrade may be v1)")))
        else:
            seen_v2 = True
            _check_link(rep, cp, st, number, prev_hash, prev_seq, prev_tip, arch)
            number = st.number
        by_number[number] = cp["tip_hash"]
        prev_hash, prev_seq, prev_tip = statement_hash(cp["statement"]), st.seq, st.tip
        _check_tip(c, rep, cp)
        rep.last_checkpoint_seq = max(rep.last_checkpoint_seq, cp["seq"])
        rep.latest = (number, cp["tip_hash"])
        _check_token(rep, cp, expect, now)
    if v1_count:
        rep.notes.append(f"{v1_count} checkpoints are v1 (made before the upgrade): they "
                         "sign the tip only, not their place in the chain of checkpoints")
    if arch is not None and not v1_legacy and (not cps or not seen_v2):
        rep.problems.append(Problem(arch["seq_to"], "archive", (
            "no checkpoint signs the archive record: it was fabricated, or the checkpoints "
            "after it were deleted")))
    if arch is not None and seen_v2 and Statement.parse(cps[-1]["statement"]).archive != \
            archive_line(arch):
        rep.problems.append(Problem(arch["seq_to"], "archive", (
            "the archive record is not the one the newest checkpoint signs: it was "
            "fabricated or altered (a fabricated record would erase the entries before it)")))
    if arch is None and seen_v2 and Statement.parse(cps[-1]["statement"]).archive != "none":
        rep.problems.append(Problem(None, "archive", (
            "the newest checkpoint signs an archive record that is no longer in the "
            "database (evidence_archives was emptied)")))
    if expect.checkpoint is not None:
        _check_expected(rep, expect.checkpoint, by_number, arch)


def _check_link(rep: Report, cp: dict, st: Statement, number: int, prev_hash: str,
                prev_seq: int, prev_tip: str, arch: dict | None) -> None:
    if st.number != number or st.prev != prev_hash:
        before = f"checkpoint {number - 1}" if number > 1 else "the start of the log"
        rep.problems.append(Problem(cp["seq"], "checkpoint", (
            f"the chain of checkpoints is broken: checkpoint {st.number} does not follow "
            f"{before}, the one before it in the database (checkpoints were deleted or "
            "replaced)")))
    elif (st.first, st.start) != (prev_seq + 1, prev_tip):
        rep.problems.append(Problem(cp["seq"], "checkpoint", (
            f"checkpoint {st.number} signs a range starting at entry {st.first}, not right "
            f"after the previous checkpoint (entry {prev_seq})")))


def _check_tip(c: Connection, rep: Report, cp: dict) -> None:
    at = evidence.entry_hash_at(c, cp["seq"])
    if cp["seq"] <= rep.archived_to:  # legacy archives kept their checkpoints
        return
    if at is None:
        rep.problems.append(Problem(cp["seq"], "truncated", (
            f"a checkpoint signed entry {cp['seq']}, which is no longer in the log")))
    elif at != cp["tip_hash"]:
        rep.problems.append(Problem(cp["seq"], "checkpoint", (
            "the signed tip does not match the chain: entries up to here were rewritten")))


def _check_token(rep: Report, cp: dict, expect: Expectations, now: dt.datetime) -> None:
    if cp["tsa_token"] is None:
        rep.unstamped += 1
        made = dt.datetime.fromisoformat(cp["at"])
        if expect.stamping_grace is not None and \
                (now - made).total_seconds() > expect.stamping_grace:
            rep.problems.append(Problem(cp["seq"], "timestamp", (
                f"no timestamp token, though stamping is configured and the checkpoint is "
                f"older than {expect.stamping_grace:.0f} s (the token was removed, or the "
                "timestamp authority was unreachable that long)")))
        return
    if expect.tsa_ca is None:
        rep.notes.append(f"checkpoint at entry {cp['seq']}: timestamp not checked "
                         "(no TSA CA given)")
        return
    why = verify_token(cp["statement"].encode(), cp["tsa_token"], expect.tsa_ca)
    if why:
        rep.problems.append(Problem(cp["seq"], "timestamp", (
            f"the checkpoint's timestamp token does not verify: {why}")))


def _check_expected(rep: Report, want: tuple[int, str], by_number: dict[int, str],
                    arch: dict | None) -> None:
    number, tip = want
    newest = rep.latest[0] if rep.latest else (arch or {}).get("checkpoint_number") or 0
    if number > newest:
        rep.problems.append(Problem(None, "truncated", (
            f"history is shorter than the auditor last saw: the newest checkpoint is number "
            f"{newest}, checkpoint {number} was seen before (checkpoints and the entries they "
            "signed were deleted)")))
    elif number in by_number:
        if by_number[number] != tip:
            rep.problems.append(Problem(None, "checkpoint", (
                f"checkpoint {number} no longer signs the tip the auditor saw: history was "
                "rewritten")))
    elif arch is not None and arch["checkpoint_number"] == number:
        if arch["tip_hash"] != tip:
            rep.problems.append(Problem(None, "archive", (
                f"checkpoint {number} (archived) does not sign the tip the auditor saw")))
    else:
        rep.notes.append(f"checkpoint {number} is archived: check it in the archive bundle")


def pinned(cert: x509.Certificate, signers: tuple[x509.Certificate, ...]) -> bool:
    der = cert.public_bytes(serialization.Encoding.DER)
    return any(s.public_bytes(serialization.Encoding.DER) == der for s in signers)


def _check_signature(cp: dict, signers: tuple[x509.Certificate, ...],
                     anchors: list[x509.Certificate]) -> str | None:
    """None when the statement is signed by one of the adapter's own certificates, and that
    certificate was fit to sign checkpoints (chain and key usage) when the checkpoint was
    made: the pin alone would accept a configured certificate of the wrong purpose."""
    try:
        cert = x509.load_pem_x509_certificate(cp["cert_pem"].encode())
        sig = base64.b64decode(cp["signature"])
        key = cert.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, cp["statement"].encode(), ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, cp["statement"].encode(), padding.PKCS1v15(), hashes.SHA256())
        else:  # what checkpoint.sign_statement never makes
            raise TypeError(f"a {type(key).__name__} cannot sign checkpoints")
    except (ValueError, TypeError, InvalidSignature):
        return "forged checkpoint: the signature does not verify"
    if not pinned(cert, signers):
        return (f"forged checkpoint: signed by {cert.subject.rfc4514_string()}, not by the "
                "adapter's own checkpoint certificate (an untrusted key)")
    try:
        made = dt.datetime.fromisoformat(cp["at"])
        verify_signer(cert, [], anchors, Purpose.CHECKPOINT,
                      at=made if made.tzinfo else made.replace(tzinfo=dt.UTC))
    except (UntrustedCertificate, ValueError) as exc:
        return f"the checkpoint's signer may not sign checkpoints at {cp['at']} ({exc})"
    return None
