"""One chain-and-purpose policy for every certificate (trust.py), at every place that
checks one: THADS packets, edXML, evidence checkpoints, `certs check`."""

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapter.crypto import (
    PacketSigner,
    PacketVerifier,
    Purpose,
    SignerPin,
    UntrustedCertificate,
    load_certificates,
    load_identity,
    verify_signer,
)
from adapter.edxml import build_document, sign_edxml, verify_edxml_signature
from adapter.errors import SignatureError
from adapter.xml.safe import parse_untrusted, serialize
from tests.helpers import build_packet
from tests.unit.edxml.test_build_and_sign import document

SIGNING = (Purpose.THADS_PACKET, Purpose.EDXML, Purpose.CHECKPOINT)
KU_SIGN = dict(digital_signature=True, content_commitment=True, key_encipherment=False)


def _cert(pki, stem):
    return load_certificates(pki / f"{stem}.crt")[0]


@pytest.fixture(scope="module")
def anchors(pki):
    return load_certificates(pki / "ca.crt")


def issue(pki, out, stem, *, ku=None, eku=None, ca=False):
    """A certificate under the dev CA with the given usages; returns its identity."""
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca_cert = _cert(pki, "ca")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"test {stem}")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=30))
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             ca_cert.public_key()), False)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
    if ku is not None:
        flags = dict(digital_signature=False, content_commitment=False,
                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                     key_cert_sign=ca, crl_sign=False, encipher_only=False,
                     decipher_only=False)
        b = b.add_extension(x509.KeyUsage(**{**flags, **ku}), True)
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), False)
    cert = b.sign(ca_key, hashes.SHA256())
    (out / f"{stem}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (out / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return load_identity(out / f"{stem}.key", out / f"{stem}.crt")


# ---- the policy table against the dev PKI's own certificates ---------------------------------

@pytest.mark.parametrize(("stem", "allowed"), [
    ("adapter", SIGNING), ("adapter-ec", SIGNING), ("court", SIGNING),
    ("tsa", (Purpose.TSA,)), ("sim", (Purpose.TLS_SERVER,)), ("ca", ())])
def test_each_dev_certificate_serves_exactly_its_purposes(pki, anchors, stem, allowed):
    for purpose in Purpose:
        if purpose in allowed:
            verify_signer(_cert(pki, stem), [], anchors, purpose)
        else:
            with pytest.raises(UntrustedCertificate, match="not trusted"):
                verify_signer(_cert(pki, stem), [], anchors, purpose)


def test_refusals_name_the_certificate_the_purpose_and_the_reason(pki, anchors):
    with pytest.raises(UntrustedCertificate) as ei:
        verify_signer(_cert(pki, "tsa"), [], anchors, Purpose.EDXML)
    msg = str(ei.value)
    assert "THADS dev timestamp authority" in msg and "edXML signer" in msg
    assert "ExtendedKeyUsage (timeStamping)" in msg and "encountered" not in msg


@pytest.mark.parametrize(("ku", "eku", "ok"), [
    (dict(key_encipherment=True), None, False),               # no signing key usage
    (None, None, False),                                        # no KeyUsage at all
    (dict(content_commitment=True), None, True),                # nonRepudiation alone
    (KU_SIGN, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.TIME_STAMPING], False),
    (KU_SIGN, [ExtendedKeyUsageOID.OCSP_SIGNING], False),
    (KU_SIGN, [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION], True),
    (KU_SIGN, [x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")], True),  # documentSigning
])
def test_signing_rule(pki, tmp_path, anchors, ku, eku, ok):
    ident = issue(pki, tmp_path, "s", ku=ku, eku=eku)
    for purpose in SIGNING:
        if ok:
            verify_signer(ident.cert, [], anchors, purpose)
        else:
            with pytest.raises(UntrustedCertificate):
                verify_signer(ident.cert, [], anchors, purpose)


# ---- packets signed with the wrong key of the right CA ---------------------------------------

@pytest.mark.parametrize("stem", ["tsa", "sim"])
def test_a_judgment_signed_with_the_tsa_or_tls_server_key_is_refused(pki, anchors, stem):
    wrong = PacketSigner(load_identity(pki / f"{stem}.key", pki / f"{stem}.crt"))
    data = serialize(wrong.sign(build_packet("judgment")))
    with pytest.raises(SignatureError) as ei:
        PacketVerifier(anchors).verify(data)
    assert ei.value.outcome == "untrusted"
    assert "THADS packet signer" in str(ei.value)
    # the court's own key, same CA, same packet: accepted (the refusal was the purpose)
    court = PacketSigner(load_identity(pki / "court.key", pki / "court.crt"))
    PacketVerifier(anchors).verify(serialize(court.sign(build_packet("judgment"))))


@pytest.mark.parametrize("stem", ["tsa", "sim"])
def test_an_edxml_document_signed_with_the_tsa_or_tls_server_key_is_untrusted(pki, anchors,
                                                                            stem):
    wrong = load_identity(pki / f"{stem}.key", pki / f"{stem}.crt")
    root = parse_untrusted(serialize(sign_edxml(build_document(document()), wrong)))
    out = verify_edxml_signature(root, anchors)
    assert out.outcome == "untrusted" and "edXML signer" in out.detail


def test_edxml_signer_without_signing_key_usage_is_untrusted(pki, tmp_path, anchors):
    """edXML signers were held to no key-usage rule at all (issue 8/9: by accident)."""
    ident = issue(pki, tmp_path, "enc", ku=dict(key_encipherment=True))
    out = verify_edxml_signature(parse_untrusted(serialize(
        sign_edxml(build_document(document()), ident))), anchors)
    assert out.outcome == "untrusted" and "KeyUsage" in out.detail


def _checkpoint_row(ident):
    import datetime as dt

    from adapter.audit.checkpoint import sign_statement, statement
    at = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()  # the certificates' time
    text = statement(7, "ab" * 32, at)
    pem = ident.cert.public_bytes(serialization.Encoding.PEM).decode()
    return dict(seq=7, tip_hash="ab" * 32, at=at, statement=text,
                signature=sign_statement(ident, text), cert_pem=pem)


def test_a_checkpoint_signed_with_the_tsa_key_is_forged(pki, anchors):
    from adapter.audit.verify import _check_signature
    own = load_identity(pki / "adapter.key", pki / "adapter.crt")
    tsa = load_identity(pki / "tsa.key", pki / "tsa.crt")
    assert _check_signature(_checkpoint_row(own), (own.cert,), anchors) is None
    # not our certificate: the pin refuses it
    problem = _check_signature(_checkpoint_row(tsa), (own.cert,), anchors)
    assert problem and "not by the adapter's own checkpoint certificate" in problem
    # even configured as one of ours, a timestamping certificate may not sign checkpoints
    problem = _check_signature(_checkpoint_row(tsa), (own.cert, tsa.cert), anchors)
    assert problem and "may not sign checkpoints" in problem
    assert "evidence checkpoint signer" in problem


# ---- a peer's signer matched to the peer, not only to its CA ---------------------------------

def test_pin_by_subject_or_certificate(pki, anchors):
    court, adapter = _cert(pki, "court"), _cert(pki, "adapter")
    by_subject = SignerPin.of([court.subject.rfc4514_string()], owner="peer court")
    verify_signer(court, [], anchors, Purpose.THADS_PACKET, pin=by_subject)
    with pytest.raises(UntrustedCertificate, match="not a signer configured for peer court"):
        verify_signer(adapter, [], anchors, Purpose.THADS_PACKET, pin=by_subject)
    by_cert = SignerPin.of(certificates=[court])
    verify_signer(court, [], anchors, Purpose.EDXML, pin=by_cert)
    with pytest.raises(UntrustedCertificate):
        verify_signer(adapter, [], anchors, Purpose.EDXML, pin=by_cert)
    assert not SignerPin.of()  # nothing configured: nothing pinned


def test_another_peers_signer_under_the_same_ca_is_untrusted(pki, anchors):
    """Both the court and the adapter chain to the dev CA; only the court signs for the
    court."""
    pin = SignerPin.of(["CN=Toa an nhan dan (dev court signer),O=THADS adapter development,"
                        "C=VN"], owner="peer toa-an")
    verifier = PacketVerifier(anchors, pin=pin)
    court = PacketSigner(load_identity(pki / "court.key", pki / "court.crt"))
    verifier.verify(serialize(court.sign(build_packet("judgment"))))
    other = PacketSigner(load_identity(pki / "adapter.key", pki / "adapter.crt"))
    with pytest.raises(SignatureError) as ei:
        verifier.verify(serialize(other.sign(build_packet("judgment"))))
    assert ei.value.outcome == "untrusted" and "peer toa-an" in str(ei.value)
    # edXML: the same pin through verify_edxml_signature
    ident = load_identity(pki / "adapter.key", pki / "adapter.crt")
    root = parse_untrusted(serialize(sign_edxml(build_document(document()), ident)))
    assert verify_edxml_signature(root, anchors).outcome == "valid"
    assert verify_edxml_signature(root, anchors, pin=pin).outcome == "untrusted"


def test_malformed_subject_is_refused():
    with pytest.raises(ValueError, match="RFC 4514"):
        SignerPin.of(["CN=x,,=y"])


def test_peer_configuration_names_its_signers(pki, tmp_path, anchors):
    from adapter.config import PeerSection
    from adapter.crypto.trust import peer_pin

    court = _cert(pki, "court")
    peer = PeerSection(name="toa-an", organisation_ids=["000.00.00.T01"],
                       trust_anchors=[str(pki / "ca.crt")],
                       signer_subjects=["CN=nobody,C=VN"],
                       signer_certificates=[str(pki / "court.crt")])
    pin = peer_pin(peer, lambda p: tmp_path / p)  # absolute paths resolve to themselves
    verify_signer(court, [], anchors, Purpose.THADS_PACKET, pin=pin)
    with pytest.raises(UntrustedCertificate, match="peer toa-an"):
        verify_signer(_cert(pki, "adapter"), [], anchors, Purpose.THADS_PACKET, pin=pin)
    bare = PeerSection(name="x", organisation_ids=["000.00.00.T01"], trust_anchors=["a"])
    assert peer_pin(bare, lambda p: tmp_path / p) is None
    with pytest.raises(ValueError, match="RFC 4514"):
        PeerSection(name="x", organisation_ids=["000.00.00.T01"], trust_anchors=["a"],
                    signer_subjects=["not a name"])
