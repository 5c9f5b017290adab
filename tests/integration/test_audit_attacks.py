"""Attacks on the evidence log and its bundles (issues 8 and 9): each one must be named.

A small real log (SQLite, real signatures, real openssl and xmlsec1) is built without the
service, so every attack starts from a known, intact state.
"""

import base64
import datetime as dt
import hashlib
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete, func, inspect, select, update

from adapter.audit.bundle import export_bundle, verify_bundle
from adapter.audit.checkpoint import (
    Checkpoint,
    make_checkpoint,
    sign_statement,
    statement,
)
from adapter.audit.verify import Expectations, readonly_engine, verify_log
from adapter.crypto.keys import load_certificates, load_identity
from adapter.dbutil import make_engine
from adapter.store import evidence
from adapter.store.evidence import EvidenceArchive, EvidenceEntry, EvidenceHead
from adapter.store.models import Exchange, Packet, StateBase

GENESIS = "0" * 64


def _store_packet(c, packet_id: str, payload: bytes) -> str:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ex_id = c.execute(Exchange.__table__.insert().values(
        packet_id=packet_id, kind="case", route="cases", direction="out", source_key=packet_id,
        source_version=1, state="delivered", attempts=0, created_at=now, updated_at=now)
    ).inserted_primary_key[0]
    digest = hashlib.sha256(payload).hexdigest()
    c.execute(Packet.__table__.insert().values(exchange_id=ex_id, sha256=digest,
                                               payload=payload))
    return digest


def add_traffic(engine, start: int, n: int = 4) -> None:
    """n packets built (bytes stored once, in `packets`) and their attempts."""
    with engine.begin() as c:
        for i in range(start, start + n):
            pid = f"00000000-0000-0000-0000-{i:012d}"
            payload = f"<Case Id='c{i}'>packet {i}</Case>".encode()
            digest = _store_packet(c, pid, payload)
            evidence.append(c, [
                evidence.Event("built", "out", "P", "case", i, pid, payload,
                               content_sha256=digest),
                evidence.Event("attempt", "out", None, "case", i, pid,
                               detail={"outcome": "delivered"})])


@pytest.fixture
def small_log(db_url, pki):
    """Three rounds of traffic, each closed by a v2 checkpoint (numbers 1, 2, 3), on SQLite
    and on PostgreSQL."""
    engine = make_engine(db_url)
    StateBase.metadata.create_all(engine)
    me = load_identity(pki / "adapter.key", pki / "adapter.crt")
    for r in range(3):
        add_traffic(engine, 1 + 10 * r)
        assert make_checkpoint(engine, me) is not None
    return engine, me


def expect(pki, checkpoint=None, grace=None, tsa_ca=None) -> Expectations:
    return Expectations(tuple(load_certificates(pki / "adapter.crt")), checkpoint, tsa_ca,
                        grace)


def check(engine, pki, **kw):
    rep = verify_log(engine, load_certificates(pki / "ca.crt"), expect(pki, **kw))
    return [(p.what, p.seq) for p in rep.problems], rep


def latest(engine, pki) -> tuple[int, str]:
    rep = check(engine, pki)[1]
    assert rep.intact, rep.problems
    return rep.latest


def test_the_small_log_verifies_and_names_its_newest_checkpoint(small_log, pki):
    engine, _ = small_log
    found, rep = check(engine, pki)
    assert found == [] and rep.checkpoints == 3 and rep.entries == 24
    assert rep.latest[0] == 3 and rep.unstamped == 3  # no TSA in this log
    with engine.connect() as c:  # the packet bytes are kept once: no evidence_blobs copy
        assert not inspect(c).has_table("evidence_blobs")
        assert c.execute(select(func.count()).select_from(Packet)).scalar() == 12


# ---- issue 9 #3: deletion is detectable --------------------------------------------------

def test_deleting_every_checkpoint_is_named_against_the_auditors_last_checkpoint(
        small_log, pki):
    engine, _ = small_log
    seen = latest(engine, pki)
    with engine.begin() as c:
        c.execute(delete(Checkpoint.__table__))
        # with no signature left, the insider rewrites an entry and the chain after it
        t = EvidenceEntry.__table__
        c.execute(update(t).where(t.c.seq == 2).values(detail='{"outcome":"rejected"}'))
        prev = c.execute(select(t.c.prev_hash).where(t.c.seq == 2)).scalar()
        for r in c.execute(select(t).where(t.c.seq >= 2).order_by(t.c.seq)).all():
            h = evidence.entry_hash(prev, dict(r._mapping))
            c.execute(update(t).where(t.c.seq == r.seq).values(prev_hash=prev, entry_hash=h))
            prev = h
        c.execute(update(EvidenceHead).values(hash=prev))
    found, rep = check(engine, pki, checkpoint=seen)
    assert ("truncated", None) in found
    assert "history is shorter than the auditor last saw" in " ".join(map(str, rep.problems))


def test_deleting_the_oldest_checkpoints_breaks_the_chain_of_checkpoints(small_log, pki):
    engine, _ = small_log
    with engine.begin() as c:
        first = c.execute(select(func.min(Checkpoint.id))).scalar()
        c.execute(delete(Checkpoint.__table__).where(Checkpoint.id == first))
    found, rep = check(engine, pki)
    assert found and found[0][0] == "checkpoint"
    assert "chain of checkpoints is broken" in str(rep.problems[0])


def test_deleting_the_newest_checkpoint_with_its_entries_is_named(small_log, pki):
    engine, _ = small_log
    seen = latest(engine, pki)
    with engine.begin() as c:
        cp = c.execute(select(Checkpoint.__table__).order_by(Checkpoint.id.desc())).first()
        before = c.execute(select(Checkpoint.seq, Checkpoint.tip_hash)
                           .order_by(Checkpoint.id.desc()).offset(1)).first()
        c.execute(delete(Checkpoint.__table__).where(Checkpoint.id == cp.id))
        c.execute(delete(EvidenceEntry.__table__).where(EvidenceEntry.seq > before.seq))
        c.execute(update(EvidenceHead).values(seq=before.seq, hash=before.tip_hash))
    assert check(engine, pki)[0] == []  # the database alone cannot tell...
    found, rep = check(engine, pki, checkpoint=seen)  # ...the auditor's last checkpoint can
    assert found == [("truncated", None)]
    assert "newest checkpoint is number 2, checkpoint 3 was seen before" in str(rep.problems[0])


def test_a_rewritten_checkpoint_the_auditor_saw_is_named(small_log, pki):
    engine, _ = small_log
    number, _ = latest(engine, pki)
    found, rep = check(engine, pki, checkpoint=(number, "ab" * 32))
    assert found == [("checkpoint", None)] and "rewritten" in str(rep.problems[0])


def test_a_fabricated_archive_record_erases_nothing(small_log, pki):
    engine, _ = small_log
    with engine.begin() as c:  # "entries 1..8 were archived": delete them and say so
        tip = evidence.entry_hash_at(c, 8)
        c.execute(delete(EvidenceEntry.__table__).where(EvidenceEntry.seq <= 8))
        c.execute(delete(Checkpoint.__table__).where(Checkpoint.seq <= 8))
        c.execute(EvidenceArchive.__table__.insert().values(
            seq_to=8, tip_hash=tip, bundle="made-up.zip", bundle_sha256="cd" * 32,
            at=dt.datetime.now(dt.UTC).replace(tzinfo=None)))
    found, rep = check(engine, pki)
    assert ("archive", 8) in found
    assert "not the one the newest checkpoint signs" in " ".join(map(str, rep.problems))


def test_a_deleted_archive_record_is_named(small_log, pki, tmp_path):
    from adapter.audit.bundle import archive
    engine, me = small_log
    archive(engine, tmp_path / "a.zip", me, before_seq=8)
    assert check(engine, pki)[0] == []
    with engine.begin() as c:
        c.execute(delete(EvidenceArchive.__table__))
    assert ("archive", None) in check(engine, pki)[0]


def test_a_checkpoint_signed_by_a_peer_under_the_same_anchor_is_forged(small_log, pki):
    engine, _ = small_log
    peer = load_identity(pki / "court.key", pki / "court.crt")  # same CA as the adapter
    with engine.begin() as c:
        cp = c.execute(select(Checkpoint.__table__).order_by(Checkpoint.id.desc())
                       ).first()._mapping
        c.execute(update(Checkpoint).where(Checkpoint.id == cp["id"]).values(
            signature=sign_statement(peer, cp["statement"]),
            cert_pem=peer.cert.public_bytes(serialization.Encoding.PEM).decode()))
    found, rep = check(engine, pki)
    assert found == [("checkpoint", cp["seq"])]
    assert "not by the adapter's own checkpoint certificate" in str(rep.problems[0])


def test_unstamped_checkpoints_are_a_problem_only_when_stamping_is_configured(small_log, pki):
    engine, _ = small_log
    found, rep = check(engine, pki)  # stamping not configured: a note only
    assert found == [] and rep.unstamped == 3
    assert any("no timestamp yet" in n for n in rep.notes)
    found, rep = check(engine, pki, grace=3600)  # configured, but all are recent: a note
    assert found == []
    found, rep = check(engine, pki, grace=0)  # configured, and older than the grace
    assert [w for w, _ in found] == ["timestamp"] * 3
    assert "no timestamp token, though stamping is configured" in str(rep.problems[0])


# ---- upgrade: v1 checkpoints of the previous release ----------------------------------

def _v1_checkpoint(engine, me) -> None:
    """A checkpoint exactly as the previous release wrote it (tip only)."""
    with engine.begin() as c:
        seq, tip = evidence.head(c)
        at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        text = statement(seq, tip, at)
        c.execute(Checkpoint.__table__.insert().values(
            seq=seq, tip_hash=tip, at=at, statement=text, signature=sign_statement(me, text),
            cert_pem=me.cert.public_bytes(serialization.Encoding.PEM).decode()))


def test_v1_checkpoints_before_the_upgrade_verify_with_a_note(tmp_path, pki):
    engine = make_engine(f"sqlite:///{tmp_path}/state.db")
    StateBase.metadata.create_all(engine)
    me = load_identity(pki / "adapter.key", pki / "adapter.crt")
    for r in range(2):
        add_traffic(engine, 1 + 10 * r)
        _v1_checkpoint(engine, me)
    add_traffic(engine, 31)
    make_checkpoint(engine, me)  # the upgraded adapter continues the chain
    found, rep = check(engine, pki)
    assert found == [] and rep.latest[0] == 3
    assert any("2 checkpoints are v1" in n for n in rep.notes)
    out = tmp_path / "b.zip"
    export_bundle(engine, out)
    assert verify_bundle(out, ca=pki / "ca.crt", signer=pki / "adapter.crt").intact
    with engine.begin() as c:  # deleting a v1 checkpoint still shows
        c.execute(delete(Checkpoint.__table__).where(Checkpoint.id == 1))
    assert ("checkpoint", 24) in check(engine, pki)[0]


def test_a_v1_checkpoint_after_v2_ones_is_forged(small_log, pki):
    engine, me = small_log
    add_traffic(engine, 91)
    _v1_checkpoint(engine, me)
    found, rep = check(engine, pki)
    assert found == [("checkpoint", 32)]
    assert "v1 statement after v2 ones" in str(rep.problems[0])


# ---- issue 8: verify is read-only -------------------------------------------------------

def test_verify_opens_the_database_read_only_and_creates_nothing(small_log, pki, tmp_path):
    engine, _ = small_log
    with engine.begin() as c:  # a database from before checkpoints and archives existed
        c.exec_driver_sql("DROP TABLE evidence_archives")
    engine.dispose()
    url, before = engine.url.render_as_string(hide_password=False), None
    if engine.dialect.name == "sqlite":  # a read-only copy of the file
        copy = tmp_path / "copy.db"
        shutil.copy(engine.url.database, copy)
        os.chmod(copy, 0o444)
        url, before = f"sqlite:///{copy}", copy.read_bytes()
    ro = readonly_engine(url)
    found, rep = check(ro, pki)
    assert found == [] and rep.entries == 24
    with ro.connect() as c:
        assert not inspect(c).has_table("evidence_archives")
        with pytest.raises(Exception, match="(?i)read-?only"):
            c.exec_driver_sql("CREATE TABLE x (a INTEGER)")
    ro.dispose()
    if before is not None:
        assert copy.read_bytes() == before


def test_verify_of_an_empty_database_creates_nothing(tmp_path, pki):
    path = tmp_path / "empty.db"
    make_engine(f"sqlite:///{path}").connect().close()
    ro = readonly_engine(f"sqlite:///{path}")
    found, rep = check(ro, pki)
    assert found == [] and "no evidence log yet" in rep.notes[0]
    with ro.connect() as c:
        assert inspect(c).get_table_names() == []


# ---- archive: packet storage really freed ------------------------------------------------

def test_archive_frees_packet_bytes_and_signs_its_record(small_log, pki, tmp_path):
    from adapter.audit.bundle import archive
    engine, me = small_log
    with engine.begin() as c:  # one exchange still being retried: its bytes stay
        c.execute(update(Exchange).where(Exchange.id == 2).values(state="retry_wait"))
    r = archive(engine, tmp_path / "part1.zip", me, before_seq=16)
    assert r["seq_to"] == 16 and r["packets_freed"] == 7
    with engine.connect() as c:
        empty = c.execute(select(Exchange.packet_id).join(
            Packet, Packet.exchange_id == Exchange.id).where(func.length(Packet.payload) == 0)
                          ).scalars().all()
        assert len(empty) == 7 and "00000000-0000-0000-0000-000000000002" not in empty
        last = c.execute(select(Checkpoint.statement).order_by(Checkpoint.id.desc())
                         ).scalar()
    assert "archive=16 " in last  # the new checkpoint signs the archive record
    found, rep = check(engine, pki)
    assert found == [] and rep.archived_to == 16
    assert os.stat(tmp_path / "part1.zip").st_mode & 0o077 == 0


# ---- bundles: the auditor's anchors, the auditor's chain start, never the bundle's code ----

def _rezip(src: Path, dst: Path, change) -> None:
    """Copy a bundle, letting `change(name, data)` return new data or None to drop it."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for name in a.namelist():
            data = change(name, a.read(name))
            if data is not None:
                b.writestr(name, data)


def _cut_head(name: str, data: bytes, k: int, start: str):
    if name.startswith("chain/") and int(name[6:-5]) <= k:
        return None
    if name == "entries.tsv":
        return b"".join(line + b"\n" for line in data.splitlines()
                        if int(line.split()[0]) > k)
    if name.startswith("checkpoints/000001/"):  # the checkpoint that covered them
        return None
    return data


@pytest.fixture
def bundle(small_log, tmp_path):
    engine, _ = small_log
    out = tmp_path / "evidence.zip"
    export_bundle(engine, out)
    return out


def test_a_bundle_with_its_head_cut_and_a_forged_chain_start_fails(bundle, pki, tmp_path):
    with zipfile.ZipFile(bundle) as z:
        rows = z.read("entries.tsv").decode().splitlines()
    start = rows[8].split()[2]  # the hash entry 9 follows
    cut = tmp_path / "cut.zip"
    _rezip(bundle, cut, lambda n, d: _cut_head(n, d, 8, start))
    with zipfile.ZipFile(cut, "a") as z:
        z.writestr("chain-start.txt", start + "\n")  # what the old verify.sh believed
    v = verify_bundle(cut, ca=pki / "ca.crt", signer=pki / "adapter.crt")
    assert not v.intact and v.summary.startswith("FAILED: entry 1 is missing")
    d = tmp_path / "cut"
    zipfile.ZipFile(cut).extractall(d)
    r = subprocess.run(["sh", str(d / "verify.sh"), "--ca", str(pki / "ca.crt")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "FAILED: entry 1 is missing" in r.stdout
    # keeping the checkpoint that covered the cut entries does not help either
    kept = tmp_path / "kept.zip"
    _rezip(bundle, kept, lambda n, d: d if n.startswith("checkpoints/000001/")
           else _cut_head(n, d, 8, start))
    v = verify_bundle(kept, ca=pki / "ca.crt", after=f"8:{start}")
    assert not v.intact and "the signed tip is not entry 8" in v.summary
    intact = verify_bundle(bundle, ca=pki / "ca.crt", signer=pki / "adapter.crt")
    assert intact.intact and intact.tip.startswith("24:")


def test_verify_bundle_never_runs_the_bundles_own_script(bundle, pki, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    evil = f"#!/bin/sh\ntouch {marker}\necho INTACT\nexit 0\n".encode()

    def change(name, data):
        if name == "verify.sh":
            return evil
        if name == "chain/3.json":
            return data.replace(b'"event":"', b'"event":"x', 1)
        return data
    tampered = tmp_path / "evil.zip"
    _rezip(bundle, tampered, change)
    from adapter.cli.main import main
    assert main(["audit", "verify-bundle", str(tampered), "--ca", str(pki / "ca.crt")]) == 1
    assert not marker.exists()
    v = verify_bundle(tampered, ca=pki / "ca.crt")
    assert v.summary == "FAILED: entry 3 was modified" and not marker.exists()
    monkeypatch.chdir(pki)  # the auditor's files, named relative to where the auditor is
    assert main(["audit", "verify-bundle", str(bundle), "--ca", "ca.crt", "--signer",
                 "adapter.crt"]) == 0


def test_a_bundle_forged_under_a_new_ca_without_tokens_fails(bundle, pki, tmp_path):
    """The forger rewrites an entry, recomputes the chain, signs a new checkpoint with a
    key of their own CA and ships that CA in the bundle, as the old verify.sh trusted."""
    rogue = load_identity(pki / "untrusted" / "signer.key", pki / "untrusted" / "signer.crt")
    with zipfile.ZipFile(bundle) as z:
        files = {n: z.read(n) for n in z.namelist()}
    files["chain/3.json"] = files["chain/3.json"].replace(b'"event":"', b'"event":"x', 1)
    prev, rows = GENESIS, []
    for line in files["entries.tsv"].decode().splitlines():
        seq = line.split()[0]
        h = hashlib.sha256(prev.encode() + b"\n" + files[f"chain/{seq}.json"]).hexdigest()
        rows.append(f"{seq} {h} {prev}")
        prev = h
    files["entries.tsv"] = ("\n".join(rows) + "\n").encode()
    files = {n: d for n, d in files.items() if not n.startswith("checkpoints/")}
    text = (f"thads-adapter evidence checkpoint v2\nnumber=1\nseq={seq}\ntip={prev}\nfirst=1\n"
            f"start={GENESIS}\nprev={GENESIS}\narchive=none\nat=2026-01-01T00:00:00+00:00\n")
    files["checkpoints/000001/statement.txt"] = text.encode()
    files["checkpoints/000001/signature.bin"] = base64.b64decode(sign_statement(rogue, text))
    files["checkpoints/000001/cert.pem"] = (pki / "untrusted" / "signer.crt").read_bytes()
    files["certs/ca.pem"] = (pki / "untrusted" / "ca.crt").read_bytes()
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
    # trusting the bundle's own CA, it would pass: the forgery is otherwise complete
    assert verify_bundle(forged, ca=_unpacked(forged, tmp_path) / "certs" / "ca.pem").intact
    v = verify_bundle(forged, ca=pki / "ca.crt")
    assert not v.intact and "signer not under your CA" in v.summary
    # a missing token where stamping is expected fails too, with the genuine signer
    stripped = tmp_path / "stripped.zip"
    _rezip(bundle, stripped, lambda n, d: None if n.endswith("token.tsr") else d)
    assert verify_bundle(stripped, ca=pki / "ca.crt").intact  # no stamping expected
    v = verify_bundle(stripped, ca=pki / "ca.crt", tsa_ca=pki / "ca.crt")
    assert not v.intact and "no timestamp token" in v.summary


def _unpacked(bundle: Path, tmp_path: Path) -> Path:
    d = tmp_path / f"{bundle.stem}-unpacked"
    zipfile.ZipFile(bundle).extractall(d)
    return d


def test_a_peer_signed_checkpoint_in_a_bundle_fails_against_the_adapters_cert(
        bundle, pki, tmp_path):
    peer = load_identity(pki / "court.key", pki / "court.crt")

    def change(name, data):
        if name == "checkpoints/000003/signature.bin":
            with zipfile.ZipFile(bundle) as z:
                text = z.read("checkpoints/000003/statement.txt").decode()
            return base64.b64decode(sign_statement(peer, text))
        if name == "checkpoints/000003/cert.pem":
            return (pki / "court.crt").read_bytes()
        return data
    resigned = tmp_path / "peer.zip"
    _rezip(bundle, resigned, change)
    v = verify_bundle(resigned, ca=pki / "ca.crt", signer=pki / "adapter.crt")
    assert not v.intact and "not signed by the adapter's certificate" in v.summary


# ---- the simulator's timestamp authority ------------------------------------------------

def test_the_test_tsa_leaves_no_directory_behind(pki, tmp_path, monkeypatch):
    import tempfile

    from adapter.sim.tsa import TimestampAuthority
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "data").write_bytes(b"statement")
    subprocess.run(["openssl", "ts", "-query", "-data", str(tmp_path / "data"), "-sha256",
                    "-cert", "-out", str(tmp_path / "q.tsq")], check=True)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    tsa = TimestampAuthority(pki / "tsa.crt", pki / "tsa.key")
    replies = [tsa.reply((tmp_path / "q.tsq").read_bytes()) for _ in range(2)]
    assert all(len(r) > 500 for r in replies) and replies[0] != replies[1]
    assert list(scratch.iterdir()) == []


def test_a_packet_removed_from_a_bundle_with_its_checksum_fails(bundle, pki, tmp_path):
    with zipfile.ZipFile(bundle) as z:
        sums = z.read("SHA256SUMS").decode().splitlines()
    gone = sums[0].split()[1]

    def change(name, data):
        if name == gone:
            return None
        if name == "SHA256SUMS":
            return ("\n".join(sums[1:]) + "\n").encode()
        return data
    thinner = tmp_path / "thinner.zip"
    _rezip(bundle, thinner, change)
    v = verify_bundle(thinner, ca=pki / "ca.crt")
    assert not v.intact and "named by the chain is not in the bundle" in v.summary


def test_a_bundle_with_an_escaping_name_is_refused_before_unpacking(bundle, pki, tmp_path):
    evil = tmp_path / "escape.zip"
    _rezip(bundle, evil, lambda n, d: d)
    with zipfile.ZipFile(evil, "a") as z:
        z.writestr("../../outside.txt", b"x")
    v = verify_bundle(evil, ca=pki / "ca.crt")
    assert not v.intact and "unsafe name in bundle" in v.summary
    assert not (tmp_path.parent / "outside.txt").exists()
