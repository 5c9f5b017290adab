"""Evidence bundles an auditor can check with standard tools only.

The zip holds the chain as one canonical JSON file per entry (so `sha256sum` recomputes
every hash), the packets by their SHA-256, every checkpoint's statement, signature,
certificate and RFC 3161 token, and `verify.sh`. It holds no trust anchor: what to trust
(the CA, the TSA's CA, the adapter's certificate, where the chain starts) comes from the
auditor. `verify_bundle` runs the adapter's own copy of the script, never the bundle's.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from adapter.audit.checkpoint import checkpoint_in, numbers, statement_hash
from adapter.audit.verify_script import VERIFY_SH
from adapter.crypto.keys import SigningIdentity
from adapter.store import evidence
from adapter.store.evidence import GENESIS, canonical

README = """# Gói chứng cứ trao đổi dữ liệu THADS / THADS exchange evidence bundle

## Tiếng Việt
Gói này chứa nhật ký chứng cứ của bộ chuyển đổi: mỗi gói tin đã gửi hoặc nhận (đúng từng
byte), chuỗi băm nối các bản ghi, các điểm kiểm tra (checkpoint) được ký bằng khóa của bộ
chuyển đổi và gắn dấu thời gian RFC 3161, cùng chứng thư số của người ký. Gói không chứa
chứng thư gốc (CA): hãy dùng bản CA do chính quý vị nắm giữ. Đọc verify.sh trước khi chạy,
rồi kiểm tra chỉ với openssl, sha256sum và xmlsec1:

    sh verify.sh --ca CA-cua-ban.pem --tsa-ca CA-TSA.pem --signer chung-thu-bo-chuyen-doi.pem \\
        --after <đỉnh chuỗi in ra khi kiểm tra gói trước; bỏ trống với gói đầu tiên>

Kết quả `INTACT` nghĩa là: chuỗi bắt đầu đúng nơi quý vị chỉ ra, không gói tin nào bị sửa,
không bản ghi nào bị sửa, xóa, chèn hoặc đảo thứ tự tới điểm kiểm tra cuối, và mọi chữ ký,
dấu thời gian đều hợp lệ. Dòng `tip:` là đỉnh chuỗi để kiểm tra gói kế tiếp.

## English
This bundle holds the adapter's evidence log: every packet sent or received (exact bytes),
the hash chain over the entries, checkpoints of the chain signed with the adapter's key and
timestamped (RFC 3161), and the signers' certificates. It holds no trust anchor: use the CA
you hold. Read verify.sh before running it (it is short), then check the bundle with
openssl, sha256sum and xmlsec1 only:

    sh verify.sh --ca YOUR-CA.pem --tsa-ca TSA-CA.pem --signer ADAPTER-CERT.pem \\
        --after <the tip printed for the previous bundle; omit for the first bundle>

`INTACT` means: the chain starts where you said, no packet and no entry was changed,
removed, inserted or reordered up to the last checkpoint, and every signature and timestamp
verifies. The `tip:` line is what to pass as `--after` for the next bundle. Step by step:

1. `sha256sum -c SHA256SUMS`: packet bytes (packets/<sha256>.xml) match the log.
2. For each line `seq hash prev` of entries.tsv: the first `prev` is the tip you were given
   (64 zeros for the first bundle), each next `prev` is the line before's hash, and
   `{ printf '%s\\n' "$prev"; cat chain/<seq>.json; } | sha256sum` gives `hash`.
3. For each checkpoints/<n>/: `openssl verify -CAfile YOUR-CA.pem cert.pem`, and cert.pem
   is the adapter's certificate; `openssl x509 -in cert.pem -pubkey -noout > pub.pem`;
   `openssl dgst -sha256 -verify pub.pem -signature signature.bin statement.txt`; the
   statement's `seq`/`tip` is a line of entries.tsv; its `number` follows the previous
   checkpoint's, its `prev` is the SHA-256 of the previous statement.txt, and its
   `first`/`start` are the previous checkpoint's seq + 1 and tip;
   `openssl ts -verify -data statement.txt -in token.tsr -token_in -CAfile TSA-CA.pem`.
4. For each packet in signed-packets.txt:
   `xmlsec1 --verify --id-attr:Id urn:thads-adapter:exchange:1:<Root>
   --trusted-pem YOUR-CA.pem <file>` (edXML packets: without `--id-attr`).

Entries after the last checkpoint are chained but not yet signed: their truncation would
show only against a later checkpoint.
"""

_SIGNED_ROOTS = re.compile(r"[A-Za-z]{1,40}")


@dataclass
class BundleCounts:
    entries: int = 0
    packets: int = 0
    checkpoints: int = 0
    #: the chain's last entry in the bundle, as `verify.sh --after` takes it
    tip: str = ""
    #: the newest checkpoint in the bundle, as `audit verify --expect-checkpoint` takes it
    latest_checkpoint: str = ""
    #: SHA-256 of every packet written
    digests: tuple[str, ...] = ()


def _private_file(path: Path):
    """Open `path` for writing, readable by its owner only (bundles hold personal data)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def export_bundle(engine: Engine, out: Path, *, to_seq: int | None = None) -> BundleCounts:
    """Write the bundle (entries up to `to_seq`, default all)."""
    counts = BundleCounts()
    with _private_file(out) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z, \
            engine.connect() as c:
        z.writestr("README.md", README)
        z.writestr("verify.sh", VERIFY_SH)
        tsv = io.StringIO()
        entries = evidence.entries(c, upto=to_seq)
        prev, last_seq = (entries[0]["prev_hash"], entries[0]["seq"] - 1) if entries \
            else (GENESIS, 0)
        outcome: dict[str, str] = {}  # packet sha256 -> recorded signature outcome
        received: dict[int, str] = {}
        for e in entries:
            z.writestr(f"chain/{e['seq']}.json", canonical(e))
            tsv.write(f"{e['seq']} {e['entry_hash']} {e['prev_hash']}\n")
            prev, last_seq = e["entry_hash"], e["seq"]
            if e["content_sha256"] and e["event"] == "received":
                received[e["exchange_id"]] = e["content_sha256"]
            sha = e["content_sha256"] or received.get(e["exchange_id"])
            if sha and e["signature"]:
                outcome[sha] = e["signature"]
        counts.entries, counts.tip = len(entries), f"{last_seq}:{prev}"
        shas = {e["content_sha256"] for e in entries if e["content_sha256"]}
        sums, signed, written = io.StringIO(), io.StringIO(), []
        ids = {e["packet_id"] for e in entries if e["content_sha256"]}
        for sha, blob in sorted(evidence.packet_bytes(c, shas, ids).items()):
            written.append(sha)
            z.writestr(f"packets/{sha}.xml", blob)
            sums.write(f"{hashlib.sha256(blob).hexdigest()}  packets/{sha}.xml\n")
            root = _root_of(blob)
            if root and outcome.get(sha) == "valid" and _SIGNED_ROOTS.fullmatch(root):
                signed.write(f"packets/{sha}.xml {root}\n")
        counts.digests, counts.packets = tuple(written), len(written)
        lo = entries[0]["seq"] if entries else 0
        arch = evidence.latest_archive(c) \
            if evidence.has_tables(c, "evidence_archives") else None
        cps = evidence.checkpoints(c)
        nums = numbers([cp["statement"] for cp in cps], arch)
        for cp, number in zip(cps, nums, strict=True):
            if cp["seq"] < lo or (to_seq is not None and cp["seq"] > to_seq):
                continue
            d = f"checkpoints/{cp['id']:06d}"
            z.writestr(f"{d}/statement.txt", cp["statement"])
            z.writestr(f"{d}/signature.bin", base64.b64decode(cp["signature"]))
            z.writestr(f"{d}/cert.pem", cp["cert_pem"])
            if cp["tsa_token"]:
                z.writestr(f"{d}/token.tsr", cp["tsa_token"])
            counts.checkpoints += 1
            counts.latest_checkpoint = f"{number}:{cp['tip_hash']}"
        z.writestr("entries.tsv", tsv.getvalue())
        z.writestr("SHA256SUMS", sums.getvalue())
        z.writestr("signed-packets.txt", signed.getvalue())
        z.writestr("tip.json", json.dumps({"seq": last_seq, "hash": prev}))
    return counts


def _root_of(blob: bytes) -> str | None:
    from lxml import etree

    from adapter.errors import PacketError
    from adapter.xml.safe import parse_untrusted
    try:
        return etree.QName(parse_untrusted(blob)).localname
    except PacketError:
        return None


@dataclass(frozen=True)
class BundleVerdict:
    intact: bool
    #: the script's last line: INTACT, or FAILED: why
    summary: str
    #: SEQ:HASH to pass as `after` for the next bundle ("" unless intact)
    tip: str
    output: str


def verify_bundle(path: Path, *, ca: Path, tsa_ca: Path | None = None,
                  signer: Path | None = None, after: str | None = None) -> BundleVerdict:
    """Check a bundle with the adapter's own verify script and the auditor's anchors.
    Nothing from the bundle is executed; its names are checked before unpacking."""
    with tempfile.TemporaryDirectory(prefix="thads-bundle-") as tmp:
        unpacked = Path(tmp) / "bundle"
        try:
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if not re.fullmatch(r"[A-Za-z0-9._/-]{1,120}", name) or name.startswith(
                            "/") or ".." in Path(name).parts:
                        return BundleVerdict(False, f"FAILED: unsafe name in bundle: {name!r}",
                                             "", "")
                z.extractall(unpacked)
        except (zipfile.BadZipFile, OSError) as exc:
            return BundleVerdict(False, f"FAILED: not a readable bundle: {exc}", "", "")
        script = Path(tmp) / "adapter-verify.sh"
        script.write_text(VERIFY_SH)
        args = ["sh", str(script), "--dir", str(unpacked), "--ca", str(Path(ca).absolute())]
        for flag, file in (("--tsa-ca", tsa_ca), ("--signer", signer)):
            if file:
                args += [flag, str(Path(file).absolute())]
        if after:
            args += ["--after", after]
        r = subprocess.run(args, capture_output=True, text=True, timeout=3600, cwd=tmp)
    out = (r.stdout + r.stderr).strip()
    lines = out.splitlines()
    tip = next((line.split()[1] for line in lines if line.startswith("tip: ")), "")
    intact = r.returncode == 0 and bool(lines) and lines[-1] == "INTACT"
    return BundleVerdict(intact, lines[-1] if lines else "FAILED: no output",
                         tip if intact else "", out)


def archive(engine: Engine, out: Path, identity: SigningIdentity, *,
            before_seq: int) -> dict:
    """Move entries up to the last checkpoint at or before `before_seq` into a bundle, then
    delete them, their checkpoints and the packet bytes only they needed; record the
    archive and sign the record with a new checkpoint, in one transaction. The chain goes
    on from the archived tip, so what remains still verifies."""
    with engine.connect() as c:
        arch = evidence.latest_archive(c)
        cps = evidence.checkpoints(c)
        nums = numbers([cp["statement"] for cp in cps], arch)
        at = [(cp, n) for cp, n in zip(cps, nums, strict=True) if cp["seq"] <= before_seq]
        if not at:
            raise ValueError(f"no checkpoint at or before entry {before_seq}: only signed "
                             "parts of the chain are archived")
        cp, number = at[-1]
        tip = evidence.entry_hash_at(c, cp["seq"])
    if tip is None:
        raise ValueError(f"entry {cp['seq']} is already archived")
    counts = export_bundle(engine, out, to_seq=cp["seq"])
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    with engine.begin() as c:
        freed = evidence.record_archive(
            c, seq_to=cp["seq"], tip_hash=tip, bundle=out.name, bundle_sha256=digest,
            checkpoint_number=number, checkpoint_hash=statement_hash(cp["statement"]),
            bundled=counts.digests)
        evidence.append(c, [evidence.Event("archived", detail=dict(
            bundle=out.name, sha256=digest, seq_to=cp["seq"], packets_freed=freed))])
        checkpoint_in(c, identity, force=True)
    return dict(entries=counts.entries, packets=counts.packets,
                checkpoints=counts.checkpoints, seq_to=cp["seq"], sha256=digest,
                tip=counts.tip, packets_freed=freed)
