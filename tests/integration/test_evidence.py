"""The evidence log: tamper with it every way an insider could, and the verifier names it."""

import datetime as dt

import pytest
from sqlalchemy import delete, func, select, update

from adapter.audit.checkpoint import Checkpoint, make_checkpoint, sign_statement, statement
from adapter.audit.verify import Expectations
from adapter.audit.verify import verify_log as _verify_log
from adapter.crypto.keys import load_certificates, load_identity
from adapter.dbutil import make_engine
from adapter.service.runner import Service
from adapter.sources.synth import generate
from adapter.store.evidence import EvidenceEntry, EvidenceHead
from adapter.store.models import Packet

pytestmark = pytest.mark.slow
anchors_file: list[str] = []  # the CA file the timestamp checks use
signer_file: list[str] = []  # the adapter's own certificate: the checkpoint signer


def verify_log(engine, anchors, *, tsa_ca=None, expect=None, grace=None):
    from pathlib import Path
    signers = tuple(load_certificates(Path(signer_file[0])))
    return _verify_log(engine, anchors, Expectations(signers, expect, tsa_ca, grace))


@pytest.fixture
def logged(settings, sim, pki):
    """A real log: 20 cases and their receipts sent, then a checkpoint, then a few more."""
    generate(make_engine(settings.url(settings.source.url)), cases=20)
    service = Service(settings)
    service.ctx.store.create_schema()
    try:
        assert service.run(until_idle=True, poll=0.05) == 0   # ends with a checkpoint
        service.ctx.store.cancel([1], actor="test", reason="after the checkpoint")  # refused
        service.ctx.store.replay([1], actor="test")  # refused too: nothing appended
    finally:
        service.ctx.close()
    engine = make_engine(settings.url(settings.adapter.state_db))
    anchors = load_certificates(pki / "ca.crt")
    anchors_file[:] = [str(pki / "ca.crt")]
    signer_file[:] = [str(pki / "adapter.crt")]
    return engine, anchors


def problems(engine, anchors):
    from pathlib import Path
    ca = Path(anchors_file[0]) if anchors_file else None
    rep = verify_log(engine, anchors, tsa_ca=ca)
    return [(p.what, p.seq) for p in rep.problems], rep


def test_an_untouched_log_verifies(logged):
    engine, anchors = logged
    found, rep = problems(engine, anchors)
    assert found == [] and rep.intact
    assert rep.entries > 60 and rep.checkpoints >= 1 and rep.last_checkpoint_seq == rep.entries
    with engine.connect() as c:
        events = set(c.execute(select(EvidenceEntry.event)).scalars())
    assert {"built", "attempt"} <= events


def _seq_of(engine, event="built", nth=5):
    with engine.connect() as c:
        return c.execute(select(EvidenceEntry.seq).where(EvidenceEntry.event == event)
                         .order_by(EvidenceEntry.seq).offset(nth)).scalar()


def test_one_changed_byte_of_a_packet_is_named(logged):
    engine, anchors = logged
    seq = _seq_of(engine)
    with engine.begin() as c:
        digest = c.execute(select(EvidenceEntry.content_sha256).where(
            EvidenceEntry.seq == seq)).scalar()
        blob = c.execute(select(Packet.payload).where(Packet.sha256 == digest)).scalar()
        c.execute(update(Packet).where(Packet.sha256 == digest).values(
            payload=blob.replace(b"000.00.00.G22", b"000.00.00.G23", 1)))
    found, rep = problems(engine, anchors)
    assert found == [("bytes", seq)]
    assert "packet bytes changed" in str(rep.problems[0])


def test_a_modified_entry_is_named(logged):
    engine, anchors = logged
    seq = _seq_of(engine, "attempt", 3)
    with engine.begin() as c:
        c.execute(update(EvidenceEntry).where(EvidenceEntry.seq == seq).values(
            detail='{"outcome":"rejected"}'))
    assert problems(engine, anchors)[0][0] == ("modified", seq)


def test_a_deleted_entry_is_named(logged):
    engine, anchors = logged
    seq = _seq_of(engine)
    with engine.begin() as c:
        c.execute(delete(EvidenceEntry).where(EvidenceEntry.seq == seq))
    found, _ = problems(engine, anchors)
    assert found[0] == ("deleted", seq)


def test_an_inserted_entry_is_named(logged):
    engine, anchors = logged
    with engine.begin() as c:
        last = c.execute(select(func.max(EvidenceEntry.seq))).scalar()
        c.execute(EvidenceEntry.__table__.insert().values(
            seq=last + 1, at=dt.datetime.now(dt.UTC).isoformat(), event="built",
            prev_hash="ab" * 32, entry_hash="cd" * 32))
    found, _ = problems(engine, anchors)
    assert ("inserted", last + 1) in found


def test_two_swapped_entries_are_named_reordered(logged):
    engine, anchors = logged
    a = _seq_of(engine, "built", 2)
    b = a + 1
    cols = [col for col in EvidenceEntry.__table__.columns if col.name != "seq"]
    with engine.begin() as c:
        ra = c.execute(select(*cols).where(EvidenceEntry.seq == a)).one()._mapping
        rb = c.execute(select(*cols).where(EvidenceEntry.seq == b)).one()._mapping
        c.execute(update(EvidenceEntry).where(EvidenceEntry.seq == a).values(**dict(rb)))
        c.execute(update(EvidenceEntry).where(EvidenceEntry.seq == b).values(**dict(ra)))
    found, _ = problems(engine, anchors)
    assert found[0] == ("reordered", a)


def test_a_truncated_tail_is_named_even_with_the_head_rewritten(logged):
    engine, anchors = logged
    with engine.begin() as c:
        last = c.execute(select(func.max(EvidenceEntry.seq))).scalar()
        c.execute(delete(EvidenceEntry).where(EvidenceEntry.seq > last - 3))
    found, _ = problems(engine, anchors)
    assert found[0] == ("truncated", last - 2)
    with engine.begin() as c:  # the insider also rewrites the head
        h = c.execute(select(EvidenceEntry.entry_hash).where(
            EvidenceEntry.seq == last - 3)).scalar()
        c.execute(update(EvidenceHead).values(seq=last - 3, hash=h))
    found, rep = problems(engine, anchors)
    assert ("truncated", last) in found  # the signed checkpoint still names entry `last`
    assert "no longer in the log" in " ".join(str(p) for p in rep.problems)


def test_a_checkpoint_signed_by_another_key_is_forged(logged, pki):
    engine, anchors = logged
    rogue = load_identity(pki / "untrusted" / "signer.key", pki / "untrusted" / "signer.crt")
    with engine.begin() as c:
        cp = c.execute(select(Checkpoint.__table__)).first()._mapping
        from cryptography.hazmat.primitives import serialization
        c.execute(update(Checkpoint).where(Checkpoint.id == cp["id"]).values(
            signature=sign_statement(rogue, cp["statement"]),
            cert_pem=rogue.cert.public_bytes(serialization.Encoding.PEM).decode()))
    found, rep = problems(engine, anchors)
    assert found == [("checkpoint", cp["seq"])]
    assert "untrusted key" in str(rep.problems[0])


def test_a_rewritten_history_no_longer_matches_its_checkpoint(logged, pki):
    """The insider rewrites an entry and recomputes every hash after it: the chain is
    consistent again, but the signed tip is not."""
    from adapter.store.evidence import entry_hash
    engine, anchors = logged
    seq = _seq_of(engine, "attempt", 1)
    t = EvidenceEntry.__table__
    with engine.begin() as c:
        c.execute(update(t).where(t.c.seq == seq).values(detail='{"outcome":"rejected"}'))
        prev = c.execute(select(t.c.prev_hash).where(t.c.seq == seq)).scalar()
        for r in c.execute(select(t).where(t.c.seq >= seq).order_by(t.c.seq)).all():
            e = dict(r._mapping)
            h = entry_hash(prev, e)
            c.execute(update(t).where(t.c.seq == e["seq"]).values(prev_hash=prev, entry_hash=h))
            prev = h
        c.execute(update(EvidenceHead).values(hash=prev))
    found, rep = problems(engine, anchors)
    assert found and found[0][0] == "checkpoint"
    assert "rewritten" in str(rep.problems[0])


def test_a_forged_statement_is_named(logged):
    engine, anchors = logged
    with engine.begin() as c:
        c.execute(update(Checkpoint).values(statement=statement(1, "00" * 32, "2020-01-01")))
    assert problems(engine, anchors)[0][0][0] == "checkpoint"


def test_cli_audit_verify_exit_codes(logged, config_file, capsys):
    from adapter.cli.main import main
    engine, _ = logged
    assert main(["--config", str(config_file), "audit", "verify"]) == 0
    assert "INTACT" in capsys.readouterr().out
    with engine.begin() as c:
        c.execute(delete(EvidenceEntry).where(EvidenceEntry.seq == 7))
    assert main(["--config", str(config_file), "audit", "verify"]) == 1
    assert "entry 7: deleted" in capsys.readouterr().out


def test_cli_audit_verify_takes_the_checkpoint_the_auditor_kept(logged, config_file, capsys):
    from adapter.cli.main import main
    engine, _ = logged
    cfg = ["--config", str(config_file), "audit", "verify"]
    assert main(cfg) == 0
    keep = capsys.readouterr().out.split("--expect-checkpoint ")[1].split()[0]
    assert main([*cfg, "--expect-checkpoint", keep]) == 0
    assert main([*cfg, "--expect-checkpoint", "3:nothex"]) == 2
    assert "is not COUNT:TIP" in capsys.readouterr().err
    with engine.begin() as c:  # the newest checkpoint and what it signed, gone
        cp = c.execute(select(Checkpoint.id, Checkpoint.seq).order_by(Checkpoint.id.desc())
                       ).first()
        c.execute(delete(Checkpoint).where(Checkpoint.id == cp.id))
        c.execute(delete(EvidenceEntry).where(EvidenceEntry.seq > cp.seq - 5))
        h = c.execute(select(EvidenceEntry.entry_hash).where(
            EvidenceEntry.seq == cp.seq - 5)).scalar()
        c.execute(update(EvidenceHead).values(seq=cp.seq - 5, hash=h))
    capsys.readouterr()
    assert main([*cfg, "--expect-checkpoint", keep]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "history is shorter than the auditor last saw" in out


def test_checkpoint_covers_only_new_entries(logged, pki):
    engine, _ = logged
    ident = load_identity(pki / "adapter.key", pki / "adapter.crt")
    assert make_checkpoint(engine, ident) is None  # the tip is already signed


def test_checkpoints_carry_a_real_rfc3161_timestamp(logged):
    engine, anchors = logged
    with engine.connect() as c:
        tokens = c.execute(select(Checkpoint.tsa_token)).scalars().all()
    assert tokens and all(t for t in tokens)
    _, rep = problems(engine, anchors)
    assert rep.unstamped == 0


def test_an_altered_timestamp_token_is_named(logged, pki):
    engine, anchors = logged
    with engine.begin() as c:
        cp_id, token = c.execute(select(Checkpoint.id, Checkpoint.tsa_token)).first()
        bad = bytearray(token)
        bad[len(bad) // 2] ^= 0x01
        c.execute(update(Checkpoint).where(Checkpoint.id == cp_id).values(tsa_token=bytes(bad)))
    rep = verify_log(engine, anchors, tsa_ca=pki / "ca.crt")
    assert [p.what for p in rep.problems] == ["timestamp"]


def test_a_stripped_timestamp_token_is_a_problem_when_stamping_is_configured(logged, pki):
    engine, anchors = logged
    with engine.begin() as c:
        cp_seq = c.execute(select(Checkpoint.seq).order_by(Checkpoint.id)).scalar()
        c.execute(update(Checkpoint).where(Checkpoint.seq == cp_seq).values(tsa_token=None))
    rep = verify_log(engine, anchors, tsa_ca=pki / "ca.crt")  # no stamping configured
    assert rep.intact and rep.unstamped == 1
    rep = verify_log(engine, anchors, tsa_ca=pki / "ca.crt", grace=0)
    assert [(p.what, p.seq) for p in rep.problems] == [("timestamp", cp_seq)]


def test_a_timestamp_outage_stops_nothing_and_loses_no_evidence(settings, sim, pki):
    generate(make_engine(settings.url(settings.source.url)), cases=10)
    signer_file[:] = [str(pki / "adapter.crt")]
    sim.control(tsa_down=1)

    def run_service() -> int:
        service = Service(settings)
        service.ctx.store.create_schema()
        try:
            return service.run(until_idle=True, poll=0.05)
        finally:
            service.ctx.close()

    assert run_service() == 0  # traffic went on
    assert sim.report()["accepted"] > 10
    engine = make_engine(settings.url(settings.adapter.state_db))
    anchors = load_certificates(pki / "ca.crt")
    rep = verify_log(engine, anchors, tsa_ca=pki / "ca.crt")
    assert rep.intact and rep.unstamped == 1
    assert any("no timestamp yet" in n for n in rep.notes)  # the gap is visible
    sim.control(tsa_down=0)
    assert run_service() == 0  # the service is back: the waiting checkpoint is stamped
    rep = verify_log(engine, anchors, tsa_ca=pki / "ca.crt")
    assert rep.intact and rep.unstamped == 0 and rep.checkpoints >= 1


def _verify_sh(d, pki, *extra):
    import subprocess
    return subprocess.run(["sh", str(d / "verify.sh"), "--ca", str(pki / "ca.crt"),
                           "--tsa-ca", str(pki / "ca.crt"), "--signer",
                           str(pki / "adapter.crt"), *extra], capture_output=True, text=True)


def test_exported_bundle_passes_the_readme_commands_and_fails_after_one_byte(
        logged, config_file, tmp_path, capsys, pki, monkeypatch):
    import stat
    import zipfile

    from adapter.cli.main import main
    from tests.helpers import install_roles_file
    install_roles_file(monkeypatch, tmp_path)  # this process's group is the auditors'
    bundle = tmp_path / "evidence.zip"
    assert main(["--config", str(config_file), "audit", "export", "--out", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "checkpoints" in out and "--expect-checkpoint" in out
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600  # personal data: owner only
    # the README's commands, run by a shell with openssl, sha256sum and xmlsec1 only
    d = tmp_path / "unpacked"
    zipfile.ZipFile(bundle).extractall(d)
    assert not (d / "certs").exists()  # no trust anchor travels with the bundle
    readme = (d / "README.md").read_text()
    assert "sh verify.sh --ca" in readme and "Tiếng Việt" in readme and "English" in readme
    signed = (d / "signed-packets.txt").read_text().splitlines()
    assert len(signed) >= 30 and {line.split()[1] for line in signed} == {"Case", "Receipt"}
    ok = _verify_sh(d, pki)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().endswith("INTACT")
    n = len((d / "entries.tsv").read_text().splitlines())
    assert f"tip: {n}:" in ok.stdout
    ca = ["--ca", str(pki / "ca.crt"), "--tsa-ca", str(pki / "ca.crt")]
    assert main(["audit", "verify-bundle", str(bundle), *ca]) == 0
    assert capsys.readouterr().out.strip().endswith("INTACT")
    # one byte changed in a packet, then in a chain entry: the same commands fail
    packet = sorted((d / "packets").iterdir())[0]
    original = packet.read_bytes()
    packet.write_bytes(original.replace(b"000.00.00.G22", b"000.00.00.G23", 1))
    bad = _verify_sh(d, pki)
    assert bad.returncode != 0 and "a packet was changed" in bad.stdout
    packet.write_bytes(original)
    entry = d / "chain" / "3.json"
    entry.write_bytes(entry.read_bytes().replace(b'"event":"', b'"event":"x', 1))
    bad = _verify_sh(d, pki)
    assert bad.returncode != 0 and "entry 3 was modified" in bad.stdout
    # and verify-bundle says so for a tampered zip
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "chain/3.json":
                data = data.replace(b'"event":"', b'"event":"x', 1)
            dst.writestr(item, data)
    assert main(["audit", "verify-bundle", str(tampered), *ca]) == 1


def test_archiving_keeps_both_parts_verifiable(logged, settings, sim, config_file, tmp_path,
                                               capsys, pki, monkeypatch):
    import zipfile

    from adapter.cli.main import main
    from tests.helpers import install_roles_file
    install_roles_file(monkeypatch, tmp_path)  # this process's group is the auditors'
    engine, anchors = logged
    cfg = ["--config", str(config_file)]
    first_cp = _first_checkpoint_seq(engine)
    with engine.connect() as c:
        packets_before = c.execute(select(func.count()).where(
            func.length(Packet.payload) > 0)).scalar()
    out1 = tmp_path / "part1.zip"
    assert main([*cfg, "audit", "archive", "--before", str(first_cp), "--out", str(out1)]) == 0
    tip1 = capsys.readouterr().out.split("tip: ")[1].split()[0]
    with engine.connect() as c:
        assert c.execute(select(func.min(EvidenceEntry.seq))).scalar() > first_cp
        packets_after = c.execute(select(func.count()).where(
            func.length(Packet.payload) > 0)).scalar()
    assert packets_after < packets_before  # archived, delivered packets' bytes are freed
    # more traffic after the archive, a new checkpoint, a second archive
    service = Service(settings)
    try:
        from adapter.store.repository import NewExchange
        service.ctx.store.add_exchanges("cases", [NewExchange(
            "00000000-0000-0000-0000-00000000beef", "case", "THA-X", 1, None,
            error="a record refused after the archive")], None)
        service._checkpoint_job(force=True)
    finally:
        service.ctx.close()
    rep = verify_log(engine, anchors, tsa_ca=pki / "ca.crt")
    assert rep.intact, rep.problems
    assert any("archived in part1.zip" in n for n in rep.notes)
    assert main([*cfg, "audit", "verify"]) == 0
    capsys.readouterr()
    last_cp = verify_log(engine, anchors).last_checkpoint_seq
    out2 = tmp_path / "part2.zip"
    assert main([*cfg, "audit", "archive", "--before", str(last_cp), "--out", str(out2)]) == 0
    tip2 = capsys.readouterr().out.split("tip: ")[1].split()[0]
    d1, d2 = tmp_path / "part1", tmp_path / "part2"
    zipfile.ZipFile(out1).extractall(d1)
    zipfile.ZipFile(out2).extractall(d2)
    r = _verify_sh(d1, pki)
    assert r.returncode == 0 and r.stdout.strip().endswith("INTACT"), r.stdout
    assert f"tip: {tip1}" in r.stdout
    r = _verify_sh(d2, pki, "--after", tip1)  # part 2 continues part 1
    assert r.returncode == 0 and r.stdout.strip().endswith("INTACT"), r.stdout
    assert f"tip: {tip2}" in r.stdout
    r = _verify_sh(d2, pki)  # from genesis it is refused: its start is elsewhere
    assert r.returncode == 1 and "FAILED: entry" in r.stdout
    assert verify_log(engine, anchors, tsa_ca=pki / "ca.crt").intact
    # tampering with what remains is still caught
    with engine.begin() as c:
        c.execute(update(EvidenceHead).values(seq=last_cp + 5))
    assert not verify_log(engine, anchors).intact


def _first_checkpoint_seq(engine) -> int:
    with engine.connect() as c:
        return c.execute(select(func.min(Checkpoint.seq))).scalar()


def test_packet_signatures_are_verified_again_as_recorded(logged, pki):
    engine, anchors = logged
    rep = verify_log(engine, anchors, tsa_ca=pki / "ca.crt")
    assert rep.intact and rep.signatures >= 40  # every signed packet, again


def store_packet(c, packet_id: str, payload: bytes, state: str = "delivered") -> None:
    """What the store does before it appends a `built` entry: the exchange and its bytes."""
    import hashlib

    from adapter.store.models import Exchange
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ex_id = c.execute(Exchange.__table__.insert().values(
        packet_id=packet_id, kind="case", route="cases", direction="out", source_key="k",
        source_version=1, state=state, attempts=0, created_at=now, updated_at=now)
    ).inserted_primary_key[0]
    c.execute(Packet.__table__.insert().values(
        exchange_id=ex_id, sha256=hashlib.sha256(payload).hexdigest(), payload=payload))


def test_a_wrongly_recorded_signature_outcome_is_named(tmp_path, pki):
    """A log that claims an unsigned packet had a valid signature."""
    from adapter.store import evidence
    from adapter.store.models import StateBase
    from adapter.xml.safe import serialize
    from tests.helpers import build_packet
    signer_file[:] = [str(pki / "adapter.crt")]
    engine = make_engine(f"sqlite:///{tmp_path}/s.db")
    StateBase.metadata.create_all(engine)
    payload = serialize(build_packet("case"))
    with engine.begin() as c:
        store_packet(c, "p", payload)
        evidence.append(c, [evidence.Event("built", "out", "x", "case", 1, "p",
                                           payload, "valid")])
    rep = verify_log(engine, load_certificates(pki / "ca.crt"))
    assert [(p.what, p.seq) for p in rep.problems] == [("signature", 1)]
    assert "recorded valid, but the packet's signature is absent" in str(rep.problems[0])
