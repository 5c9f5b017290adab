"""Every schema rule with a valid and an invalid instance; reports name line, path, reason."""

import copy

import pytest
from lxml import etree

from adapter.errors import SchemaInvalidError
from adapter.xml.schema import SchemaRegistry
from tests.helpers import N, build_packet

REG = SchemaRegistry.default()


@pytest.mark.parametrize("kind", ["case", "receipt", "judgment"])
def test_generated_packets_are_valid(kind):
    assert REG.is_valid(build_packet(kind))


def _set(root, path, value):
    el = root.find("/".join(N + p for p in path.split("/")))
    assert el is not None, path
    el.text = value
    return root


def _roundtrip(root):
    """Serialise and parse again, so errors carry real line numbers."""
    return etree.fromstring(etree.tostring(root, pretty_print=True))


BAD = [
    ("case", "OfficeCode", "28.22.H17", "OrgId"),
    ("case", "Header/Sender", "000.00.00.g15", "OrgId"),
    ("case", "Parties/Party/CitizenId", "099123456789", "CitizenId"),    # 099: no province
    ("case", "Parties/Party/CitizenId", "07912345678", "CitizenId"),     # 11 digits
    ("case", "CollectedAmount", "-1", "Amount"),
    ("case", "Obligations/Obligation/Type", "tien-an", "ObligationType"),
    ("case", "Kind", "tu-nguyen", "CaseKind"),
    ("case", "Status", "xong", "CaseStatus"),
    ("case", "Decision/Number", "1161-2025-QĐST", "DecisionNumber"),
    ("case", "Decision/Date", "2025-02-30", "LocalDate"),
    ("case", "Header/CreatedAt", "2026-03-01T09:30:00Z", "LocalDateTime"),
    ("case", "Header/PacketId", "not-a-uuid", "PacketId"),
    ("case", "Officer", " ", "Text"),
    ("receipt", "Amount", "0", "PositiveAmount"),
    ("receipt", "Amount", "12.5", "PositiveAmount"),
    ("receipt", "IssuedAt", "2026-03-01T09:30:00+08:00", "LocalDateTime"),
    ("receipt", "PaymentMethod", "the", "PaymentMethod"),
    ("receipt", "Status", "void", "ReceiptStatus"),
    ("receipt", "Number", "A12", "Number"),
    ("judgment", "CaseType", "dan_su", "CaseType"),
    ("judgment", "Instance", "so-tham-2", "Instance"),
    ("judgment", "Document/Sha256", "ABC", "Sha256"),
    ("judgment", "Document/MediaType", "application/zip", "MediaType"),
]


@pytest.mark.parametrize(("kind", "path", "value", "rule"), BAD,
                         ids=[f"{k}:{p}={v}" for k, p, v, _ in BAD])
def test_each_rule_rejects_a_bad_value(kind, path, value, rule):
    root = _roundtrip(_set(build_packet(kind), path, value))
    assert not REG.is_valid(root)
    report = REG.report(root)
    assert not report.valid and report.issues
    first = report.issues[0]
    assert first.line and first.line > 1
    assert path.split("/")[-1] in (first.path or "") + first.reason


def test_tax_code_branch_form_is_valid_and_other_forms_are_not():
    root = build_packet("case")
    party = root.find(f"{N}Parties/{N}Party")
    cid = party.find(f"{N}CitizenId")
    tax = etree.Element(f"{N}TaxCode")
    tax.text = "0101234567-001"
    cid.addnext(tax)
    party.remove(cid)
    assert REG.is_valid(root)
    tax.text = "0101234567-1"
    assert not REG.is_valid(root)


def test_missing_required_element_and_wrong_order_are_invalid():
    root = build_packet("case")
    root.remove(root.find(f"{N}Officer"))
    assert not REG.is_valid(root)
    root = build_packet("case")
    status = root.find(f"{N}Status")
    root.remove(status)
    root.insert(1, status)
    assert not REG.is_valid(root)


def test_packet_without_id_attribute_is_invalid():
    root = build_packet("receipt")
    del root.attrib["Id"]
    with pytest.raises(SchemaInvalidError) as ei:
        REG.check(_roundtrip(root), packet="r-1")
    assert "Id" in str(ei.value) and "r-1" in str(ei.value)


def test_unknown_namespace_is_reported():
    with pytest.raises(SchemaInvalidError, match="no schema for namespace"):
        REG.check(etree.fromstring(b"<Case xmlns='urn:other'/>"))


def test_signature_element_is_allowed_as_last_child_only():
    root = build_packet("case")
    sig = etree.SubElement(root, "{http://www.w3.org/2000/09/xmldsig#}Signature")
    assert REG.is_valid(root)
    root.remove(sig)
    root.insert(1, copy.deepcopy(sig))
    assert not REG.is_valid(root)
