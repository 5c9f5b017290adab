"""Evidence bundles an auditor can check with standard tools only.

The zip holds the chain as one canonical JSON file per entry (so `sha256sum` recomputes
every hash), the packets by their SHA-256, every checkpoint's statement, signature,
certificate and RFC 3161 token, the trust anchors, and `verify.sh`: the exact commands of
the README, in order, with openssl, sha256sum and xmlsec1.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import subprocess
import tempfile
import zipfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.engine import Engine

from adapter.audit.checkpoint import Checkpoint
from adapter.store.evidence import GENESIS, EvidenceBlob, EvidenceEntry, canonical

VERIFY_SH = r"""#!/bin/sh
# Checks this evidence bundle with openssl, sha256sum and xmlsec1 only. Exit 0: intact.
set -u
cd "$(dirname "$0")"
fail() { echo "FAILED: $*"; exit 1; }

echo "1. packet bytes match their recorded SHA-256"
if [ -s SHA256SUMS ]; then sha256sum --quiet -c SHA256SUMS || fail "a packet was changed"; fi

echo "2. the hash chain: each entry's hash covers the previous hash and its own content"
prev=0000000000000000000000000000000000000000000000000000000000000000
[ -f chain-start.txt ] && prev=$(cat chain-start.txt)  # continues an earlier archive
while read -r seq hash p; do
  [ "$p" = "$prev" ] || fail "entry $seq does not follow the previous entry"
  h=$( { printf '%s\n' "$prev"; cat "chain/$seq.json"; } | sha256sum | cut -d' ' -f1)
  [ "$h" = "$hash" ] || fail "entry $seq was modified"
  prev=$h
done < entries.tsv

echo "3. checkpoints: signed by a trusted key, timestamped, and matching the chain"
for cp in checkpoints/*/; do
  openssl verify -CAfile certs/ca.pem "$cp/cert.pem" >/dev/null || fail "$cp: untrusted signer"
  openssl x509 -in "$cp/cert.pem" -pubkey -noout > "$cp/pub.pem"
  openssl dgst -sha256 -verify "$cp/pub.pem" -signature "$cp/signature.bin" \
    "$cp/statement.txt" >/dev/null || fail "$cp: signature does not verify"
  seq=$(sed -n 's/^seq=//p' "$cp/statement.txt"); tip=$(sed -n 's/^tip=//p' "$cp/statement.txt")
  grep -q "^$seq $tip " entries.tsv || fail "$cp: the signed tip is not entry $seq of the chain"
  if [ -f "$cp/token.tsr" ]; then
    openssl ts -verify -data "$cp/statement.txt" -in "$cp/token.tsr" -token_in \
      -CAfile certs/ca.pem >/dev/null 2>&1 || fail "$cp: timestamp token does not verify"
  fi
done

echo "4. packet signatures (XML-DSig) with xmlsec1"
while read -r file root; do
  if [ "$root" = "edXML" ]; then
    xmlsec1 --verify --trusted-pem certs/ca.pem "$file" >/dev/null 2>&1 \
      || fail "$file: signature does not verify"
  else
    xmlsec1 --verify --id-attr:Id "urn:thads-adapter:exchange:1:$root" \
      --trusted-pem certs/ca.pem "$file" >/dev/null 2>&1 || fail "$file: signature does not verify"
  fi
done < signed-packets.txt
echo "INTACT"
"""

README = """# Gói chứng cứ trao đổi dữ liệu THADS / THADS exchange evidence bundle

## Tiếng Việt
Gói này chứa nhật ký chứng cứ của bộ chuyển đổi: mỗi gói tin đã gửi hoặc nhận (đúng từng
byte), chuỗi băm nối các bản ghi, các điểm kiểm tra (checkpoint) được ký bằng khóa của bộ
chuyển đổi và gắn dấu thời gian RFC 3161, cùng chứng thư số. Kiểm tra mà không cần phần mềm
của chúng tôi, chỉ với openssl, sha256sum và xmlsec1:

    sh verify.sh

Kết quả `INTACT` nghĩa là: không gói tin nào bị sửa, không bản ghi nào bị sửa, xóa, chèn
hoặc đảo thứ tự tới điểm kiểm tra cuối, và mọi chữ ký, dấu thời gian đều hợp lệ.

## English
This bundle holds the adapter's evidence log: every packet sent or received (exact bytes),
the hash chain over the entries, checkpoints of the chain signed with the adapter's key and
timestamped (RFC 3161), and the certificates. Check it without our code, with openssl,
sha256sum and xmlsec1 only:

    sh verify.sh

`INTACT` means: no packet and no entry was changed, removed, inserted or reordered up to
the last checkpoint, and every signature and timestamp verifies. The commands, step by step:

1. `sha256sum -c SHA256SUMS` — packet bytes (packets/<sha256>.xml) match the log.
2. For each line `seq hash prev` of entries.tsv: `prev` is the previous line's hash, and
   `{ printf '%s\\n' "$prev"; cat chain/<seq>.json; } | sha256sum` gives `hash`.
3. For each checkpoints/<n>/:
   `openssl verify -CAfile certs/ca.pem cert.pem`;
   `openssl x509 -in cert.pem -pubkey -noout > pub.pem`;
   `openssl dgst -sha256 -verify pub.pem -signature signature.bin statement.txt`;
   the statement's `seq`/`tip` is a line of entries.tsv;
   `openssl ts -verify -data statement.txt -in token.tsr -token_in -CAfile certs/ca.pem`.
4. For each packet in signed-packets.txt:
   `xmlsec1 --verify --id-attr:Id urn:thads-adapter:exchange:1:<Root>
   --trusted-pem certs/ca.pem <file>`
   (edXML packets: without `--id-attr`).

Entries after the last checkpoint are chained but not yet signed: their truncation would
show only against a later checkpoint.
"""


def export_bundle(engine: Engine, out: Path, trust_anchor_files: list[Path], *,
                  to_seq: int | None = None) -> dict:
    """Write the bundle (entries up to `to_seq`, default all); returns counts."""
    t = EvidenceEntry.__table__
    upto = (t.c.seq <= to_seq) if to_seq is not None else (t.c.seq > -1)
    counts = {"entries": 0, "packets": 0, "checkpoints": 0}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z, engine.connect() as c:
        z.writestr("README.md", README)
        z.writestr("verify.sh", VERIFY_SH)
        tsv, sums, signed = io.StringIO(), io.StringIO(), io.StringIO()
        prev = GENESIS
        first = c.execute(select(t.c.prev_hash).where(upto).order_by(t.c.seq).limit(1)).scalar()
        if first and first != GENESIS:
            # a later part of the chain, after an earlier archive: the chain starts there
            z.writestr("chain-start.txt", first + "\n")
        for r in c.execute(select(t).where(upto).order_by(t.c.seq)):
            e = dict(r._mapping)
            z.writestr(f"chain/{e['seq']}.json", canonical(e))
            tsv.write(f"{e['seq']} {e['entry_hash']} {e['prev_hash']}\n")
            prev = e["entry_hash"]
            counts["entries"] += 1
        shas = {r[0] for r in c.execute(select(t.c.content_sha256).where(
            t.c.content_sha256.is_not(None), upto).distinct())}
        for sha in sorted(shas):
            blob = c.execute(select(EvidenceBlob.content).where(
                EvidenceBlob.sha256 == sha)).scalar()
            if blob is None:
                continue
            z.writestr(f"packets/{sha}.xml", blob)
            sums.write(f"{hashlib.sha256(blob).hexdigest()}  packets/{sha}.xml\n")
            root = _root_of(blob)
            if root and b"Signature" in blob:
                signed.write(f"packets/{sha}.xml {root}\n")
            counts["packets"] += 1
        lo = c.execute(select(t.c.seq).where(upto).order_by(t.c.seq).limit(1)).scalar() or 0
        cps = select(Checkpoint.__table__).where(Checkpoint.seq >= lo).order_by(Checkpoint.id)
        if to_seq is not None:
            cps = cps.where(Checkpoint.seq <= to_seq)
        for cp in c.execute(cps):
            cp = cp._mapping
            d = f"checkpoints/{cp['id']:06d}"
            z.writestr(f"{d}/statement.txt", cp["statement"])
            z.writestr(f"{d}/signature.bin", base64.b64decode(cp["signature"]))
            z.writestr(f"{d}/cert.pem", cp["cert_pem"])
            if cp["tsa_token"]:
                z.writestr(f"{d}/token.tsr", cp["tsa_token"])
            counts["checkpoints"] += 1
        z.writestr("entries.tsv", tsv.getvalue())
        z.writestr("SHA256SUMS", sums.getvalue())
        z.writestr("signed-packets.txt", signed.getvalue())
        pems = b"".join(x509.load_pem_x509_certificate(p.read_bytes()).public_bytes(
            serialization.Encoding.PEM) for p in trust_anchor_files)
        z.writestr("certs/ca.pem", pems)
        z.writestr("tip.json", json.dumps({"seq": counts["entries"], "hash": prev}))
    return counts


def _root_of(blob: bytes) -> str | None:
    from lxml import etree

    from adapter.errors import UnsafeXmlError
    from adapter.xml.safe import parse_untrusted
    try:
        return etree.QName(parse_untrusted(blob)).localname
    except UnsafeXmlError:
        return None


def verify_bundle(path: Path) -> tuple[bool, str]:
    """Check a bundle with nothing but the bundle: run its own verify.sh."""
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if name.startswith("/") or ".." in Path(name).parts:
                    return False, f"unsafe path in bundle: {name}"
            z.extractall(tmp)
        r = subprocess.run(["sh", str(Path(tmp) / "verify.sh")], capture_output=True,
                           text=True, timeout=3600)
        lines = (r.stdout + r.stderr).strip().splitlines()
        return r.returncode == 0, lines[-1] if lines else "no output"


def archive(engine: Engine, out: Path, trust_anchor_files: list[Path], *,
            before_seq: int) -> dict:
    """Move entries up to the last checkpoint at or before `before_seq` into a bundle, then
    delete them; the chain goes on from the archived tip, so what remains still verifies."""
    from sqlalchemy import delete, func, insert

    from adapter.store.evidence import EvidenceArchive

    with engine.connect() as c:
        seq = c.execute(select(func.max(Checkpoint.seq)).where(
            Checkpoint.seq <= before_seq)).scalar()
        if seq is None:
            raise ValueError(f"no checkpoint at or before entry {before_seq}: only signed "
                             "parts of the chain are archived")
        tip = c.execute(select(EvidenceEntry.entry_hash).where(EvidenceEntry.seq == seq)
                        ).scalar()
    if tip is None:
        raise ValueError(f"entry {seq} is already archived")
    counts = export_bundle(engine, out, trust_anchor_files, to_seq=seq)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    t = EvidenceEntry.__table__
    with engine.begin() as c:
        c.execute(delete(t).where(t.c.seq <= seq))
        live = select(t.c.content_sha256).where(t.c.content_sha256.is_not(None))
        c.execute(delete(EvidenceBlob.__table__).where(EvidenceBlob.sha256.not_in(live)))
        c.execute(insert(EvidenceArchive.__table__).values(
            seq_to=seq, tip_hash=tip, bundle=str(out.name), bundle_sha256=digest,
            at=dt.datetime.now(dt.UTC)))
    return dict(counts, seq_to=seq, sha256=digest)
