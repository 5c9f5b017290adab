"""Signing and pinned verification, including the attacks PITFALLS.md lists."""

import copy
import unicodedata

import pytest
from lxml import etree

from adapter.crypto import PacketSigner, PacketVerifier, load_certificates, load_identity
from adapter.crypto.constants import DSIG_NS
from adapter.crypto.sign import SignxmlSigner
from adapter.errors import SignatureError
from adapter.xml.safe import parse_untrusted, serialize
from tests.helpers import N, build_packet

DS = f"{{{DSIG_NS}}}"


@pytest.fixture(scope="module", params=["profile", "signxml"])
def signer(pki, request):
    """Every case runs on the profile signer's output and on signxml's (its reference)."""
    cls = PacketSigner if request.param == "profile" else SignxmlSigner
    return cls(load_identity(pki / "adapter.key", pki / "adapter.crt"))


@pytest.fixture(scope="module")
def verifier(pki):
    return PacketVerifier(load_certificates(pki / "ca.crt"))


@pytest.fixture
def signed(signer) -> bytes:
    return serialize(signer.sign(build_packet("case")))


def test_signature_is_enveloped_references_the_id_and_uses_the_profile(signed):
    root = parse_untrusted(signed)
    sig = root[-1]
    assert sig.tag == f"{DS}Signature"
    ref = sig.find(f"{DS}SignedInfo/{DS}Reference")
    assert ref.get("URI") == f"#{root.get('Id')}"
    algs = [e.get("Algorithm") for e in sig.iter() if e.get("Algorithm")]
    assert "http://www.w3.org/2001/10/xml-exc-c14n#" in algs
    assert "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" in algs
    assert "http://www.w3.org/2001/04/xmlenc#sha256" in algs
    assert sig.find(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate") is not None


def test_valid_signature_returns_only_the_signed_data(verifier, signed):
    result = verifier.verify(signed)
    assert "THADS exchange adapter" in result.signer_subject
    assert result.root.tag == f"{N}Case"
    assert result.root.find(f"{DS}Signature") is None  # the enveloped signature is removed


def test_one_changed_character_breaks_the_signature(verifier, signed):
    tampered = signed.replace(b"<Officer>", b"<Officer>X", 1)
    assert tampered != signed
    with pytest.raises(SignatureError, match="digest mismatch|invalid"):
        verifier.verify(tampered)


def test_unsigned_packet_is_reported_absent(verifier):
    with pytest.raises(SignatureError) as ei:
        verifier.verify(serialize(build_packet("case")))
    assert ei.value.outcome == "absent"


def test_wrapping_under_a_forged_root_is_refused(verifier, signed):
    genuine = parse_untrusted(signed)
    forged = build_packet("case", key="FORGED")
    forged.append(genuine)  # the genuinely signed packet hidden inside the forger's root
    with pytest.raises(SignatureError, match="direct child|wrapping"):
        verifier.verify(serialize(forged))


def test_signature_moved_onto_a_forged_root_is_refused(verifier, signed):
    genuine = parse_untrusted(signed)
    sig = genuine[-1]
    forged = build_packet("case", key="FORGED")
    forged.append(copy.deepcopy(sig))
    with pytest.raises(SignatureError, match="must reference the packet root"):
        verifier.verify(serialize(forged))


def test_second_element_with_the_same_id_is_refused(verifier, signed):
    root = parse_untrusted(signed)
    evil = copy.deepcopy(root)
    evil.remove(evil[-1])
    evil.find(f"{N}Officer").text = "Forger"
    holder = root.find(f"{N}Parties")
    holder.append(evil)
    with pytest.raises(SignatureError, match="ambiguous|occurs 2 times"):
        verifier.verify(serialize(root))


def test_signer_outside_the_trust_anchors_is_untrusted(pki, verifier):
    rogue = PacketSigner(load_identity(pki / "untrusted" / "signer.key",
                                       pki / "untrusted" / "signer.crt"))
    data = serialize(rogue.sign(build_packet("case")))
    with pytest.raises(SignatureError) as ei:
        verifier.verify(data)
    assert ei.value.outcome == "untrusted"
    # the same packet verifies when its CA is configured: the refusal was about trust.
    PacketVerifier(load_certificates(pki / "untrusted" / "ca.crt")).verify(data)


def test_text_is_signed_in_nfc(signer, verifier):
    root = build_packet("case")
    root.find(f"{N}Officer").text = unicodedata.normalize("NFD", "Nguyễn Văn Hùng")
    data = serialize(signer.sign(root))
    result = verifier.verify(data)
    assert result.root.findtext(f"{N}Officer") == unicodedata.normalize("NFC", "Nguyễn Văn Hùng")
    # a receiver that sees NFD bytes where we signed NFC must fail: the digests differ.
    nfd = data.replace("Nguyễn Văn Hùng".encode(),
                       unicodedata.normalize("NFD", "Nguyễn Văn Hùng").encode())
    assert nfd != data
    with pytest.raises(SignatureError):
        verifier.verify(nfd)


def test_ecdsa_p256_signatures_verify(pki, verifier):
    ec = PacketSigner(load_identity(pki / "adapter-ec.key", pki / "adapter-ec.crt"),
                      "ecdsa-sha256")
    data = serialize(ec.sign(build_packet("receipt")))
    assert b"ecdsa-sha256" in data
    assert verifier.verify(data).root.tag == f"{N}Receipt"


def test_signature_survives_embedding_in_an_envelope(verifier, signed):
    env = etree.fromstring(b"<Envelope xmlns='urn:x' xmlns:p='urn:p'><Body/></Envelope>")
    env[0].append(parse_untrusted(signed))
    inner = env[0][0]
    # serialising the embedded element carries the outer namespace; exclusive c14n ignores it
    assert verifier.verify(etree.tostring(inner)).root.get("Id") == inner.get("Id")


def test_keys_are_loaded_once_per_process(pki):
    a = load_identity(pki / "adapter.key", pki / "adapter.crt")
    b = load_identity(pki / "adapter.key", pki / "adapter.crt")
    assert a is b and a.key is b.key


def test_key_not_matching_certificate_is_a_config_error(pki):
    from adapter.errors import ConfigError
    with pytest.raises(ConfigError, match="does not match"):
        load_identity(pki / "adapter.key", pki / "sim.crt")
