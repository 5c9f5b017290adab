"""Building, parsing and signing edXML; interop with xmlsec1 in both directions."""

import copy
import shutil
import subprocess
import zipfile
from io import BytesIO

import pytest
from lxml import etree

from adapter.crypto.keys import load_certificates, load_identity
from adapter.edxml import build_document, build_status, parse_edxml, sign_edxml
from adapter.edxml import verify_edxml_signature as verify
from adapter.edxml.model import (
    EDXML_NS,
    Attachment,
    Business,
    EdocDocument,
    Organization,
    ResponseFor,
    StatusPacket,
)
from adapter.errors import PacketError
from adapter.sources.synth import _pdf
from adapter.xml.safe import parse_untrusted, serialize

BTP = Organization("000.00.00.G15", "Bộ Tư pháp", "Bộ Tư pháp", "58-60 Trần Phú, Hà Nội")
VPCP = Organization("000.00.00.G22", "Văn phòng Chính phủ", "", "1 Hoàng Hoa Thám, Hà Nội")
H41 = Organization("000.00.00.H41", "UBND Tỉnh Nghệ An", "", "Số 03 Trường Thi, Vinh")


def document(attachments=None) -> EdocDocument:
    return EdocDocument(
        sender=BTP, recipients=[VPCP, H41], document_id="000.00.00.G15,2026/11/20,125/QĐ-CTHADS",
        code_number="125", code_notation="QĐ-CTHADS", place="Hà Nội",
        promulgation_date="2026/11/20", doc_type="1", type_detail="", type_name="Quyết định",
        subject="Quyết định thi hành án số 125", content="Thi hành bản án 1161/2025/QĐST-DS",
        signer_competence="KT. CỤC TRƯỞNG", signer_position="Phó Cục trưởng",
        signer_name="Nguyễn Văn An", due_date="", priority="1", steering_type="",
        trace=[("000.00.00.G15", "2026/11/20 09:00:00")], business=Business("0"),
        attachments=attachments if attachments is not None else [
            Attachment("cid:1", "quyet-dinh-125.pdf", "Quyết định", "", _pdf("QD 125"), "")])


@pytest.fixture(scope="module")
def ident(pki):
    return load_identity(pki / "adapter.key", pki / "adapter.crt")


@pytest.fixture(scope="module")
def anchors(pki):
    return load_certificates(pki / "ca.crt")


def test_document_round_trip_keeps_fields_and_attachment_bytes(ident, anchors):
    doc = document()
    data = serialize(sign_edxml(build_document(doc), ident))
    sig = verify(parse_untrusted(data), anchors)
    parsed = parse_edxml(data, signature=sig)
    assert sig.outcome == "valid" and parsed.verdict("reject")[0]
    p = parsed.packet
    assert (p.document_id, p.code_number, p.code_notation, p.subject, p.signer_name) == \
        (doc.document_id, doc.code_number, doc.code_notation, doc.subject, doc.signer_name)
    assert [t.organ_id for t in p.recipients] == ["000.00.00.G22", "000.00.00.H41"]
    assert p.attachments[0].data == doc.attachments[0].data
    assert p.attachments[0].detected_type == "application/pdf"


def test_zip_attachment_is_declared_by_its_content(ident):
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.doc", b"x")
    doc = document([Attachment("cid:2", "phu-luc.pdf", "", "application/pdf",
                               buf.getvalue(), "")])
    parsed = parse_edxml(serialize(build_document(doc)))
    (att,) = parsed.packet.attachments
    assert att.declared_type == "application/zip"
    # a one-file zip under another name reads as the official library's zip: unpacked
    assert (att.unpacked_from, att.data) == ("a.doc", b"x")


def test_output_is_strict_about_organisation_ids():
    bad = copy.deepcopy(document())
    bad.recipients = [Organization("28.22.H17", "Sở X", "", "Hà Nội")]
    with pytest.raises(PacketError, match="never sends a malformed one"):
        build_document(bad)


@pytest.mark.parametrize("code", ["01", "02", "03", "04", "05", "06", "13", "15", "16"])
def test_status_packets_round_trip(code):
    st = StatusPacket(BTP, ResponseFor("000.00.00.G22", "7816/VPCP-TTĐT", "2015/09/30",
                                       "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"),
                      code, "Văn thư: đã xử lý", "2026/11/23 10:00:00", {"Staff": "Lê Thị Hoa"})
    parsed = parse_edxml(serialize(build_status(st)))
    assert parsed.kind == "status" and parsed.packet.status_code == code
    assert parsed.packet.staff == {"Staff": "Lê Thị Hoa"}


def test_tampering_breaks_the_edxml_signature(ident, anchors):
    data = serialize(sign_edxml(build_document(document()), ident))
    bad = data.replace("Quyết định thi hành án số 125".encode(),
                       "Quyết định thi hành án số 126".encode())
    out = verify(parse_untrusted(bad), anchors)
    assert out.outcome == "invalid" and "digest mismatch" in out.detail


def test_untrusted_signer_and_sha1_under_default(pki, ident, anchors):
    rogue = load_identity(pki / "untrusted" / "signer.key", pki / "untrusted" / "signer.crt")
    data = serialize(sign_edxml(build_document(document()), rogue))
    assert verify(parse_untrusted(data), anchors).outcome == "untrusted"
    legacy = serialize(sign_edxml(build_document(document()), ident, profile="legacy"))
    assert verify(parse_untrusted(legacy), anchors).outcome == "invalid"
    assert verify(parse_untrusted(legacy), anchors, profile="legacy").outcome == "valid"


def test_signature_without_dsig_namespace_is_recognised_and_checked(ident, anchors):
    root = sign_edxml(build_document(document()), ident)
    for el in root.iter("{http://www.w3.org/2000/09/xmldsig#}*"):
        el.tag = f"{{{EDXML_NS}}}{etree.QName(el).localname}"
    etree.cleanup_namespaces(root)
    out = verify(parse_untrusted(serialize(root)), anchors)
    assert out.in_dsig_namespace is False
    assert out.outcome == "invalid"  # recognised and checked, not mistaken for "absent"


XMLSEC1 = shutil.which("xmlsec1")


@pytest.mark.xmlsec1
@pytest.mark.parametrize("profile", ["default", "legacy"])
def test_our_edxml_signature_passes_xmlsec1(tmp_path, pki, ident, profile):
    assert XMLSEC1, "xmlsec1 is required (make test installs it)"
    f = tmp_path / "doc.edxml"
    f.write_bytes(serialize(sign_edxml(build_document(document()), ident, profile=profile)))
    r = subprocess.run([XMLSEC1, "--verify", "--trusted-pem", str(pki / "ca.crt"), str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    f.write_bytes(f.read_bytes().replace(b"125</edXML:CodeNumber>", b"126</edXML:CodeNumber>"))
    assert subprocess.run([XMLSEC1, "--verify", "--trusted-pem", str(pki / "ca.crt"), str(f)],
                          capture_output=True).returncode != 0


@pytest.mark.xmlsec1
def test_xmlsec1_edxml_signature_passes_our_verifier(tmp_path, pki, anchors):
    assert XMLSEC1, "xmlsec1 is required (make test installs it)"
    root = build_document(document())
    header = root.find(f"{{{EDXML_NS}}}edXMLEnvelope/{{{EDXML_NS}}}edXMLHeader")
    header.append(etree.fromstring(
        b'<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>'
        b'<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
        b'<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>'
        b'<ds:Reference URI=""><ds:Transforms>'
        b'<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
        b'<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>'
        b'<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        b'<ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/>'
        b'<ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>'))
    tmpl, out = tmp_path / "t.edxml", tmp_path / "s.edxml"
    tmpl.write_bytes(serialize(root))
    r = subprocess.run([XMLSEC1, "--sign", "--privkey-pem",
                        f"{pki / 'adapter.key'},{pki / 'adapter.crt'}", "--output", str(out),
                        str(tmpl)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert verify(parse_untrusted(out.read_bytes()), anchors).outcome == "valid"


@pytest.mark.xmlsec1
@pytest.mark.parametrize("where", ["last", "first"])
def test_xmlsec1_signature_with_whitespace_after_it_verifies(tmp_path, pki, anchors, where):
    """The enveloped transform removes the Signature element only: the whitespace after it
    (its tail) stays in the digest. A template signer such as xmlsec1 signs the document as
    laid out, newline after the Signature included; dropping that tail with the element
    (lxml's remove()) made a valid signature read as a digest mismatch."""
    assert XMLSEC1, "xmlsec1 is required (make test installs it)"
    root = build_document(document())
    header = root.find(f"{{{EDXML_NS}}}edXMLEnvelope/{{{EDXML_NS}}}edXMLHeader")
    sig = etree.fromstring(
        b'<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">\n<ds:SignedInfo>\n'
        b'<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>\n'
        b'<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>\n'
        b'<ds:Reference URI=""><ds:Transforms>\n'
        b'<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>\n'
        b'<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>\n'
        b'<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>\n'
        b'<ds:DigestValue/></ds:Reference></ds:SignedInfo>\n<ds:SignatureValue/>\n'
        b'<ds:KeyInfo><ds:X509Data/></ds:KeyInfo>\n</ds:Signature>')
    header.text = "\n    "
    header[0].tail = "\n    "
    if where == "last":
        header.append(sig)
        sig.tail = "\n  "
    else:
        header.insert(0, sig)
        sig.tail = "\n    "
    tmpl, out = tmp_path / "t.edxml", tmp_path / "s.edxml"
    tmpl.write_bytes(serialize(root))
    r = subprocess.run([XMLSEC1, "--sign", "--privkey-pem",
                        f"{pki / 'adapter.key'},{pki / 'adapter.crt'}", "--output", str(out),
                        str(tmpl)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    signed = out.read_bytes()
    assert b"</ds:Signature>\n  " in signed or b"</ds:Signature>\n    " in signed
    parsed = parse_untrusted(signed)
    before = etree.tostring(parsed)
    assert verify(parsed, anchors).outcome == "valid"
    assert etree.tostring(parsed) == before  # the transform leaves the tree as it was
    # the whitespace is signed: changing it breaks the signature, as in xmlsec1
    moved = signed.replace(b"</ds:Signature>\n", b"</ds:Signature>\n ", 1)
    assert verify(parse_untrusted(moved), anchors).outcome == "invalid"
    (tmp_path / "m.edxml").write_bytes(moved)
    assert subprocess.run([XMLSEC1, "--verify", "--trusted-pem", str(pki / "ca.crt"),
                           str(tmp_path / "m.edxml")], capture_output=True).returncode != 0
