"""Validating packets keeps no memory per packet: libxml2 interns every xs:ID value it
validates in lxml's per-thread dictionary, which lives as long as the process, so the check
validates a stand-in copy; the verdict stays the one of the packet itself."""

from __future__ import annotations

import ctypes
import itertools

import pytest
from lxml import etree

from adapter.errors import SchemaInvalidError
from adapter.xml.schema import SchemaRegistry, id_attributes
from tests.helpers import build_packet


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _heap_in_use() -> int:
    """Bytes of glibc's heap held by live allocations (libxml2 allocates there)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return m.uordblks + m.hblkhd


def test_validating_packets_with_unique_ids_keeps_no_memory_per_packet():
    registry = SchemaRegistry.default()
    packet = build_packet("case")
    ids = (f"pkt-{n:036d}" for n in itertools.count())

    def validate(n: int) -> None:
        for _ in range(n):
            packet.set("Id", next(ids))  # each packet its own Id, as in production
            registry.check(packet, packet="case")

    validate(2_000)  # warm: first-time allocations of the schema and the dictionary
    before = _heap_in_use()
    validate(40_000)
    grown = _heap_in_use() - before
    # interning 40,000 Ids of 40 characters kept ~3 MB (the dictionary doubles as it fills)
    assert grown < 512 * 1024, f"heap grew {grown} bytes over 40,000 validations"


def test_the_checked_packet_is_left_as_it_was():
    registry = SchemaRegistry.default()
    packet = build_packet("case", key="K-77")
    before = etree.tostring(packet)
    registry.check(packet, packet="case")
    assert etree.tostring(packet) == before
    # libxml2 registered no ID in the packet's own document (that registration is the leak)
    assert packet.xpath("id($v)", v=packet.get("Id")) == []


def test_an_id_that_is_no_ncname_is_still_refused():
    registry = SchemaRegistry.default()
    packet = build_packet("case")
    packet.set("Id", "1-starts-with-a-digit")
    assert not registry.is_valid(packet)
    with pytest.raises(SchemaInvalidError) as ei:
        registry.check(packet, packet="case K-1")
    assert "1-starts-with-a-digit" in str(ei.value) + " ".join(ei.value.details)


_TWO_IDS = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t"
    xmlns="urn:t" elementFormDefault="qualified">
  <xs:element name="P"><xs:complexType><xs:sequence>
    <xs:element name="A" maxOccurs="unbounded"><xs:complexType>
      <xs:attribute name="Id" type="xs:ID" use="required"/></xs:complexType></xs:element>
  </xs:sequence><xs:attribute name="Id" type="xs:ID" use="required"/></xs:complexType>
  </xs:element>
</xs:schema>"""


def _registry(tmp_path, text: str) -> SchemaRegistry:
    f = tmp_path / "t.xsd"
    f.write_text(text, encoding="utf-8")
    return SchemaRegistry([f])


def _doc(*ids: str) -> etree._Element:
    root = etree.Element("{urn:t}P", Id=ids[0])
    for i in ids[1:]:
        etree.SubElement(root, "{urn:t}A", Id=i)
    return root


def test_a_duplicate_id_is_still_refused_and_distinct_ids_pass(tmp_path):
    registry = _registry(tmp_path, _TWO_IDS)
    assert registry._id_names["urn:t"] == {"Id"}
    assert registry.is_valid(_doc("p-1", "a-1", "a-2"))
    assert not registry.is_valid(_doc("p-1", "a-1", "p-1"))
    # a stand-in never equals a real value it did not replace
    assert registry.is_valid(_doc("id2", "é-1", "a-1"))


def test_schemas_with_other_id_kinds_are_validated_as_they_are(tmp_path):
    """An ID that is no plain attribute (here an element typed xs:ID) could meet a stand-in
    in another schema engine's checks: such schemas get no stand-ins."""
    element_id = _TWO_IDS.replace('<xs:element name="A" maxOccurs="unbounded">',
                                  '<xs:element name="B" type="xs:ID" minOccurs="0"/>'
                                  '<xs:element name="A" maxOccurs="unbounded">')
    f = tmp_path / "e.xsd"
    f.write_text(element_id, encoding="utf-8")
    assert id_attributes([f]) == frozenset()
    registry = SchemaRegistry([f])
    doc = _doc("p-1", "a-1")
    assert registry._stand_in("urn:t", doc) is doc
    assert registry.is_valid(doc) and not registry.is_valid(_doc("p-1", "p-1"))


def test_the_packet_schemas_name_their_id_attribute_through_includes():
    registry = SchemaRegistry.default()
    assert set(registry._id_names.values()) == {frozenset({"Id"})}
