"""Revoked signers are refused by every verifier (file CRLs here; CRLs over HTTP and OCSP in
tests/integration/test_revocation_http.py), our own revoked certificate stops signing, and
the dev CA can revoke. The checker is the one verify_signer calls, whoever verifies."""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from adapter.audit.checkpoint import sign_statement, statement
from adapter.audit.verify import _check_signature
from adapter.cli.main import main
from adapter.crypto import devpki, trust
from adapter.crypto.keys import load_certificates, load_identity
from adapter.crypto.revocation import (
    AnchorRevocation,
    CertificateRevoked,
    CrlFile,
    OwnCertificateUnusable,
    RevocationChecker,
    RevocationUnknown,
    check_own_certificate,
    checker_from_settings,
)
from adapter.crypto.sign import PacketSigner
from adapter.crypto.trust import Purpose, verify_signer
from adapter.crypto.verify import PacketVerifier
from adapter.edxml import build_document, sign_edxml, verify_edxml_signature
from adapter.errors import SignatureError
from adapter.xml.safe import parse_untrusted, serialize
from tests.conftest import write_config
from tests.helpers import build_packet
from tests.unit.edxml.test_build_and_sign import document

REVOKED = re.compile(r"signer certificate revoked on \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
                     r"\(keyCompromise\)")


# ---- a dev PKI of our own (revoking must not touch the session's) --------------------------

@pytest.fixture(scope="module")
def pki_template(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("revpki")
    devpki.create_dev_pki(d)
    return d


@pytest.fixture
def pki(pki_template, tmp_path) -> Path:
    """A fresh copy per test: its CRL starts empty."""
    d = tmp_path / "pki"
    shutil.copytree(pki_template, d)
    return d


def anchor_of(pki: Path) -> x509.Certificate:
    return load_certificates(pki / "ca.crt")[0]


def file_checker(pki: Path, *, policy="reject", clock=None) -> RevocationChecker:
    crl = CrlFile(pki / devpki.CRL_NAME, "dev CA")
    entry = AnchorRevocation(anchor_of(pki), [crl], ocsp=False, unavailable=policy)
    return RevocationChecker([entry], **({"clock": clock} if clock else {}))


@pytest.fixture
def install():
    """Install a checker for the whole process (as the service does), removed afterwards."""
    previous = trust.revocation_check()
    yield trust.set_revocation_check
    trust.set_revocation_check(previous)


def signed_judgment(pki: Path, stem: str = "court") -> bytes:
    signer = PacketSigner(load_identity(pki / f"{stem}.key", pki / f"{stem}.crt"))
    return serialize(signer.sign(build_packet("judgment")))


# ---- the three verifiers refuse a revoked signer --------------------------------------------

def test_a_judgment_signed_by_a_revoked_court_is_refused_with_date_and_reason(pki, install):
    install(file_checker(pki))
    packet = signed_judgment(pki)
    PacketVerifier([anchor_of(pki)]).verify(packet)  # valid before the revocation
    devpki.revoke(pki, "court", reason="keyCompromise")
    with pytest.raises(SignatureError) as err:
        PacketVerifier([anchor_of(pki)]).verify(packet)
    assert err.value.outcome == "untrusted"
    assert REVOKED.search(str(err.value)), str(err.value)
    # another signer of the same CA is not affected
    PacketVerifier([anchor_of(pki)]).verify(signed_judgment(pki, "adapter"))


def test_an_edxml_document_signed_by_a_revoked_signer_is_untrusted(pki, install):
    install(file_checker(pki))
    ident = load_identity(pki / "court.key", pki / "court.crt")
    root = parse_untrusted(serialize(sign_edxml(build_document(document()), ident)))
    assert verify_edxml_signature(root, [anchor_of(pki)]).outcome == "valid"
    devpki.revoke(pki, "court", reason="keyCompromise")
    out = verify_edxml_signature(root, [anchor_of(pki)])
    assert out.outcome == "untrusted"
    assert REVOKED.search(out.detail), out.detail


def test_a_checkpoint_signed_with_a_revoked_key_fails_audit_verification(pki, install):
    install(file_checker(pki))
    ident = load_identity(pki / "adapter.key", pki / "adapter.crt")
    at = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    text = statement(42, "ab" * 32, at)
    cp = dict(seq=42, tip_hash="ab" * 32, at=at, statement=text,
              signature=sign_statement(ident, text), cert_pem=ident.cert_pem)
    assert _check_signature(cp, (ident.cert,), [anchor_of(pki)]) is None
    devpki.revoke(pki, "adapter", reason="keyCompromise")
    why = _check_signature(cp, (ident.cert,), [anchor_of(pki)])
    assert why and "certificate revoked on" in why and "keyCompromise" in why, why


def test_the_revocation_date_counts_unless_the_key_was_compromised(pki):
    checker = file_checker(pki)
    cert = load_certificates(pki / "court.crt")[0]
    when = (cert.not_valid_before_utc + dt.timedelta(minutes=2)).replace(microsecond=0)
    devpki.revoke(pki, "court", reason="superseded", now=when)
    before, after = when - dt.timedelta(minutes=1), when + dt.timedelta(minutes=1)
    # a signature made before a "superseded" revocation still verifies at its time...
    verify_signer(cert, [], [anchor_of(pki)], Purpose.CHECKPOINT, at=before,
                  revocation=checker)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(CertificateRevoked, match=rf"revoked on {stamp} \(superseded\)"):
        verify_signer(cert, [], [anchor_of(pki)], Purpose.CHECKPOINT, at=after,
                      revocation=checker)
    # ...but after a key compromise nothing the key signed is believed
    devpki.revoke(pki, "adapter", reason="keyCompromise", now=when)
    with pytest.raises(CertificateRevoked):
        verify_signer(load_certificates(pki / "adapter.crt")[0], [], [anchor_of(pki)],
                      Purpose.CHECKPOINT, at=before, revocation=checker)


def test_tls_certificates_are_not_held_to_revocation(pki):
    """Only purposes that accept a signature consult the checker."""
    devpki.revoke(pki, "sim", reason="keyCompromise")
    verify_signer(load_certificates(pki / "sim.crt")[0], [], [anchor_of(pki)],
                  Purpose.TLS_SERVER, revocation=file_checker(pki))


# ---- a CRL we cannot believe, or one past its nextUpdate -------------------------------------

def test_a_crl_not_signed_by_the_issuer_is_not_believed(pki):
    ca = anchor_of(pki)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    fake = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
            .last_update(now).next_update(now + dt.timedelta(days=1)).sign(forger,
                                                                            hashes.SHA256()))
    (pki / devpki.CRL_NAME).write_bytes(fake.public_bytes(serialization.Encoding.DER))
    cert = load_certificates(pki / "court.crt")[0]
    with pytest.raises(RevocationUnknown, match="is not signed by"):
        verify_signer(cert, [], [ca], Purpose.THADS_PACKET, revocation=file_checker(pki))


def test_a_stale_crl_rejects_or_flags_by_policy(pki, caplog):
    cert = load_certificates(pki / "court.crt")[0]
    late = dt.datetime.now(dt.UTC) + dt.timedelta(days=devpki.CRL_DAYS + 1)
    with pytest.raises(RevocationUnknown, match=r"out of date: its nextUpdate .* has passed"
                                                r".*policy reject"):
        verify_signer(cert, [], [anchor_of(pki)], Purpose.THADS_PACKET,
                      revocation=file_checker(pki, clock=lambda: late))
    flagging = file_checker(pki, policy="flag", clock=lambda: late)
    with caplog.at_level(logging.WARNING, logger="adapter.revocation"):
        verify_signer(cert, [], [anchor_of(pki)], Purpose.THADS_PACKET, revocation=flagging)
    assert "accepted under policy flag" in caplog.text
    assert next(iter(flagging.anchors.values())).flagged == 1


def test_an_anchor_without_revocation_configured_is_not_checked(pki):
    devpki.revoke(pki, "court", reason="keyCompromise")
    other = AnchorRevocation(load_certificates(pki / "untrusted" / "ca.crt")[0], [])
    verify_signer(load_certificates(pki / "court.crt")[0], [], [anchor_of(pki)],
                  Purpose.THADS_PACKET, revocation=RevocationChecker([other]))


# ---- our own certificate --------------------------------------------------------------------

def _settings(tmp_path, pki, extra=""):
    from adapter.config import load_settings

    return load_settings(write_config(tmp_path, pki, extra=extra))


ANCHORS = """
[revocation]
[[revocation.anchors]]
anchor = "{pki}/ca.crt"
crl_files = ["{pki}/dev-ca.crl"]
"""


def test_our_own_revoked_certificate_stops_signing_with_one_clear_line(tmp_path, pki):
    s = _settings(tmp_path, pki, ANCHORS.format(pki=pki))
    checker = checker_from_settings(s)
    check_own_certificate(s, checker=checker)  # fine before
    devpki.revoke(pki, "adapter", reason="keyCompromise")
    with pytest.raises(OwnCertificateUnusable) as err:
        check_own_certificate(s, checker=checker)
    msg = str(err.value)
    assert msg.startswith("signing stopped: our certificate 'CN=THADS exchange adapter (dev)")
    assert "was revoked on" in msg and "(keyCompromise)" in msg and "\n" not in msg


def test_our_own_expired_certificate_stops_signing(tmp_path, pki):
    s = _settings(tmp_path, pki)
    cert = load_certificates(pki / "adapter.crt")[0]
    check_own_certificate(s, at=cert.not_valid_after_utc - dt.timedelta(days=1))
    with pytest.raises(OwnCertificateUnusable, match="expired on"):
        check_own_certificate(s, at=cert.not_valid_after_utc + dt.timedelta(seconds=1))


def test_an_unknown_status_of_our_own_certificate_does_not_stop_signing(tmp_path, pki, caplog):
    s = _settings(tmp_path, pki, ANCHORS.format(pki=pki))
    (pki / devpki.CRL_NAME).unlink()
    with caplog.at_level(logging.WARNING, logger="adapter.revocation"):
        check_own_certificate(s, checker=checker_from_settings(s))
    assert "could not be fully checked" in caplog.text


# ---- configuration ----------------------------------------------------------------------------

def test_peers_set_the_policy_of_their_anchors_and_reject_wins(tmp_path, pki):
    peers = "".join(f"""
[[peers]]
name = "{name}"
organisation_ids = ["{org}"]
trust_anchors = ["{pki}/{anchor}"]
revocation_unavailable = "{policy}"
""" for name, org, anchor, policy in (("court-a", "000.00.00.T01", "ca.crt", "flag"),
                                      ("court-b", "000.00.00.T02", "ca.crt", "reject"),
                                      ("other", "000.00.00.T03", "untrusted/ca.crt", "flag")))
    extra = peers + ANCHORS.format(pki=pki) + f"""
[[revocation.anchors]]
anchor = "{pki}/untrusted/ca.crt"
crl_urls = ["http://127.0.0.1:9/none.crl"]
"""
    checker = checker_from_settings(_settings(tmp_path, pki, extra))
    policies = {a.anchor.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value:
                a.unavailable for a in checker.anchors.values()}
    assert policies == {"THADS adapter development CA": "reject", "Untrusted CA": "flag"}


def test_a_crl_url_must_be_http(tmp_path, pki):
    from adapter.errors import ConfigError

    with pytest.raises(ConfigError, match=r"revocation.anchors.0.crl_urls: .*not an http"):
        _settings(tmp_path, pki, f"""
[[revocation.anchors]]
anchor = "{pki}/ca.crt"
crl_urls = ["ldap://example/crl"]
""")


# ---- the dev PKI revokes --------------------------------------------------------------------

def test_dev_pki_revoke_publishes_the_crl_in_pem_and_der(pki, capsys):
    court = load_certificates(pki / "court.crt")[0]
    assert main(["certs", "dev-pki", "--out", str(pki), "revoke", "court",
                 "--reason", "keyCompromise"]) == 0
    out = capsys.readouterr().out
    assert f"serial {court.serial_number:#x}" in out and "(keyCompromise)" in out
    der = x509.load_der_x509_crl((pki / "dev-ca.crl").read_bytes())
    pem = x509.load_pem_x509_crl((pki / "dev-ca.crl.pem").read_bytes())
    assert der == pem and der.is_signature_valid(anchor_of(pki).public_key())
    entry = der.get_revoked_certificate_by_serial_number(court.serial_number)
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.key_compromise
    # revoking again keeps one entry; an unknown name is one line and exit 2
    assert main(["certs", "dev-pki", "--out", str(pki), "revoke", "court"]) == 0
    assert len(x509.load_der_x509_crl((pki / "dev-ca.crl").read_bytes())) == 1
    capsys.readouterr()
    assert main(["certs", "dev-pki", "--out", str(pki), "revoke", "judge"]) == 2
    assert "no certificate 'judge'" in capsys.readouterr().out


def test_dev_certificates_name_a_crl_distribution_point_only_when_asked(tmp_path, pki_template):
    def cdp(cert):
        try:
            return [n.value for d in cert.extensions.get_extension_for_class(
                x509.CRLDistributionPoints).value for n in d.full_name]
        except x509.ExtensionNotFound:
            return None

    assert cdp(load_certificates(pki_template / "court.crt")[0]) is None
    url = "http://127.0.0.1:8741/crl/dev-ca.crl"
    assert main(["certs", "dev-pki", "--out", str(tmp_path / "d"), "--crl-url", url]) == 0
    court = load_certificates(tmp_path / "d" / "court.crt")[0]
    assert cdp(court) == [url]
    # still a valid packet signer under the strict policy
    verify_signer(court, [], load_certificates(tmp_path / "d" / "ca.crt"),
                  Purpose.THADS_PACKET)
    assert court.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
