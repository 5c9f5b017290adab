"""The partner kit (schemas/thads/examples/, docs/partner-guide.md) is true to the adapter.

A partner builds and checks packets from the examples and the guide alone, so each example
must be valid, each signed one must verify against the committed CA only, and the guide must
name every operation and fault code the partner can meet.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import unicodedata
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from adapter.cli.main import main
from adapter.crypto import PacketVerifier, load_certificates
from adapter.crypto.constants import DSIG_NS
from adapter.errors import SignatureError
from adapter.mapping import packet_id
from adapter.mapping.engine import PACKET_NAMESPACE
from tests.fixtures.make_partner_examples import (
    CA_FILE,
    EXAMPLES,
    KINDS,
    file_name,
    readable,
    unsigned_packets,
)

ROOT = Path(__file__).resolve().parents[3]
NS = "urn:thads-adapter:exchange:1"
N = f"{{{NS}}}"
DS = f"{{{DSIG_NS}}}"
GUIDE = ROOT / "docs" / "partner-guide.md"
CONFIG = ROOT / "config" / "adapter.toml"
ALL = [(k, s) for k in KINDS for s in (False, True)]


def example(kind: str, signed: bool) -> Path:
    return EXAMPLES / file_name(kind, signed)


#: the XSD file a partner validates each kind with, and its root element
SCHEMA_OF = {"case": "exchange.xsd", "receipt": "exchange.xsd", "judgment": "exchange.xsd",
             "debtor": "debtor.xsd"}
ROOT_OF = {"case": "Case", "receipt": "Receipt", "judgment": "Judgment",
           "debtor": "DebtorEntry"}


@pytest.fixture(scope="module")
def xsd() -> dict[str, etree.XMLSchema]:
    # plain lxml, as a partner would: no code of ours between the schema and the file
    return {f: etree.XMLSchema(etree.parse(str(ROOT / "schemas" / "thads" / f)))
            for f in set(SCHEMA_OF.values())}


def test_every_kind_of_the_kit_names_its_xsd_file_and_root():
    assert set(SCHEMA_OF) == set(ROOT_OF) == set(KINDS)


@pytest.fixture(scope="module")
def ca() -> list[x509.Certificate]:
    return load_certificates(EXAMPLES / CA_FILE)


def business_data(path: Path) -> bytes:
    """Canonical form of a packet without its signature and layout whitespace."""
    root = etree.parse(str(path), etree.XMLParser(remove_blank_text=True)).getroot()
    for sig in root.findall(f"{DS}Signature"):
        root.remove(sig)
    return etree.tostring(root, method="c14n")


def tamper(data: bytes, kind: str) -> bytes:
    """One character of the signed business data changed: the first digit of an amount."""
    m = re.search(rb"<Amount>(\d)", data)
    assert m, f"{kind}: no Amount to change"
    digit = b"1" if m.group(1) != b"1" else b"2"
    return data[:m.start(1)] + digit + data[m.end(1):]


@pytest.mark.parametrize(("kind", "signed"), ALL)
def test_every_example_is_valid_against_the_xsd(xsd, kind, signed):
    doc = etree.parse(str(example(kind, signed)))
    schema = xsd[SCHEMA_OF[kind]]
    assert schema.validate(doc), [str(e) for e in schema.error_log]
    assert doc.getroot().tag == N + ROOT_OF[kind]
    has_sig = doc.getroot().find(f"{DS}Signature") is not None
    assert has_sig is signed


@pytest.mark.parametrize(("kind", "signed"), ALL)
def test_text_is_nfc_and_the_ids_follow_the_documented_rule(kind, signed):
    root = etree.parse(str(example(kind, signed))).getroot()
    for el in root.iter():
        for text in (el.text, *el.attrib.values()):
            assert text is None or unicodedata.is_normalized("NFC", text), (el.tag, text)
    h = {etree.QName(c).localname: c.text for c in root.find(f"{N}Header")}
    assert h["PacketId"] == packet_id(kind, h["SourceKey"], int(h["Version"]))
    assert root.get("Id") == f"pkt-{h['PacketId']}"


@pytest.mark.parametrize("kind", KINDS)
def test_unsigned_and_signed_carry_the_same_business_data(ca, kind):
    plain = business_data(example(kind, False))
    assert plain == business_data(example(kind, True))
    # and that is exactly what the signature covers
    verified = PacketVerifier(ca).verify(example(kind, True).read_bytes())
    assert etree.tostring(verified.root, method="c14n") == plain


def test_unsigned_examples_are_what_the_adapter_builds_from_the_demo_data():
    """Regenerating gives the same bytes: a mapping change that alters packets shows here,
    and the kit must then be regenerated (docs/partner-guide.md says how)."""
    for kind, root in unsigned_packets().items():
        assert readable(root) == example(kind, False).read_bytes(), kind


@pytest.mark.parametrize("kind", KINDS)
def test_cli_verifies_each_signed_example_with_the_committed_ca(tmp_path, capsys, kind):
    ca = str(EXAMPLES / CA_FILE)
    assert main(["--config", str(CONFIG), "packet", "verify", "--ca", ca,
                 str(example(kind, True))]) == 0
    assert "signature valid" in capsys.readouterr().out
    bad = tmp_path / "tampered.xml"
    bad.write_bytes(tamper(example(kind, True).read_bytes(), kind))
    assert main(["--config", str(CONFIG), "packet", "verify", "--ca", ca, str(bad)]) == 1
    assert "digest mismatch" in capsys.readouterr().out


@pytest.mark.parametrize("kind", KINDS)
def test_a_changed_vietnamese_letter_breaks_the_signature(ca, kind):
    data = example(kind, True).read_bytes()
    changed = data.replace("ân".encode(), "ấn".encode(), 1)  # one letter, other bytes
    assert changed != data
    with pytest.raises(SignatureError, match="digest mismatch"):
        PacketVerifier(ca).verify(changed)


def test_the_examples_hold_no_private_key_and_one_public_ca():
    for path in EXAMPLES.iterdir():
        assert b"PRIVATE KEY" not in path.read_bytes(), path
    certs = load_certificates(EXAMPLES / CA_FILE)
    assert len(certs) == 1
    bc = certs[0].extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca
    assert certs[0].extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


@pytest.mark.parametrize("kind", KINDS)
def test_signer_certificates_meet_the_documented_profile(ca, kind):
    leaf = PacketVerifier(ca).verify(example(kind, True).read_bytes()).signer
    ext = leaf.extensions
    assert not ext.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert leaf.issuer == ca[0].subject
    # long-lived on purpose (see NOT_AFTER in the generator): years of margin, not months
    margin = leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert margin > dt.timedelta(days=2 * 365), "regenerate the partner kit (partner-guide.md)"


def test_an_unsigned_example_is_refused_as_unsigned(ca):
    with pytest.raises(SignatureError) as exc:
        PacketVerifier(ca).verify(example("case", False).read_bytes())
    assert exc.value.outcome == "absent"


def test_signing_the_unsigned_example_gives_a_valid_packet(pki):
    """A partner may sign the indented example as it is: layout whitespace is data too,
    but any signed, valid packet is accepted."""
    from adapter.crypto import PacketSigner, load_identity

    signer = PacketSigner(load_identity(pki / "adapter.key", pki / "adapter.crt"))
    root = etree.parse(str(example("receipt", False))).getroot()
    signed = etree.tostring(signer.sign(copy.deepcopy(root)))
    result = PacketVerifier(load_certificates(pki / "ca.crt")).verify(signed)
    assert result.root.findtext(f"{N}ReceiptId") == root.findtext(f"{N}ReceiptId")


# ---- the guide names what a partner meets ----------------------------------------------


def test_guide_lists_every_wsdl_operation_with_its_messages():
    wsdl = etree.parse(str(ROOT / "schemas" / "wsdl" / "lgsp.wsdl"))
    ops = wsdl.findall("{http://schemas.xmlsoap.org/wsdl/}portType/"
                       "{http://schemas.xmlsoap.org/wsdl/}operation")
    guide = GUIDE.read_text(encoding="utf-8")
    assert len(ops) >= 6
    for op in ops:
        name = op.get("name")
        assert f"`{name}`" in guide, name
        assert f"urn:thads-adapter:lgsp:1:{name}" in guide, f"soapAction of {name}"
    for element in wsdl.getroot().iter("{http://www.w3.org/2001/XMLSchema}element"):
        if element.getparent().tag.endswith("}schema"):  # top-level request/response
            assert element.get("name") in guide, element.get("name")


def test_guide_explains_every_fault_code_the_platform_and_adapter_use():
    src = (ROOT / "adapter" / "sim" / "app.py").read_text(encoding="utf-8")
    codes = set(re.findall(r'(?:Refusal\(|_fault\(start_response, "(?:Client|Server)", )'
                           r'"([A-Z_]+)"', src))
    codes |= {f"SIGNATURE_{o.upper()}" for o in ("invalid", "absent", "untrusted")}
    codes |= set(re.findall(r'"([A-Z_]{4,})"\)', (ROOT / "adapter" / "transports" /
                                                  "lgsp.py").read_text(encoding="utf-8")))
    assert {"MALFORMED", "SCHEMA_INVALID", "BUSINESS_REJECTED", "NOT_FOUND"} <= codes
    guide = GUIDE.read_text(encoding="utf-8")
    for code in sorted(codes):
        assert f"`{code}`" in guide, code


def test_guide_states_the_packet_id_namespace():
    guide = GUIDE.read_text(encoding="utf-8")
    assert str(PACKET_NAMESPACE) in guide
    # the worked example in the guide is the committed case example
    root = etree.parse(str(example("case", False))).getroot()
    assert root.findtext(f"{N}Header/{N}PacketId") in guide
