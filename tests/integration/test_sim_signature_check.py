"""The simulator's own signature check (adapter/sim/dsig.py) against the adapter's signxml
verifier, case by case: every packet one accepts the other accepts, with the same signed
content; every packet one refuses the other refuses, with the same outcome. The hostile
cases are those of the verifier tests and PITFALLS.md, plus what an attacker would try on
the parts the simulator now reads by hand (SignedInfo, KeyInfo, transforms)."""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess
from collections.abc import Callable

import pytest
from lxml import etree

from adapter.crypto import PacketSigner, PacketVerifier, load_certificates, load_identity
from adapter.crypto.constants import DSIG_NS
from adapter.crypto.sign import SignxmlSigner
from adapter.errors import SignatureError, UnsafeXmlError
from adapter.sim.dsig import PlatformSignatureCheck
from adapter.xml.safe import parse_untrusted, serialize
from tests.helpers import NS, N, build_packet
from tests.integration.test_xmlsec1_interop import TEMPLATE

DS = f"{{{DSIG_NS}}}"
XMLSEC1 = shutil.which("xmlsec1")


@pytest.fixture(scope="module")
def both(pki):
    anchors = load_certificates(pki / "ca.crt")
    return PacketVerifier(anchors), PlatformSignatureCheck(anchors)


@pytest.fixture(scope="module")
def rsa(pki):
    return PacketSigner(load_identity(pki / "adapter.key", pki / "adapter.crt"))


def verdict(check, data: bytes):
    """("ok", canonical signed bytes) or ("refused", outcome)."""
    try:
        root = check.verify(data).root
    except SignatureError as exc:
        return "refused", exc.outcome
    except UnsafeXmlError:
        return "refused", "unsafe"
    return "ok", etree.tostring(root, method="c14n", exclusive=True)


def tree_edit(edit: Callable[[etree._Element], None]) -> Callable[[bytes], bytes]:
    def apply(data: bytes) -> bytes:
        root = parse_untrusted(data)
        edit(root)
        return serialize(root)
    return apply


def sig_of(root):
    return root.find(f"{DS}Signature")


def _wrap(root):
    forged = build_packet("case", key="FORGED")
    forged.append(copy.deepcopy(root))
    root.clear()
    root.tag, root.text = forged.tag, None
    root.attrib.update(forged.attrib)
    root.extend(list(forged))


def _moved(root):
    forged = build_packet("case", key="FORGED")
    forged.append(copy.deepcopy(sig_of(root)))
    _replace(root, forged)


def _replace(root, other):
    root.clear()
    root.attrib.update(other.attrib)
    root.extend(list(other))


def _same_id(root):
    evil = copy.deepcopy(root)
    evil.remove(sig_of(evil))
    evil.find(f"{N}Officer").text = "Forger"
    root.find(f"{N}Parties").append(evil)


def _set(path: str, attr: str | None, value: str):
    def edit(root):
        el = sig_of(root).find(path)
        if attr:
            el.set(attr, value)
        else:
            el.text = value
    return edit


def _flip_signature_value(root):
    el = sig_of(root).find(f"{DS}SignatureValue")
    raw = bytearray(base64.b64decode(el.text))
    raw[10] ^= 1
    el.text = base64.b64encode(bytes(raw)).decode()


def _second_signature(root):
    root.append(copy.deepcopy(sig_of(root)))


def _unknown_child(root):
    etree.SubElement(sig_of(root).find(f"{DS}SignedInfo"), f"{DS}Bogus")


def _key_value(root, modulus: int):
    kv = etree.SubElement(sig_of(root).find(f"{DS}KeyInfo"), f"{DS}KeyValue")
    rk = etree.SubElement(kv, f"{DS}RSAKeyValue")
    etree.SubElement(rk, f"{DS}Modulus").text = base64.b64encode(
        modulus.to_bytes((modulus.bit_length() + 7) // 8, "big")).decode()
    etree.SubElement(rk, f"{DS}Exponent").text = "AQAB"


def _comment_in_text(root):
    officer = root.find(f"{N}Officer")
    officer.text, tail = officer.text[:3], officer.text[3:]
    officer.append(etree.Comment(" not signed "))
    officer[-1].tail = tail


def _tail_after_signature(root):
    sig_of(root).tail = "\n"


def _garbage_certificate(root):
    sig_of(root).find(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate").text = "AAAA"


def _no_namespace_signature(root):
    sig = sig_of(root)
    for el in sig.iter():
        el.tag = f"{N}{etree.QName(el).localname}"


HOSTILE: dict[str, Callable[[bytes], bytes]] = {
    "unchanged": lambda d: d,
    "one character changed": lambda d: d.replace(b"<Officer>", b"<Officer>X", 1),
    "unsigned": lambda d: serialize(build_packet("case")),
    "wrapped under a forged root": tree_edit(_wrap),
    "signature moved onto a forged root": tree_edit(_moved),
    "second element with the same Id": tree_edit(_same_id),
    "SignatureValue changed": tree_edit(_flip_signature_value),
    "DigestValue changed": tree_edit(_set(f"{DS}SignedInfo/{DS}Reference/{DS}DigestValue",
                                          None, base64.b64encode(b"\0" * 32).decode())),
    "Reference to the empty URI": tree_edit(_set(f"{DS}SignedInfo/{DS}Reference", "URI", "")),
    "rsa-sha1 named": tree_edit(_set(f"{DS}SignedInfo/{DS}SignatureMethod", "Algorithm",
                                     "http://www.w3.org/2000/09/xmldsig#rsa-sha1")),
    "sha1 digest named": tree_edit(_set(
        f"{DS}SignedInfo/{DS}Reference/{DS}DigestMethod", "Algorithm",
        "http://www.w3.org/2000/09/xmldsig#sha1")),
    "inclusive c14n named": tree_edit(_set(
        f"{DS}SignedInfo/{DS}CanonicalizationMethod", "Algorithm",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315")),
    "two signatures": tree_edit(_second_signature),
    "unknown element in SignedInfo": tree_edit(_unknown_child),
    "KeyValue of another key": tree_edit(lambda r: _key_value(r, 2**2047 + 12345)),
    "comment inside signed text": tree_edit(_comment_in_text),
    "whitespace added after the Signature": tree_edit(_tail_after_signature),
    "garbage certificate": tree_edit(_garbage_certificate),
    "Signature outside the XML-DSig namespace": tree_edit(_no_namespace_signature),
    "DOCTYPE": lambda d: b'<!DOCTYPE x [<!ENTITY e "x">]>' + d.split(b"?>", 1)[-1],
}


@pytest.mark.parametrize("signer_kind", ["profile", "signxml"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_the_simulator_decides_as_the_signxml_verifier(both, pki, case, signer_kind):
    identity = load_identity(pki / "adapter.key", pki / "adapter.crt")
    signer = PacketSigner(identity) if signer_kind == "profile" else SignxmlSigner(identity)
    data = HOSTILE[case](serialize(signer.sign(build_packet("case"))))
    reference, platform = both
    expected = verdict(reference, data)
    assert verdict(platform, data) == expected
    if case in ("unchanged", "comment inside signed text"):
        assert expected[0] == "ok"
    else:
        assert expected[0] == "refused", case


def test_what_the_simulator_reads_is_what_was_signed(both, rsa):
    data = tree_edit(_comment_in_text)(serialize(rsa.sign(build_packet("case"))))
    root = both[1].verify(data).root
    assert root.find(f"{DS}Signature") is None
    assert not list(root.iter(etree.Comment))
    assert root.findtext(f"{N}Officer") == build_packet("case").findtext(f"{N}Officer")


def test_untrusted_signer_and_ecdsa(both, pki):
    rogue = PacketSigner(load_identity(pki / "untrusted" / "signer.key",
                                       pki / "untrusted" / "signer.crt"))
    data = serialize(rogue.sign(build_packet("case")))
    assert verdict(both[1], data) == verdict(both[0], data) == ("refused", "untrusted")
    ec = PacketSigner(load_identity(pki / "adapter-ec.key", pki / "adapter-ec.crt"),
                      "ecdsa-sha256")
    data = serialize(ec.sign(build_packet("receipt")))
    assert verdict(both[1], data)[0] == "ok"
    assert verdict(both[1], data) == verdict(both[0], data)
    # an RSA certificate cannot carry an ECDSA signature, nor the reverse
    mixed = data.replace(b"ecdsa-sha256", b"rsa-sha256")
    assert verdict(both[1], mixed) == verdict(both[0], mixed) == ("refused", "invalid")


def test_a_chain_verdict_is_not_kept_for_another_certificate(both, pki):
    """The cache is per certificate list: a trusted signer's verdict never covers a rogue."""
    good = PacketSigner(load_identity(pki / "adapter.key", pki / "adapter.crt"))
    rogue = PacketSigner(load_identity(pki / "untrusted" / "signer.key",
                                       pki / "untrusted" / "signer.crt"))
    assert verdict(both[1], serialize(good.sign(build_packet("case"))))[0] == "ok"
    assert verdict(both[1], serialize(rogue.sign(build_packet("case")))) == \
        ("refused", "untrusted")


@pytest.mark.xmlsec1
@pytest.mark.parametrize("tail", ["", "\n"])
def test_xmlsec1_template_signatures_pass(tmp_path, pki, both, tail):
    """A template signer leaves whitespace after the Signature: it stays in the digest."""
    assert XMLSEC1, "xmlsec1 is required (make test installs it)"
    root = build_packet("case")
    tmpl = serialize(root).decode().replace(
        "</Case>", TEMPLATE.format(id=root.get("Id")) + tail + "</Case>")
    (tmp_path / "tmpl.xml").write_text(tmpl, encoding="utf-8")
    out = tmp_path / "signed.xml"
    subprocess.run([XMLSEC1, "--sign", "--privkey-pem",
                    f"{pki / 'adapter.key'},{pki / 'adapter.crt'}", "--id-attr:Id",
                    f"{NS}:Case", "--output", str(out), str(tmp_path / "tmpl.xml")],
                   check=True, capture_output=True)
    data = out.read_bytes()
    assert verdict(both[1], data)[0] == "ok"
    assert verdict(both[1], data) == verdict(both[0], data)


def test_a_signature_outside_the_xmldsig_schema_is_a_signature_error_naming_it(both, rsa):
    """signxml's schema check raised lxml's DocumentInvalid through the verifier; it is a
    SignatureError like every other refusal, so the packet is refused with the reason."""
    verifier, _ = both
    data = HOSTILE["unknown element in SignedInfo"](serialize(rsa.sign(build_packet("case"))))
    with pytest.raises(SignatureError, match="does not follow the XML-DSig schema"):
        verifier.verify(data)
