"""The profile signer (PacketSigner) proven against signxml: same bytes for every demo packet
kind (RSA PKCS#1 v1.5 is deterministic), verified by our verifier; xmlsec1 interop is in
tests/integration/test_xmlsec1_interop.py and the hostile cases in test_sign_verify.py run
against both signers."""

import re
import unicodedata

import pytest
from lxml import etree

from adapter.crypto import PacketVerifier, load_certificates, load_identity
from adapter.crypto.sign import PacketSigner, SignxmlSigner
from adapter.errors import ConfigError, PacketError
from adapter.kinds import KINDS as REGISTRY
from tests.helpers import N, build_packet, root_of, sample_record

KINDS = [spec.name for spec in REGISTRY.mapped()]


@pytest.fixture(scope="module")
def ident(pki):
    return load_identity(pki / "adapter.key", pki / "adapter.crt")


@pytest.fixture(scope="module")
def verifier(pki):
    return PacketVerifier(load_certificates(pki / "ca.crt"))


def test_every_demo_kind_is_covered():
    assert {"case", "receipt", "judgment"} <= set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("i", [1, 2, 3, 17, 40])
def test_same_bytes_as_signxml_for_every_demo_packet(ident, verifier, kind, i):
    new, ref = PacketSigner(ident), SignxmlSigner(ident)
    record = sample_record(kind, i)
    ours = new.sign_bytes(build_packet(kind, record, key=f"K-{i}"))
    theirs = ref.sign_bytes(build_packet(kind, record, key=f"K-{i}"))
    assert ours == theirs
    assert verifier.verify(ours).root.tag == root_of(kind)
    # the tree form says the same
    assert etree.tostring(new.sign(build_packet(kind, record, key=f"K-{i}"))) == \
        etree.tostring(ref.sign(build_packet(kind, record, key=f"K-{i}")))


def test_same_bytes_with_nfd_text_and_a_certificate_chain(pki, verifier):
    """NFC normalisation before the digest, and every chain certificate in X509Data."""
    ident = load_identity(pki / "adapter.key", pki / "adapter.crt", [pki / "ca.crt"])

    def packet():
        root = build_packet("case")
        root.find(f"{N}Officer").text = unicodedata.normalize("NFD", "Nguyễn Văn Hùng")
        return root

    ours = PacketSigner(ident).sign_bytes(packet())
    assert ours == SignxmlSigner(ident).sign_bytes(packet())
    assert ours.count(b"<ds:X509Certificate>") == 2
    assert "Nguyễn Văn Hùng".encode() in ours
    verifier.verify(ours)


def test_same_bytes_through_the_pipeline_builder(settings):
    """The builder the outbound pipeline uses signs with the profile signer, and its
    payload is what signxml would have written."""
    import datetime as dt

    from adapter.engine.build import PacketBuilder
    from adapter.mapping import PacketHeader, packet_id
    from adapter.sources.changes import SourceCursor, SourceRecord

    builder = PacketBuilder(settings)
    assert isinstance(builder.signer, PacketSigner)
    now = dt.datetime(2026, 3, 1, 2, 30, tzinfo=dt.UTC)
    ref = SignxmlSigner(builder.identity)
    for kind in KINDS:
        if kind == "judgment":  # received, never built by the outbound pipeline
            continue
        rec = SourceRecord(kind, "K-9", 1, SourceCursor(now, 1), sample_record(kind, 9))
        built = builder.build(rec, "000.00.00.G22", now)
        assert built.error is None, built.error
        pid = packet_id(kind, "K-9", 1)
        tree = builder.mappings[kind].to_xml(
            sample_record(kind, 9),
            PacketHeader(pid, "K-9", 1, builder.sender, "000.00.00.G22", now))
        assert built.payload == ref.sign_bytes(tree)


def test_ecdsa_signature_verifies_and_differs_only_in_its_value(pki, verifier):
    ident = load_identity(pki / "adapter-ec.key", pki / "adapter-ec.crt")
    ours = PacketSigner(ident, "ecdsa-sha256").sign_bytes(build_packet("receipt"))
    theirs = SignxmlSigner(ident, "ecdsa-sha256").sign_bytes(build_packet("receipt"))
    verifier.verify(ours)
    value = re.compile(rb"<ds:SignatureValue>([^<]*)</ds:SignatureValue>")
    assert len(value.search(ours).group(1)) == len(value.search(theirs).group(1)) == 88  # r||s
    assert value.sub(b"", ours) == value.sub(b"", theirs)
    tampered = ours.replace(b"<Collector>", b"<Collector>X", 1)
    assert tampered != ours
    with pytest.raises(PacketError):
        verifier.verify(tampered)


def test_refuses_what_is_not_the_profile(pki, ident):
    signer = PacketSigner(ident)
    root = build_packet("case")
    root.set("Id", "a b")
    with pytest.raises(PacketError, match="not an XML ID"):
        signer.sign_bytes(root)
    del root.attrib["Id"]
    with pytest.raises(PacketError, match="no Id"):
        signer.sign_bytes(root)
    odd = etree.Element(f"{N}Case", nsmap={None: N[1:-1], "ds": "urn:other"}, Id="x1")
    etree.SubElement(odd, f"{N}Header")
    with pytest.raises(PacketError, match="prefix ds"):
        signer.sign_bytes(odd)
    with pytest.raises(ConfigError, match="not an EC key"):
        PacketSigner(ident, "ecdsa-sha256")
    with pytest.raises(ConfigError, match="not in the THADS profile"):
        PacketSigner(ident, "rsa-sha1")
