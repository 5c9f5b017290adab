"""The verifier loads a signer's certificates once per distinct KeyInfo, and that cache
decides nothing: the signature is still checked against the packet every time, a KeyInfo
swapped in from a trusted signer does not lend its trust, and revocation is checked again
once the chain check's time is up."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapter.crypto import devpki, trust
from adapter.crypto import verify as verify_module
from adapter.crypto.constants import DSIG_NS
from adapter.crypto.keys import load_certificates, load_identity
from adapter.crypto.revocation import AnchorRevocation, CrlFile, RevocationChecker
from adapter.crypto.sign import PacketSigner
from adapter.crypto.verify import PacketVerifier
from adapter.errors import SignatureError
from adapter.xml.safe import parse_untrusted, serialize
from tests.helpers import build_packet

CERT = f"{{{DSIG_NS}}}KeyInfo/{{{DSIG_NS}}}X509Data/{{{DSIG_NS}}}X509Certificate"


@pytest.fixture(scope="module")
def pki_template(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cachepki")
    devpki.create_dev_pki(d)
    return d


@pytest.fixture
def pki(pki_template, tmp_path) -> Path:
    """A fresh copy per test: revoking must not touch the others'."""
    shutil.copytree(pki_template, tmp_path / "pki")
    return tmp_path / "pki"


def signed(pki: Path, stem: str, key: str = "BA-1") -> bytes:
    signer = PacketSigner(load_identity(pki / f"{stem}.key", pki / f"{stem}.crt"))
    return serialize(signer.sign(build_packet("judgment", key=key)))


def test_certificates_are_loaded_once_per_keyinfo(pki, monkeypatch):
    loads = []
    real = verify_module.x509.load_der_x509_certificate
    monkeypatch.setattr(verify_module.x509, "load_der_x509_certificate",
                        lambda data: loads.append(1) or real(data))
    verifier = PacketVerifier(load_certificates(pki / "ca.crt"))
    for i in range(5):
        verifier.verify(signed(pki, "court", key=f"BA-{i}"))
    verifier.verify(signed(pki, "adapter"))
    assert len(loads) == 2  # the court's certificate, then ours


def test_a_changed_packet_fails_after_its_signer_was_cached(pki):
    verifier = PacketVerifier(load_certificates(pki / "ca.crt"))
    data = signed(pki, "court")
    verifier.verify(data)
    with pytest.raises(SignatureError, match="digest mismatch"):
        verifier.verify(data.replace(b"BA-1", b"BA-2", 1))


def test_a_trusted_keyinfo_swapped_onto_a_rogue_signature_lends_no_trust(pki):
    verifier = PacketVerifier(load_certificates(pki / "ca.crt"))
    genuine = parse_untrusted(signed(pki, "court"))
    verifier.verify(serialize(genuine))  # the court's certificate is now cached and trusted
    rogue = parse_untrusted(signed(pki / "untrusted", "signer"))
    rogue[-1].find(CERT).text = genuine[-1].find(CERT).text
    with pytest.raises(SignatureError) as err:
        verifier.verify(serialize(rogue))
    assert err.value.outcome == "invalid"


def test_revocation_is_checked_again_once_the_chain_check_expires(pki):
    anchor = load_certificates(pki / "ca.crt")[0]
    crl = CrlFile(pki / devpki.CRL_NAME, "dev CA")
    previous = trust.set_revocation_check(RevocationChecker(
        [AnchorRevocation(anchor, [crl], ocsp=False, unavailable="reject")]))
    try:
        verifier = PacketVerifier([anchor], chain_cache_seconds=0)
        data = signed(pki, "court")
        verifier.verify(data)  # certificates cached, chain checked
        devpki.revoke(pki, "court", reason="keyCompromise")
        with pytest.raises(SignatureError, match="revoked") as err:
            verifier.verify(data)
        assert err.value.outcome == "untrusted"
    finally:
        trust.set_revocation_check(previous)
