"""Fields come from what was signed: text the signature covers cannot be cut by a comment
(comments lie outside the c14n digest, so inserting one keeps the signature valid)."""

import pytest
from lxml import etree

from adapter.crypto.keys import load_certificates, load_identity
from adapter.edxml import (
    build_document,
    build_status,
    parse_edxml,
    read_edxml,
    sign_edxml,
    verify_edxml,
    verify_edxml_signature,
)
from adapter.edxml.model import EDXML_NS, ResponseFor, StatusPacket
from adapter.errors import PacketError
from adapter.xml.safe import parse_untrusted, serialize
from tests.unit.edxml.test_build_and_sign import BTP, VPCP, document

SUBJECT = "Quyết định thi hành án số 125 bị hủy bỏ"


@pytest.fixture(scope="module")
def ident(pki):
    return load_identity(pki / "adapter.key", pki / "adapter.crt")


@pytest.fixture(scope="module")
def anchors(pki):
    return load_certificates(pki / "ca.crt")


@pytest.fixture(scope="module")
def commented(ident) -> bytes:
    """A signed document, then a comment inserted inside its signed Subject text."""
    doc = document()
    doc.subject = SUBJECT
    data = serialize(sign_edxml(build_document(doc), ident))
    assert data.count("bị hủy bỏ".encode()) == 1
    return data.replace("bị hủy bỏ".encode(), "bị hủy<!----> bỏ".encode())


def test_a_comment_in_signed_text_keeps_the_signature_valid(commented, anchors):
    # the premise of the attack: this is not caught by the signature
    assert verify_edxml_signature(parse_untrusted(commented), anchors).outcome == "valid"


def test_fields_are_read_from_the_signed_content(commented, anchors):
    verified = verify_edxml(parse_untrusted(commented), anchors)
    assert verified.outcome.outcome == "valid" and verified.signed
    assert not list(verified.tree.iter(etree.Comment))
    parsed = read_edxml(verified, name="commented")
    assert parsed.packet.subject == SUBJECT
    assert parsed.verdict("reject") == (True, "accepted")


def test_the_old_call_reads_the_whole_text_too(commented, anchors):
    sig = verify_edxml_signature(parse_untrusted(commented), anchors)
    assert parse_edxml(commented, name="commented", signature=sig).packet.subject == SUBJECT


def test_the_signed_tree_keeps_the_packets_line_numbers(commented, anchors):
    root = parse_untrusted(commented)
    verified = verify_edxml(root, anchors)
    mine = verified.tree.find(f".//{{{EDXML_NS}}}Subject")
    assert mine.sourceline == root.find(f".//{{{EDXML_NS}}}Subject").sourceline
    assert verified.tree.find(f".//{{{EDXML_NS}}}Signature") is None


def test_a_refused_field_is_reported_at_its_line_in_the_received_file(ident, anchors):
    doc = document()
    doc.promulgation_date = "2999/01/01"  # in the future: refused by the reader
    data = serialize(sign_edxml(build_document(doc), ident))
    line = next(n for n, t in enumerate(data.splitlines(), 1) if b"PromulgationDate>" in t)
    with pytest.raises(PacketError) as ei:
        read_edxml(verify_edxml(parse_untrusted(data), anchors), name="future")
    assert f"line {line}" in str(ei.value)


def test_a_changed_signed_text_is_still_invalid_and_read_without_comments(commented, anchors):
    tampered = commented.replace("bỏ".encode(), "bớt".encode(), 1)
    verified = verify_edxml(parse_untrusted(tampered), anchors)
    assert verified.outcome.outcome == "invalid" and not verified.signed
    assert read_edxml(verified).packet.subject == "Quyết định thi hành án số 125 bị hủy bớt"
    assert read_edxml(verified).verdict("reject")[0] is False


def test_unsigned_status_is_read_without_comments():
    st = StatusPacket(VPCP, ResponseFor(BTP.organ_id, "125/QĐ-CTHADS", "2026/11/20",
                                        "000.00.00.G15,2026/11/20,125/QĐ-CTHADS"),
                      "02", "Từ chối: văn bản không hợp lệ", "2026/11/21 08:00:00",
                      {"Staff": "Lê Thị Hoa"})
    data = serialize(build_status(st)).replace(b"StatusCode>02<", b"StatusCode>0<!--x-->2<")
    assert b"0<!--x-->2" in data
    parsed = parse_edxml(data, name="status with comment")
    assert (parsed.kind, parsed.packet.status_code) == ("status", "02")


def test_a_packet_of_more_than_65535_lines_is_verified_and_read(ident, anchors):
    """Elements past line 65,535 (lxml keeps a line number it is given in 16 bits), as an
    attachment in 76-column base64 of about 5 MB puts them."""
    root = build_document(document())
    root.find(f".//{{{EDXML_NS}}}From").tail = "\n" * 70_000
    data = serialize(sign_edxml(root, ident))
    received = parse_untrusted(data)
    subject_line = received.find(f".//{{{EDXML_NS}}}Subject").sourceline
    assert subject_line > 70_000
    verified = verify_edxml(received, anchors)
    assert verified.outcome.outcome == "valid"
    assert verified.tree.find(f".//{{{EDXML_NS}}}Subject").sourceline > 65_535
    assert read_edxml(verified, name="long").packet.subject == document().subject
