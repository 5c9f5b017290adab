"""Packets as the axis really delivers them, built from the official samples (each test
copies a sample and changes what the axis or the official library changes): TraceHeaders
added in transit without an organisation, an empty ResponseFor, Bussiness written before
the TraceHeaders, and attachments the library zipped."""

import base64
import io
import os
import re
import zipfile
from pathlib import Path

import pytest

from adapter.edxml import parse_edxml
from adapter.edxml.parse import ZipLimits
from adapter.errors import PacketError

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "edxml" / "vpcp-samples"


def crlf(text: bytes) -> bytes:
    """The samples have Windows line endings."""
    return text.replace(b"\n", b"\r\n")


TRACE = crlf(b"""        <edXML:TraceHeader>
          <edXML:OrganId>000.00.00.G22</edXML:OrganId>
          <edXML:Timestamp>2018/09/28 00:00:00</edXML:Timestamp>
        </edXML:TraceHeader>
""")


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def update_sample() -> bytes:
    data = sample("edoc_update.edxml")
    assert data.count(TRACE) == 1
    return data


def with_attachment(data: bytes, name: str, payload: bytes, content_type: str) -> bytes:
    """The sample with its one attachment replaced (name, type and bytes)."""
    data = data.replace(b"1896_QD-TTg_m_294779.doc", name.encode())
    data = data.replace(b"<ContentType>application/zip</ContentType>",
                        f"<ContentType>{content_type}</ContentType>".encode())
    data = data.replace(b"<edXML:ContentType>application/zip</edXML:ContentType>",
                        f"<edXML:ContentType>{content_type}</edXML:ContentType>".encode())
    return re.sub(rb"(<edXML:ContentTransferEncoded[^>]*>)[^<]*(<)",
                  lambda m: m[1] + base64.b64encode(payload) + m[2], data, count=1)


def zipped(entries: dict[str, bytes], level: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", level) as z:
        for name, content in entries.items():
            z.writestr(name, content)
    return buf.getvalue()


# ---- TraceHeaders added in transit -----------------------------------------------------

def test_trace_headers_without_an_organisation_are_kept_and_flagged():
    data = update_sample().replace(TRACE, TRACE + crlf(b"""        <edXML:TraceHeader>
          <edXML:OrganId>null</edXML:OrganId>
          <edXML:Timestamp>2018/09/28 08:00:00</edXML:Timestamp>
        </edXML:TraceHeader>
        <edXML:TraceHeader>
          <edXML:Timestamp>2018/09/28 08:00:05</edXML:Timestamp>
        </edXML:TraceHeader>
"""))
    parsed = parse_edxml(data, name="edoc_update (axis hops)")
    doc = parsed.packet
    assert doc.trace == [("000.00.00.G22", "2018/09/28 00:00:00"),
                         ("", "2018/09/28 08:00:00"), ("", "2018/09/28 08:00:05")]
    assert len(doc.trace_flags) == 2
    assert "TraceHeader 2" in doc.trace_flags[0] and "OrganId 'null'" in doc.trace_flags[0]
    assert "TraceHeader 3" in doc.trace_flags[1] and "no OrganId" in doc.trace_flags[1]
    assert all(f in parsed.warnings for f in doc.trace_flags)


def test_a_malformed_organisation_in_a_trace_header_is_still_refused():
    data = update_sample().replace(TRACE, TRACE.replace(b"000.00.00.G22", b"G22"))
    with pytest.raises(PacketError, match="organisation id 'G22' is not of the form"):
        parse_edxml(data, name="edoc_update (bad hop)")


def test_bussiness_before_the_trace_headers_is_accepted():
    data = update_sample()
    start = data.index(b"        <edXML:Bussiness>")
    end = data.index(b"</edXML:Bussiness>\r\n") + len(b"</edXML:Bussiness>\r\n")
    business = data[start:end]
    moved = data[:start] + data[end:]
    moved = moved.replace(TRACE, business + TRACE)  # as EdXML102 writes it
    assert moved.index(b"<edXML:Bussiness>") < moved.index(b"<edXML:TraceHeader>")
    doc = parse_edxml(moved, name="edoc_update (library order)").packet
    assert doc.business.doc_type == "2"
    assert doc.business.document_id == "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT"
    assert doc.trace == [("000.00.00.G22", "2018/09/28 00:00:00")]


# ---- an empty ResponseFor -------------------------------------------------------------

def test_an_empty_response_for_is_ignored_with_a_warning():
    data = sample("status_finish_06.edxml")
    data = data.replace(b"<edXML:ResponseFor>", b"<edXML:ResponseFor/>\n<edXML:ResponseFor>", 1)
    parsed = parse_edxml(data, name="status 06 (2019 reply)")
    assert parsed.packet.response_for.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert any("empty ResponseFor ignored" in w for w in parsed.warnings)


def test_a_status_whose_only_response_for_is_empty_is_refused_with_the_reason():
    data = sample("status_finish_06.edxml")
    data = re.sub(rb"<edXML:ResponseFor>.*?</edXML:ResponseFor>", b"<edXML:ResponseFor/>",
                  data, count=1, flags=re.S)
    with pytest.raises(PacketError, match="names exactly one document in ResponseFor") as ei:
        parse_edxml(data, name="status 06 (empty)")
    assert "status 06 (empty)" in str(ei.value) and "line" in str(ei.value)


def test_an_empty_response_for_in_a_document_is_ignored():
    data = update_sample().replace(b"<edXML:ToPlaces>", b"<edXML:ResponseFor/>\n"
                                   b"        <edXML:ToPlaces>", 1)
    parsed = parse_edxml(data, name="edoc_update (empty ResponseFor)")
    assert parsed.packet.response_for == []
    assert any("empty ResponseFor ignored" in w for w in parsed.warnings)


# ---- attachments the official library zipped -------------------------------------------

ORIGINAL = "Biên bản cưỡng chế kê biên tài sản.\n".encode() * 400


def test_a_zipped_attachment_is_unpacked_to_the_original_bytes():
    packet = with_attachment(update_sample(), "bien-ban.odt",
                             zipped({"bien-ban.odt": ORIGINAL}), "application/zip")
    parsed = parse_edxml(packet, name="edoc (zipped odt)")
    (att,) = parsed.packet.attachments
    assert att.data == ORIGINAL and att.name == "bien-ban.odt"
    assert att.unpacked_from == "bien-ban.odt"
    assert att.declared_type == "application/zip"
    assert any("unpacked" in w and "bien-ban.odt" in w for w in parsed.warnings)


def test_the_official_samples_zipped_attachment_is_unpacked():
    (att,) = parse_edxml(update_sample(), name="edoc_update").packet.attachments
    assert att.unpacked_from == "3ed3cc90-1dcb-4382-9725-1de9cd899790.edxml"
    assert att.data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\r\n<edXML')
    assert len(att.data) == 388347


@pytest.mark.parametrize(("name", "content_type"), [("ho-so.zip", "application/zip"),
                                                    ("bien-ban.odt", "application/pdf")])
def test_a_real_zip_is_kept_as_received(name, content_type):
    archive = zipped({"a.txt": b"a", "b.txt": b"b"})
    parsed = parse_edxml(with_attachment(update_sample(), name, archive, content_type),
                         name="edoc (zip)")
    (att,) = parsed.packet.attachments
    assert att.data == archive and att.unpacked_from == ""


def test_a_zip_of_several_files_is_kept_as_received_with_a_warning():
    archive = zipped({"a.odt": b"a", "b.odt": b"b"})
    parsed = parse_edxml(with_attachment(update_sample(), "a.odt", archive, "application/zip"),
                         name="edoc (two files)")
    (att,) = parsed.packet.attachments
    assert att.data == archive
    assert any("holds 2 files: kept as received" in w for w in parsed.warnings)


def test_a_zip_bomb_is_refused_by_its_ratio():
    bomb = zipped({"bomb.odt": b"\0" * (8 << 20)})
    assert len(bomb) < 20_000
    with pytest.raises(PacketError, match=r"cid:209 .*ratio .* above the limit 100") as ei:
        parse_edxml(with_attachment(update_sample(), "bomb.odt", bomb, "application/zip"),
                    name="edoc (bomb)")
    assert "edoc (bomb)" in str(ei.value)


def test_a_zip_too_large_when_unpacked_is_refused():
    honest = zipped({"big.odt": os.urandom(5000)}, zipfile.ZIP_STORED)
    with pytest.raises(PacketError, match="unpacks to more than 1000 bytes"):
        parse_edxml(with_attachment(update_sample(), "big.odt", honest, "application/zip"),
                    name="edoc (big)", zip_limits=ZipLimits(max_total_bytes=1000))


def test_a_zip_lying_about_its_size_is_not_unpacked():
    bomb = zipped({"bomb.odt": b"\0" * (8 << 20)})
    real = (8 << 20).to_bytes(4, "little")
    assert bomb.count(real) == 2  # local header and central directory
    liar = bomb.replace(real, (10).to_bytes(4, "little"))
    parsed = parse_edxml(with_attachment(update_sample(), "bomb.odt", liar, "application/zip"),
                         name="edoc (liar)")
    (att,) = parsed.packet.attachments
    assert att.data == liar and att.unpacked_from == ""
    assert any("cannot be read" in w and "kept as received" in w for w in parsed.warnings)
