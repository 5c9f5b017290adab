"""Signing with keys held on a SoftHSM2 token through PKCS#11: packets, edXML and evidence
checkpoints, verified by the adapter's verifier, `packet verify` and the real xmlsec1; and
the one line an operator gets when the token is missing, locked or refuses the PIN."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import multiprocessing
import shutil
import subprocess
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from adapter.audit.checkpoint import make_checkpoint
from adapter.audit.verify import Expectations, verify_log
from adapter.cli.main import main
from adapter.config import load_settings
from adapter.crypto import PacketSigner, PacketVerifier, load_certificates, load_identity
from adapter.crypto import pkcs11 as token_mod
from adapter.crypto.keys import configured_identity, load_token_identity
from adapter.crypto.pkcs11 import TokenEcKey, TokenRsaKey
from adapter.dbutil import make_engine
from adapter.edxml import build_document, sign_edxml, verify_edxml_signature
from adapter.engine import build
from adapter.errors import ConfigError
from adapter.sources.changes import SourceCursor, SourceRecord
from adapter.store import evidence
from adapter.store.models import StateBase
from adapter.xml.safe import parse_untrusted, serialize
from tests.conftest import write_config
from tests.helpers import NS, build_packet, sample_record
from tests.softhsm import SoftHsm, certify, softhsm_env, write_cert

XMLSEC1 = shutil.which("xmlsec1")
TOKEN = "THADS signer"


@pytest.fixture
def hsm(tmp_path, monkeypatch):
    yield from softhsm_env(tmp_path, monkeypatch)


@pytest.fixture
def token(hsm: SoftHsm, pki: Path) -> SoftHsm:
    """A token holding the dev PKI's RSA and EC signing keys (imported, as from a PFX)."""
    hsm.init_token(TOKEN)
    hsm.import_key(TOKEN, pki / "adapter.key", "adapter", "01")
    hsm.import_key(TOKEN, pki / "adapter-ec.key", "adapter-ec", "02")
    return hsm


def _config(tmp_path: Path, pki: Path, signing: str, *, workers: int = 0) -> Path:
    cfg = write_config(tmp_path, pki)
    text = cfg.read_text(encoding="utf-8")
    start, end = text.index("[signing]"), text.index("[lgsp]")
    text = (text[:start] + "[signing]\n" + signing + f'\ntrust_anchors = ["{pki}/ca.crt"]\n\n'
            + text[end:]).replace("sign_workers = 0", f"sign_workers = {workers}")
    cfg.write_text(text, encoding="utf-8")
    return cfg


def _xmlsec_verify(path: Path, ca: Path, root: str) -> subprocess.CompletedProcess:
    assert XMLSEC1, "xmlsec1 is required (make test installs it)"
    return subprocess.run([XMLSEC1, "--verify", "--id-attr:Id", f"{NS}:{root}",
                           "--trusted-pem", str(ca), str(path)], capture_output=True, text=True)


# ---- signing through the token ----------------------------------------------------------------

@pytest.mark.xmlsec1
def test_a_token_rsa_key_signs_byte_identical_to_the_same_key_in_a_file(token, pki, tmp_path):
    ident = load_token_identity(token.uri(TOKEN, "adapter"), pki / "adapter.crt")
    assert isinstance(ident.key, TokenRsaKey)
    on_token = PacketSigner(ident).sign_bytes(build_packet("case"))
    in_file = PacketSigner(load_identity(pki / "adapter.key", pki / "adapter.crt")
                           ).sign_bytes(build_packet("case"))
    assert on_token == in_file  # PKCS#1 v1.5 is deterministic: the same bytes
    anchors = load_certificates(pki / "ca.crt")
    assert PacketVerifier(anchors).verify(on_token).signer == ident.cert
    signed = tmp_path / "signed.xml"
    signed.write_bytes(on_token)
    ok = _xmlsec_verify(signed, pki / "ca.crt", "Case")
    assert ok.returncode == 0, ok.stderr
    signed.write_bytes(on_token.replace(b"000.00.00.G22", b"000.00.00.G23", 1))
    assert _xmlsec_verify(signed, pki / "ca.crt", "Case").returncode != 0


@pytest.mark.xmlsec1
def test_a_token_ec_key_signs_ecdsa_that_xmlsec1_and_the_verifier_accept(token, pki, tmp_path):
    ident = load_token_identity(token.uri(TOKEN, key_id="02"), pki / "adapter-ec.crt")
    assert isinstance(ident.key, TokenEcKey)
    data = PacketSigner(ident, "ecdsa-sha256").sign_bytes(build_packet("receipt"))
    assert b"ecdsa-sha256" in data
    PacketVerifier(load_certificates(pki / "ca.crt")).verify(data)
    (tmp_path / "signed.xml").write_bytes(data)
    ok = _xmlsec_verify(tmp_path / "signed.xml", pki / "ca.crt", "Receipt")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.xmlsec1
def test_a_key_generated_on_the_token_and_certified_by_the_dev_ca(hsm, pki, tmp_path):
    """The key never existed outside the token: its certificate is issued for the public
    key read from the token."""
    hsm.init_token(TOKEN)
    lib = pkcs11.lib(hsm.module)
    with lib.get_token(token_label=TOKEN).open(rw=True, user_pin="4711-thads") as session:
        pub, _ = session.generate_keypair(pkcs11.KeyType.RSA, 2048, label="generated",
                                          id=b"\x07", store=True)
        public = rsa.RSAPublicNumbers(int.from_bytes(pub[pkcs11.Attribute.PUBLIC_EXPONENT],
                                                     "big"),
                                      int.from_bytes(pub[pkcs11.Attribute.MODULUS], "big")
                                      ).public_key()
    token_mod.reset_process()  # the service opens its own session, as after a restart
    cert = write_cert(tmp_path / "generated.crt",
                      certify(pki, public, "THADS adapter (key generated on the token)"))
    ident = load_token_identity(hsm.uri(TOKEN, "generated"), cert)
    data = PacketSigner(ident).sign_bytes(build_packet("case"))
    assert PacketVerifier(load_certificates(pki / "ca.crt")).verify(data).signer == ident.cert
    (tmp_path / "signed.xml").write_bytes(data)
    ok = _xmlsec_verify(tmp_path / "signed.xml", pki / "ca.crt", "Case")
    assert ok.returncode == 0, ok.stderr


def test_packet_sign_and_verify_commands_with_a_token_key(token, pki, tmp_path, capsys):
    """The configuration names the token key; `packet sign` signs through it and
    `packet verify` accepts the result."""
    cfg = _config(tmp_path, pki, f'key = "{token.uri(TOKEN, "adapter", "01")}"\n'
                                 f'cert = "{pki}/adapter.crt"')
    unsigned = tmp_path / "case.xml"
    unsigned.write_bytes(serialize(build_packet("case")))
    signed = tmp_path / "case.signed.xml"
    assert main(["--config", str(cfg), "packet", "sign", str(unsigned), "-o", str(signed)]) == 0
    assert main(["--config", str(cfg), "packet", "verify", str(signed)]) == 0
    assert "signature valid" in capsys.readouterr().out
    signed.write_bytes(signed.read_bytes().replace(b"000.00.00.G22", b"000.00.00.G23", 1))
    assert main(["--config", str(cfg), "packet", "verify", str(signed)]) == 1


def test_edxml_documents_sign_through_the_token_too(token, pki):
    from tests.unit.edxml.test_build_and_sign import document

    ident = load_token_identity(token.uri(TOKEN, "adapter"), pki / "adapter.crt")
    file_ident = load_identity(pki / "adapter.key", pki / "adapter.crt")
    data = serialize(sign_edxml(build_document(document()), ident))
    assert data == serialize(sign_edxml(build_document(document()), file_ident))
    outcome = verify_edxml_signature(parse_untrusted(data), load_certificates(pki / "ca.crt"))
    assert outcome.outcome == "valid"


def test_a_checkpoint_signed_with_the_token_key_verifies(token, pki, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/state.db")
    StateBase.metadata.create_all(engine)
    with engine.begin() as c:
        evidence.append(c, [evidence.Event("note", detail={"n": i}) for i in range(3)])
    ident = load_token_identity(token.uri(TOKEN, "adapter"), pki / "adapter.crt")
    cp = make_checkpoint(engine, ident)
    assert cp is not None and cp.seq == 3
    rep = verify_log(engine, load_certificates(pki / "ca.crt"),
                     Expectations(ident.certificates()))
    assert rep.intact and rep.checkpoints == 1, rep.problems
    # and openssl, without our code, agrees
    (tmp_path / "statement.txt").write_text(cp.statement, encoding="utf-8")
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(cp.signature))
    (tmp_path / "pub.pem").write_bytes(ident.cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"),
                        "-signature", str(tmp_path / "sig.bin"),
                        str(tmp_path / "statement.txt")], capture_output=True, text=True)
    assert r.returncode == 0 and "Verified OK" in r.stdout


def test_an_ec_token_checkpoint_verifies(token, pki, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/state.db")
    StateBase.metadata.create_all(engine)
    with engine.begin() as c:
        evidence.append(c, [evidence.Event("note")])
    ident = load_token_identity(token.uri(TOKEN, "adapter-ec"), pki / "adapter-ec.crt")
    assert make_checkpoint(engine, ident) is not None
    assert verify_log(engine, load_certificates(pki / "ca.crt"),
                      Expectations(ident.certificates())).intact


# ---- one session per process ------------------------------------------------------------------

def _sign_in_fork(ident, conn) -> None:
    conn.send(PacketSigner(ident).sign_bytes(build_packet("case", key="K-fork")))
    conn.close()


def test_a_forked_child_opens_its_own_session_and_the_parent_keeps_signing(token, pki):
    ident = load_token_identity(token.uri(TOKEN, "adapter"), pki / "adapter.crt")
    signer = PacketSigner(ident)
    verifier = PacketVerifier(load_certificates(pki / "ca.crt"))
    verifier.verify(signer.sign_bytes(build_packet("case")))  # the parent's session is open
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_sign_in_fork, args=(ident, child_end))
    child.start()
    data = parent_end.recv() if parent_end.poll(60) else None
    child.join(60)
    assert child.exitcode == 0 and data is not None
    verifier.verify(data)
    verifier.verify(signer.sign_bytes(build_packet("receipt")))  # unharmed by the child


def test_spawned_sign_workers_each_load_the_token_key(token, pki, tmp_path):
    """The service's sign workers (spawn): each initializer opens its own session."""
    cfg = _config(tmp_path, pki, f'key = "{token.uri(TOKEN, "adapter")}"\n'
                                 f'cert = "{pki}/adapter.crt"', workers=2)
    records = [SourceRecord("case", f"K-{i}", 1, SourceCursor.decode(None),
                            sample_record("case", i)) for i in range(1, 7)]
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                                initializer=build.init_worker,
                                initargs=(str(cfg), None)) as pool:
        built = list(pool.map(build.build_in_worker,
                              [(r, "000.00.00.G22") for r in records]))
    verifier = PacketVerifier(load_certificates(pki / "ca.crt"))
    assert all(b.error is None for b in built), [b.error for b in built]
    for b in built:
        verifier.verify(b.payload)


def test_a_lost_session_is_reopened_once(token, pki, caplog):
    ident = load_token_identity(token.uri(TOKEN, "adapter"), pki / "adapter.crt")
    signer = PacketSigner(ident)
    signer.sign_bytes(build_packet("case"))
    for session in token_mod._state.sessions.values():
        session.close()  # as when the HSM fails over
    PacketVerifier(load_certificates(pki / "ca.crt")).verify(
        signer.sign_bytes(build_packet("receipt")))
    assert "reopening the session" in caplog.text


# ---- one line when the token cannot be used -----------------------------------------------------

def _load_error(tmp_path, pki, key: str, cert: str = "adapter.crt", env=None) -> ConfigError:
    cfg = _config(tmp_path, pki, f'key = "{key}"\ncert = "{pki}/{cert}"')
    with pytest.raises(ConfigError) as ei:
        configured_identity(load_settings(cfg, environ=env or {}))
    err = ei.value
    assert err.key == "signing.key" and "\n" not in str(err)
    return err


def test_a_missing_token_is_one_line_naming_the_tokens_present(token, pki, tmp_path):
    err = _load_error(tmp_path, pki, token.uri("No such token", "adapter"))
    assert "no token 'No such token'" in err.reason
    assert "'THADS signer'" in err.reason and "plugged in" in err.reason


def test_a_wrong_pin_is_one_line(token, pki, tmp_path):
    bad = tmp_path / "wrong.pin"
    bad.write_text("0000\n", encoding="utf-8")
    err = _load_error(tmp_path, pki, token.uri(TOKEN, "adapter", pin_source=f"file:{bad}"))
    assert err.reason.startswith(f"wrong PIN for token 'THADS signer' (from the file {bad})")


def test_a_wrong_pin_on_the_last_try_says_so(token, pki, tmp_path):
    from tests.softhsm import CKF_USER_PIN_FINAL_TRY

    token.set_token_flag(TOKEN, CKF_USER_PIN_FINAL_TRY)
    bad = tmp_path / "wrong.pin"
    bad.write_text("0000\n", encoding="utf-8")
    err = _load_error(tmp_path, pki, token.uri(TOKEN, "adapter", pin_source=f"file:{bad}"))
    assert "(the next wrong PIN locks it)" in err.reason


def test_a_locked_token_is_one_line(token, pki, tmp_path):
    token.lock_user_pin(TOKEN)
    err = _load_error(tmp_path, pki, token.uri(TOKEN, "adapter"))
    assert "token 'THADS signer' is locked" in err.reason and "SO PIN" in err.reason


def test_the_pin_from_an_environment_variable(token, pki, tmp_path, monkeypatch):
    uri = token.uri(TOKEN, "adapter", pin_source="env:THADS_TEST_TOKEN_PIN")
    err = _load_error(tmp_path, pki, uri)
    assert "the PIN variable THADS_TEST_TOKEN_PIN (pin-source) is not set" in err.reason
    monkeypatch.setenv("THADS_TEST_TOKEN_PIN", "4711-thads")
    cfg = _config(tmp_path, pki, f'key = "{uri}"\ncert = "{pki}/adapter.crt"')
    assert isinstance(configured_identity(load_settings(cfg, environ={})).key, TokenRsaKey)


def test_a_missing_key_module_or_pin_file_is_one_line(token, pki, tmp_path):
    assert "no private key with label 'nope' on token 'THADS signer'" in _load_error(
        tmp_path, pki, token.uri(TOKEN, "nope")).reason
    missing = token.uri(TOKEN, "adapter").replace(token.module, "/usr/lib/nowhere/libp11.so")
    assert "PKCS#11 module /usr/lib/nowhere/libp11.so not found" in _load_error(
        tmp_path, pki, missing).reason
    token_mod.reset_process()  # a new process: not logged in to the token yet
    no_pin = token.uri(TOKEN, "adapter", pin_source=f"file:{tmp_path}/none.pin")
    assert f"cannot read the PIN file {tmp_path}/none.pin" in _load_error(
        tmp_path, pki, no_pin).reason


def test_a_token_key_that_is_not_the_certificates_is_refused(token, pki, tmp_path):
    err = _load_error(tmp_path, pki, token.uri(TOKEN, "adapter"), cert="court.crt")
    assert "is not the certificate's key" in err.reason
    err = _load_error(tmp_path, pki, token.uri(TOKEN, "adapter-ec"), cert="adapter.crt")
    assert "is an EC key, but the certificate's is not" in err.reason


def test_run_stops_at_start_with_exit_2_on_a_wrong_pin(token, pki, tmp_path, capsys):
    bad = tmp_path / "wrong.pin"
    bad.write_text("0000\n", encoding="utf-8")
    bad.chmod(0o400)
    cfg = _config(tmp_path, pki,
                  f'key = "{token.uri(TOKEN, "adapter", pin_source=f"file:{bad}")}"\n'
                  f'cert = "{pki}/adapter.crt"', workers=2)
    assert main(["--config", str(cfg), "init"]) == 0  # a state database at head
    capsys.readouterr()
    assert main(["--config", str(cfg), "run", "--once", "--no-simulator"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"configuration error: {cfg}: signing.key: wrong PIN for token "
                   f"'THADS signer' (from the file {bad}); the token locks after a few "
                   "wrong PINs: correct the PIN before starting again"]


def test_the_key_never_leaves_the_token(token, pki):
    ident = load_token_identity(token.uri(TOKEN, "adapter"), pki / "adapter.crt")
    with pytest.raises(TypeError, match="stays on the token"):
        ident.key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())


def test_a_signed_packet_root_is_the_packet(token, pki):
    """sign() (the tree form) gives the same packet as sign_bytes()."""
    ident = load_token_identity(token.uri(TOKEN, "adapter"), pki / "adapter.crt")
    signer = PacketSigner(ident)
    tree = signer.sign(build_packet("case"))
    assert etree.QName(tree).localname == "Case"
    assert serialize(tree) == signer.sign_bytes(build_packet("case"))
    assert parse_untrusted(serialize(tree), name="x") is not None
