"""Every string the XSD allows must fit the column its mapping stores it in.

A judgment that is signed and schema-valid but carries a court name longer than its column
made PostgreSQL refuse the import. This walks every mapped field of every registered kind:
the XSD type of its element (length facets, patterns, enumerations, fixed values) against
the length of the column the registry and the mapping put it in.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

import pytest
import xmlschema
from sqlalchemy import String, Table

from adapter.kinds import KINDS, KindSpec
from adapter.mapping import MappingSet
from adapter.mapping.engine import FieldSpec
from adapter.sources.models import SourceBase

MAPPINGS = MappingSet()
UNBOUNDED = 10**9


@cache
def _schema(path: str) -> xmlschema.XMLSchema10:
    return xmlschema.XMLSchema10(path)


def _pattern_width(regex: str) -> int:
    """Longest string a (Python-translated) XSD pattern matches; re's own parser knows."""
    width = re._parser.parse(regex).getwidth()[1]  # type: ignore[attr-defined]
    return min(width, UNBOUNDED)


def max_length(element: xmlschema.XsdElement) -> int:
    """The longest text the element's XSD type allows, in characters."""
    if element.fixed is not None:
        return len(element.fixed)
    t = element.type
    bounds = [UNBOUNDED]
    if t.enumeration:
        bounds.append(max(len(v) for v in t.enumeration))
    if t.max_length is not None:
        bounds.append(t.max_length)
    patterns = getattr(t, "patterns", None)
    if patterns:
        bounds.append(max(_pattern_width(p.pattern) for p in patterns.patterns))
    return min(bounds)


def _table(name: str) -> Table:
    return SourceBase.metadata.tables[name]


def _fields(spec: KindSpec) -> Iterator[tuple[str, FieldSpec, Table]]:
    """(xpath, field, table the value is stored in) for every leaf field of a kind."""
    mapping = MAPPINGS[spec.name]
    lookups = {lk.name: lk for lk in spec.lookups}
    children = {c.name: c for c in spec.children}

    def walk(fields: list[FieldSpec], prefix: str, table: Table) -> Iterator:
        for f in fields:
            path = prefix + "/".join(f"t:{p}" for p in f.path.split("/"))
            if f.rows:
                yield from walk(f.children, path + "/", _table(children[f.rows].table))
            elif f.column in lookups:
                lk = lookups[f.column]
                yield path, FieldSpec(f.path, lk.column, f.type, f.type_name, codes=f.codes,
                                      codes_name=f.codes_name), _table(lk.table)
            else:
                yield path, f, table

    yield from walk(mapping.fields, f"t:{mapping.root}/", _table(spec.table))


def _cases() -> list[tuple[str, str, FieldSpec, Table]]:
    return [(s.name, path, f, table) for s in KINDS.mapped() for path, f, table in _fields(s)]


CASES = _cases()


@pytest.mark.parametrize(("kind", "path", "field", "table"), CASES,
                         ids=[f"{k}:{p.replace('t:', '')}" for k, p, _, _ in CASES])
def test_every_schema_valid_value_fits_its_column(kind, path, field, table):
    spec = KINDS[kind]
    mapping = MAPPINGS[kind]
    schema = _schema(str(spec.schema_path()))
    element = schema.find(path, {"t": mapping.namespace})
    assert element is not None, f"{kind}: mapping path {path} is not in {spec.schema}"
    assert field.column in table.c, f"{kind}: {path} maps to {table.name}.{field.column}, " \
                                    "which the table lacks"
    column = table.c[field.column]
    if field.codes is not None:
        # the column holds the enforcement database's code; the packet the list's value.
        enumeration = set(element.type.enumeration or ())
        assert enumeration <= set(field.codes.values()), \
            f"{kind}: {path} allows {sorted(enumeration - set(field.codes.values()))}, " \
            f"which code list {field.codes_name} cannot import"
        longest = max(len(k) for k in field.codes)
    else:
        longest = max_length(element)
    if not isinstance(column.type, String) or column.type.length is None:
        return  # dates, numbers, binary and unbounded text: no length to outgrow
    assert longest <= column.type.length, \
        f"{kind}: {path} ({element.type.local_name or element.type.primitive_type.local_name})" \
        f" allows {'unbounded' if longest >= UNBOUNDED else longest} characters, but column " \
        f"{table.name}.{column.name} holds {column.type.length}"


def test_the_walk_sees_every_kind_and_the_nested_rows():
    kinds = {k for k, *_ in CASES}
    assert kinds == {s.name for s in KINDS.mapped()} == {"case", "receipt", "judgment",
                                                                 "debtor"}
    paths = {p for _, p, _, _ in CASES}
    assert "t:Judgment/t:Court/t:Name" in paths
    assert "t:Case/t:Parties/t:Party/t:FullName" in paths
    assert "t:Receipt/t:CaseId" in paths  # a looked-up column (cases.case_code)
    assert "t:DebtorEntry/t:Debtor/t:Person/t:CitizenId" in paths  # a branch of a choice


def test_the_measure_reads_length_facets_patterns_enumerations_and_fixed_values():
    xs = xmlschema.XMLSchema10("""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
      <xs:simpleType name="Text"><xs:restriction base="xs:string">
        <xs:maxLength value="1000"/><xs:pattern value="\\S(.*\\S)?"/></xs:restriction>
      </xs:simpleType>
      <xs:element name="R"><xs:complexType><xs:sequence>
        <xs:element name="Wide" type="Text"/>
        <xs:element name="Narrow"><xs:simpleType><xs:restriction base="Text">
          <xs:maxLength value="200"/></xs:restriction></xs:simpleType></xs:element>
        <xs:element name="Number"><xs:simpleType><xs:restriction base="xs:string">
          <xs:pattern value="\\d{1,7}/(19|20)\\d{2}/[^\\s/]{1,40}"/></xs:restriction>
        </xs:simpleType></xs:element>
        <xs:element name="Free" type="xs:string"/>
        <xs:element name="Fixed" type="xs:string" fixed="application/pdf"/>
        <xs:element name="Choice"><xs:simpleType><xs:restriction base="xs:string">
          <xs:enumeration value="a"/><xs:enumeration value="abcd"/></xs:restriction>
        </xs:simpleType></xs:element>
      </xs:sequence></xs:complexType></xs:element></xs:schema>""")
    measured = {name: max_length(xs.find(f"R/{name}"))
                for name in ("Wide", "Narrow", "Number", "Free", "Fixed", "Choice")}
    assert measured == {"Wide": 1000, "Narrow": 200, "Number": 53, "Free": UNBOUNDED,
                        "Fixed": 15, "Choice": 4}


#: received edXML documents: the column each element goes to (engine/axis_inbound.py).
EDXML_COLUMNS = {"sender_name": "OrganName", "subject": "Subject", "signer_name": "FullName",
                 "code": "CodeNotation", "attachment_name": "AttachmentName"}


@pytest.mark.parametrize(("column", "element"), sorted(EDXML_COLUMNS.items()))
def test_received_edxml_text_fits_its_column(column, element):
    from adapter.kinds import SCHEMAS_DIR

    xs = _schema(str(SCHEMAS_DIR / "edxml" / "edxml.xsd"))
    found = [c for c in xs.iter_components(xmlschema.XsdElement) if c.local_name == element]
    assert found, element
    longest = max(max_length(e) for e in found)
    col = _table("received_documents").c[column]
    assert not isinstance(col.type, String) or col.type.length is None \
        or longest <= col.type.length, \
        f"edXML {element} allows {longest} characters, received_documents.{column} holds " \
        f"{col.type.length}"
