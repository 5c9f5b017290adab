"""Key rotation: a new key and certificate configured beside the old one sign from a
configured moment; what the old one signed still verifies. Clocks are fixed."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from adapter.audit.checkpoint import Checkpoint, make_checkpoint
from adapter.audit.verify import Expectations, verify_log
from adapter.config import load_settings
from adapter.crypto import PacketSigner, PacketVerifier, load_certificates
from adapter.crypto.keys import configured_identity
from adapter.crypto.pkcs11 import TokenRsaKey
from adapter.dbutil import make_engine
from adapter.engine.build import PacketBuilder
from adapter.errors import ConfigError
from adapter.store import evidence
from adapter.store.models import StateBase
from tests.conftest import write_config
from tests.helpers import build_packet
from tests.softhsm import certify, softhsm_env, write_cert

VN = dt.timezone(dt.timedelta(hours=7))
MOMENT = dt.datetime(2027, 1, 1, tzinfo=VN)


@pytest.fixture
def next_pair(pki, tmp_path) -> tuple[Path, Path]:
    """The 2027 key and its certificate from the dev CA, valid from well before MOMENT."""
    from cryptography.hazmat.primitives import serialization

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path / "adapter-2027.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert = certify(pki, key.public_key(), "THADS exchange adapter (2027 key)", days=900)
    return key_path, write_cert(tmp_path / "adapter-2027.crt", cert)


def _settings(tmp_path, pki, signing: str):
    cfg = write_config(tmp_path, pki)
    text = cfg.read_text(encoding="utf-8")
    start, end = text.index("[signing]"), text.index("[lgsp]")
    cfg.write_text(text[:start] + "[signing]\n" + signing + f'\ntrust_anchors = ["{pki}/ca.crt"]'
                   "\n\n" + text[end:], encoding="utf-8")
    return load_settings(cfg, environ={})


def _rotation(pki, key: str, cert: Path, moment: dt.datetime = MOMENT) -> str:
    return (f'key = "{pki}/adapter.key"\ncert = "{pki}/adapter.crt"\n'
            f'next_key = "{key}"\nnext_cert = "{cert}"\nnext_from = {moment.isoformat()}')


def test_packets_are_signed_by_the_new_key_from_the_moment(tmp_path, pki, next_pair):
    key, cert = next_pair
    settings = _settings(tmp_path, pki, _rotation(pki, str(key), cert))
    ident = configured_identity(settings)
    old, new = load_certificates(pki / "adapter.crt")[0], load_certificates(cert)[0]
    assert ident.certificates() == (old, new)
    assert settings.signing.certificate_files() == [f"{pki}/adapter.crt", str(cert)]
    verifier = PacketVerifier(load_certificates(pki / "ca.crt"))
    second = dt.timedelta(seconds=1)
    for moment, signer_cert in ((MOMENT - second, old), (MOMENT, new), (MOMENT + second, new)):
        signer = PacketSigner(ident, clock=lambda m=moment: m)
        assert signer.identity_at() is ident.at(moment)
        data = signer.sign_bytes(build_packet("case"))
        assert verifier.verify(data).signer == signer_cert, moment
    # `at=` (the packet's own moment) decides over the clock
    late = PacketSigner(ident, clock=lambda: MOMENT + second)
    assert verifier.verify(late.sign_bytes(build_packet("case"), at=MOMENT - second)
                           ).signer == old


def test_packets_signed_with_the_old_certificate_still_verify_after_the_moment(
        tmp_path, pki, next_pair):
    """Verification does not depend on which key signs now: the old certificate is still
    valid and not revoked, so what it signed before the moment verifies after it."""
    key, cert = next_pair
    ident = configured_identity(_settings(tmp_path, pki, _rotation(pki, str(key), cert)))
    before = PacketSigner(ident, clock=lambda: MOMENT - dt.timedelta(days=1)
                          ).sign_bytes(build_packet("receipt"))
    after = PacketSigner(ident, clock=lambda: MOMENT + dt.timedelta(days=1)
                         ).sign_bytes(build_packet("receipt", key="K-2"))
    verifier = PacketVerifier(load_certificates(pki / "ca.crt"))
    assert [verifier.verify(d).signer_subject for d in (before, after)] == [
        "CN=THADS exchange adapter (dev),O=THADS adapter development,C=VN",
        "CN=THADS exchange adapter (2027 key),O=THADS adapter development,C=VN"]


def test_the_builder_signs_with_the_rotation_configuration_names(tmp_path, pki, next_pair):
    key, cert = next_pair
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    settings = _settings(tmp_path, pki, _rotation(pki, str(key), cert, past))
    builder = PacketBuilder(settings)
    assert builder.signer.identity_at() is builder.identity.successor
    assert len(builder.identity.certificates()) == 2


def test_a_next_certificate_not_yet_valid_at_the_moment_is_refused(tmp_path, pki):
    from cryptography.hazmat.primitives import serialization

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "k.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    late = MOMENT + dt.timedelta(days=3)
    cert = write_cert(tmp_path / "k.crt", certify(pki, key.public_key(), "late", not_before=late))
    with pytest.raises(ConfigError) as ei:
        configured_identity(_settings(tmp_path, pki, _rotation(pki, str(tmp_path / "k.key"),
                                                                cert)))
    assert ei.value.key == "signing.next_from"
    assert "before the next certificate is valid" in ei.value.reason


def test_a_rotation_onto_a_token_key(tmp_path, pki, monkeypatch):
    """The old key in a file, the new one on a token: both paths in one identity."""
    gen = softhsm_env(tmp_path, monkeypatch)
    hsm = next(gen)
    try:
        hsm.init_token("THADS 2027")
        hsm.import_key("THADS 2027", pki / "court.key", "next", "09")  # any dev-CA key
        ident = configured_identity(_settings(
            tmp_path, pki, _rotation(pki, hsm.uri("THADS 2027", "next"), pki / "court.crt")))
        assert isinstance(ident.successor.key, TokenRsaKey)
        signer = PacketSigner(ident, clock=lambda: MOMENT)
        verified = PacketVerifier(load_certificates(pki / "ca.crt")).verify(
            signer.sign_bytes(build_packet("case")))
        assert verified.signer == load_certificates(pki / "court.crt")[0]
    finally:
        gen.close()


def test_checkpoints_sign_with_the_key_current_at_their_time(tmp_path, pki, next_pair):
    """Before the moment the old certificate signs the checkpoint, after it the new one;
    the audit verifier accepts both, each with the certificate recorded with it."""
    key, cert = next_pair
    ident = configured_identity(_settings(tmp_path, pki, _rotation(pki, str(key), cert)))
    now = dt.datetime.now(dt.UTC)
    engine = make_engine(f"sqlite:///{tmp_path}/state.db")
    StateBase.metadata.create_all(engine)
    for successor_from in (now + dt.timedelta(days=1), now - dt.timedelta(days=1)):
        with engine.begin() as c:
            evidence.append(c, [evidence.Event("note")])
        assert make_checkpoint(engine, dataclasses.replace(
            ident, successor_from=successor_from)) is not None
    with engine.connect() as c:
        pems = c.execute(select(Checkpoint.cert_pem).order_by(Checkpoint.id)).scalars().all()
    subjects = [load_certificates_from_pem(p).subject.rfc4514_string() for p in pems]
    assert ["2027 key" in s for s in subjects] == [False, True]
    anchors = load_certificates(pki / "ca.crt")
    rep = verify_log(engine, anchors, Expectations(ident.certificates()))
    assert rep.intact and rep.checkpoints == 2, rep.problems
    # the auditor needs both certificates: with only the old one, the new one's is forged
    only_old = verify_log(engine, anchors, Expectations(ident.certificates()[:1]))
    assert [p.what for p in only_old.problems] == ["checkpoint"]


def load_certificates_from_pem(pem: str):
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem.encode())
