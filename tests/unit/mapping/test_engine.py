"""Declarative mapping both ways, and every kind of bad record."""

import copy
import unicodedata

import pytest

from adapter.errors import MappingError
from adapter.mapping import MappingSet
from adapter.xml.schema import SchemaRegistry
from tests.helpers import N, build_packet, header, sample_record

MAPPINGS = MappingSet()
REG = SchemaRegistry.default()


@pytest.mark.parametrize("kind", ["case", "receipt", "judgment"])
def test_row_to_xml_to_row_round_trip(kind):
    rec = sample_record(kind)
    if kind == "receipt":
        rec["amount_words"] = "Một trăm nghìn đồng"
        rec["amount"] = 100_000
    root = MAPPINGS[kind].to_xml(copy.deepcopy(rec), header(kind))
    assert REG.is_valid(root)
    back = MAPPINGS[kind].from_xml(root)
    for column, value in back.items():
        if column in ("parties", "obligations"):
            assert len(value) == len(rec[column])
            for got, src in zip(value, rec[column], strict=True):
                assert {k: v for k, v in got.items() if v is not None} == \
                       {k: src[k] for k in got if src.get(k) is not None}
        else:
            assert value == rec[column], column


def test_codes_are_translated_both_ways():
    rec = sample_record("case")
    rec["kind"], rec["status"] = "YC", "CDK"
    root = MAPPINGS["case"].to_xml(rec, header("case"))
    assert root.findtext(f"{N}Kind") == "theo-yeu-cau"
    assert root.findtext(f"{N}Status") == "chua-co-dieu-kien"
    back = MAPPINGS["case"].from_xml(root)
    assert (back["kind"], back["status"]) == ("YC", "CDK")


def test_header_and_id_are_deterministic():
    a = build_packet("case", key="THA-1")
    b = build_packet("case", key="THA-1")
    assert a.get("Id") == b.get("Id") and a.get("Id").startswith("pkt-")
    assert a.findtext(f"{N}Header/{N}CreatedAt").endswith("+07:00")
    assert a.findtext(f"{N}Header/{N}CreatedAt") == "2026-03-01T09:30:00+07:00"


def test_dates_and_times_are_iso_with_vietnam_offset():
    rec = sample_record("receipt")
    root = MAPPINGS["receipt"].to_xml(rec, header("receipt"))
    issued = root.findtext(f"{N}IssuedAt")
    assert issued == rec["issued_at"].isoformat() + "+07:00"


def test_text_is_normalised_to_nfc():
    rec = sample_record("case")
    rec["officer"] = unicodedata.normalize("NFD", "Nguyễn Văn Hùng")
    root = MAPPINGS["case"].to_xml(rec, header("case"))
    assert root.findtext(f"{N}Officer") == unicodedata.normalize("NFC", "Nguyễn Văn Hùng")


def test_missing_words_are_generated_and_wrong_words_refused():
    rec = sample_record("receipt")
    rec["amount"], rec["amount_words"] = 1_200_000, None
    root = MAPPINGS["receipt"].to_xml(copy.deepcopy(rec), header("receipt"))
    assert root.findtext(f"{N}AmountInWords") == "Một triệu hai trăm nghìn đồng"
    rec["amount_words"] = "Một triệu đồng"
    with pytest.raises(MappingError) as ei:
        MAPPINGS["receipt"].to_xml(rec, header("receipt", key="BL-9"))
    msg = str(ei.value)
    assert "receipt BL-9" in msg and "amount_words" in msg and "1200000" in msg


BAD_RECORDS = [
    ("case", lambda r: r.update(officer=None), "officer", "required"),
    ("case", lambda r: r.update(office_code="28.22.H17"), "office_code", "organisation id"),
    ("case", lambda r: r["parties"][0].update(citizen_id="099123456789", kind="CN"),
     "parties[0].citizen_id", "no province code"),
    ("case", lambda r: r["parties"][1].update(citizen_id="12345"), "parties[1].citizen_id",
     "12 digits"),
    ("case", lambda r: r["parties"][0].update(full_name="NguyÔn V¨n Hïng"),
     "parties[0].full_name", "TCVN3"),
    ("case", lambda r: r.update(officer="Nguyeãn Vaên Huøng"), "officer", "VNI"),
    ("case", lambda r: r.update(parties=[]), "parties", "at least 1"),
    ("case", lambda r: r.update(kind="XX"), "kind", "code list case_kind"),
    ("case", lambda r: r.update(decision_date="30/02/2025"), "decision_date", "not a date"),
    ("receipt", lambda r: r.update(amount=0), "amount", "greater than 0"),
    ("receipt", lambda r: r.update(amount=-5000), "amount", "greater than 0"),
    ("receipt", lambda r: r.update(amount=12.5), "amount", "whole number"),
    ("receipt", lambda r: r.update(payer_tax_code="12345"), "payer_tax_code", "tax code"),
]


@pytest.mark.parametrize(("kind", "spoil", "field", "reason"), BAD_RECORDS,
                         ids=[f"{k}:{f}" for k, _, f, _ in BAD_RECORDS])
def test_bad_record_fails_naming_packet_field_and_reason(kind, spoil, field, reason):
    rec = sample_record(kind)
    spoil(rec)
    with pytest.raises(MappingError) as ei:
        MAPPINGS[kind].to_xml(rec, header(kind, key="SRC-42"))
    msg = str(ei.value)
    assert f"{kind} SRC-42" in msg
    assert f"field {field}" in msg
    assert reason in msg


def test_all_bad_fields_of_a_record_are_reported_at_once():
    rec = sample_record("case")
    rec.update(officer=None, office_code="bad")
    with pytest.raises(MappingError) as ei:
        MAPPINGS["case"].to_xml(rec, header("case"))
    assert "officer" in str(ei.value) and "office_code" in str(ei.value)


def test_xml_to_row_reports_missing_required_element_with_line():
    from lxml import etree
    root = etree.fromstring(etree.tostring(build_packet("receipt"), pretty_print=True))
    root.remove(root.find(f"{N}Collector"))
    with pytest.raises(MappingError, match=r"Collector: required, but missing \(line \d+\)"):
        MAPPINGS["receipt"].from_xml(root)


def test_packet_ids_are_the_rfc_4122_name_based_uuids_they_always_were():
    """packet_id writes uuid5 out by hand (speed); ids already sent must not change."""
    import random
    import uuid

    from adapter.mapping.engine import PACKET_NAMESPACE, packet_id

    rng = random.Random(12)
    alphabet = "abcXYZ019-/._ ệđƯờ\u0301€😀"
    for _ in range(2000):
        kind = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        key = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        version = rng.randint(0, 10**12)
        assert packet_id(kind, key, version) == \
            str(uuid.uuid5(PACKET_NAMESPACE, f"{kind}/{key}/{version}"))
    # one pinned: a receiver that stored this id must see the same one again
    assert packet_id("case", "THA-2026-000001", 1) == "034069fe-41c4-5aec-9766-05f9b35c44c3"


@pytest.mark.parametrize(("fields", "body"), [
    # a field under Header continues the Header to_xml wrote
    ([{"path": "Header/Extra", "column": "a"}, {"path": "B", "column": "b"}],
     "<Extra>1</Extra></Header><B>2</B>"),
    # a field whose path runs into the last row continues that row's own element
    ([{"path": "H/I", "rows": "r", "fields": [{"path": "X", "column": "x"}]},
      {"path": "H/I/X", "column": "a"}],
     "</Header><H><I><X>p</X></I><I><X>1</X></I></H>"),
    # sibling paths share their parent until another element comes between
    ([{"path": "A/B", "column": "a"}, {"path": "A/C", "column": "b"},
      {"path": "H/I", "rows": "r", "fields": [{"path": "X", "column": "x"}]},
      {"path": "H/J", "column": "a"}, {"path": "A/B", "column": "b"}],
     "</Header><A><B>1</B><C>2</C></A><H><I><X>p</X></I><I><X>q</X></I><J>1</J></H>"
     "<A><B>2</B></A>"),
])
def test_each_field_continues_the_last_element_on_its_path(fields, body):
    """A field reuses the last child at each step of its path when the tag matches, else
    appends one: the rule the mapping files are written to (schema order)."""
    import datetime as dt

    from lxml import etree

    from adapter.mapping.engine import PacketHeader, PacketMapping

    m = PacketMapping({"kind": "t", "packet": "P", "namespace": "urn:t", "fields": fields},
                      {}, "test")
    h = PacketHeader("pid", "k", 1, "s", "r", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    xml = etree.tostring(m.to_xml({"a": "1", "b": "2", "r": [{"x": "p"}, {"x": "q"}]}, h))
    header = ('<P xmlns="urn:t" Id="pkt-pid"><Header><PacketId>pid</PacketId><SourceKey>k'
              '</SourceKey><Version>1</Version><Sender>s</Sender><Recipient>r</Recipient>'
              '<CreatedAt>2026-01-01T07:00:00+07:00</CreatedAt>')
    assert xml.decode() == header + body + "</P>"
