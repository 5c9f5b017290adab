"""The debtor register notice: mapping, schema, what it carries and what operators see."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from adapter.errors import MappingError, SchemaInvalidError
from adapter.mapping import MappingSet, PacketHeader, packet_id
from adapter.privacy import mask_ids
from adapter.sources.synth import sample_notices
from adapter.xml.safe import serialize
from adapter.xml.schema import SchemaRegistry

NS = "urn:thads-adapter:exchange:1"
N = f"{{{NS}}}"
MAPPING = MappingSet()["debtor"]
SCHEMAS = SchemaRegistry.default()

#: the columns a notice is made of; anything else in the row stays in the office
PUBLISHED = {"entry_code", "action", "action_reason", "case_code", "office_code",
             "person_name", "citizen_id", "birth_date", "organisation_name", "tax_code",
             "address", "judgment_no", "judgment_date", "court_name", "obligation_type",
             "amount", "amount_words", "finding_no", "finding_date", "ground", "verified_on",
             "next_verification_on"}


def record(person: bool = True, **over) -> dict:
    return dict(copy.deepcopy(sample_notices(person=person)[0]), **over)


def build(rec: dict, version: int = 1):
    key = rec["entry_code"]
    header = PacketHeader(packet_id("debtor", key, version), key, version, "000.00.00.G15",
                          "000.00.00.G22", dt.datetime(2026, 3, 1, 2, 30, tzinfo=dt.UTC))
    root = MAPPING.to_xml(copy.deepcopy(rec), header)
    SCHEMAS.check(root, packet=f"debtor {key}")
    return root


def test_a_person_debtor_travels_as_the_person_branch_and_reads_back():
    rec = record(person=True)
    root = build(rec)
    assert root.find(f"{N}Debtor/{N}Person/{N}CitizenId").text == rec["citizen_id"]
    assert root.find(f"{N}Debtor/{N}Organisation") is None
    assert root.findtext(f"{N}Action") == "cong-bo"
    back = MAPPING.from_xml(root)
    assert set(back) == PUBLISHED
    for column in PUBLISHED - {"amount_words"}:
        assert back[column] == rec[column], column
    assert back["citizen_id"][:3] == rec["office_code"][7:9].rjust(3, "0")  # province prefix


def test_an_organisation_debtor_travels_as_the_organisation_branch():
    rec = record(person=False)
    root = build(rec)
    assert root.find(f"{N}Debtor/{N}Person") is None
    org = root.find(f"{N}Debtor/{N}Organisation")
    assert org.findtext(f"{N}Name") == rec["organisation_name"]
    assert org.findtext(f"{N}TaxCode") == rec["tax_code"]


def test_the_unpaid_amount_carries_words_that_read_it():
    root = build(record(amount=1_250_000, amount_words=None))
    assert root.findtext(f"{N}Obligation/{N}AmountInWords") == \
        "Một triệu hai trăm năm mươi nghìn đồng"
    rec = record(amount=1_250_000, amount_words="Một triệu hai trăm nghìn đồng")
    with pytest.raises(MappingError) as ei:
        build(rec)
    text = str(ei.value)
    assert f"debtor {rec['entry_code']}" in text
    assert "field amount_words: words 'Một triệu hai trăm nghìn đồng' do not read the " \
           "amount 1250000" in text


def test_bad_codes_and_a_debtor_that_is_both_or_neither_are_refused_by_name():
    with pytest.raises(MappingError, match="field action: 'XOA' is not in code list "
                                           "debtor_action"):
        build(record(action="XOA"))
    with pytest.raises(MappingError, match="field ground: 'D' is not in code list "
                                           "debtor_ground"):
        build(record(ground="D"))
    with pytest.raises(SchemaInvalidError, match="CitizenId"):
        build(record(citizen_id=None))  # a person is named by a citizen id
    both = record(organisation_name="Công ty TNHH Dịch vụ An Bình", tax_code="0101234567")
    with pytest.raises(SchemaInvalidError, match="debtor CDK-"):
        build(both)
    with pytest.raises(SchemaInvalidError, match="debtor CDK-"):
        build(record(person_name=None, citizen_id=None, birth_date=None))


def test_a_notice_carries_no_more_than_the_register_needs():
    rec = record(phone="0912345678",
                 verification_note="Có sổ tiết kiệm 20 triệu đồng gửi tại ngân hàng")
    data = serialize(build(rec)).decode()
    assert "0912345678" not in data
    assert "sổ tiết kiệm" not in data
    assert {f.column for f in MAPPING.fields} == PUBLISHED


def test_operators_see_the_citizen_id_masked_and_the_amount_whole():
    rec = record(amount=226_710_000, amount_words=None)
    shown = mask_ids(serialize(build(rec)).decode())
    cid = rec["citizen_id"]
    assert cid not in shown
    assert f"<CitizenId>{cid[:3]}*******{cid[-2:]}</CitizenId>" in shown
    assert "<Amount>226710000</Amount>" in shown
    assert mask_ids(f"citizen id {cid} refused") == f"citizen id {cid[:3]}*******{cid[-2:]} " \
                                                    "refused"
