"""A new packet kind takes a mapping file, an XSD type and a registry entry, and nothing else.

docs/extending.md promises this; the test holds it to its word: a throwaway kind `widget`
with its mapping (and its own code list) and its XSD in a temporary directory, its rows in a
table of a temporary enforcement database, and one `KindSpec`. Settings, change capture,
the packet builder (mapping, schema, signature) and the verifier then handle it with no
change to adapter code.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, insert

from adapter.config import load_settings
from adapter.crypto.keys import load_certificates
from adapter.crypto.verify import PacketVerifier
from adapter.dbutil import make_engine
from adapter.engine.build import PacketBuilder
from adapter.kinds import KINDS, SCHEMAS_DIR, KindSpec
from adapter.mapping import MappingSet
from adapter.sources.changes import ChangeReader, SourceCursor
from adapter.xml.safe import parse_untrusted
from adapter.xml.schema import SchemaRegistry
from tests.conftest import write_config

NS = "urn:thads-adapter:exchange:1"

MAPPING = f"""\
kind: widget
packet: Widget
namespace: {NS}
codes:
  widget_colour: {{R: do, X: xanh}}
fields:
  - {{path: WidgetId, column: widget_code, type: code, required: true}}
  - {{path: Label, column: label, type: text, required: true}}
  - {{path: Colour, column: colour, codes: widget_colour, required: true}}
  - {{path: Price, column: price, type: amount}}
"""

XSD = f"""\
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns="{NS}" targetNamespace="{NS}"
           elementFormDefault="qualified">
  <xs:include schemaLocation="{(SCHEMAS_DIR / 'thads' / 'types.xsd').as_uri()}"/>
  <xs:element name="Widget">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="Header" type="Header"/>
        <xs:element name="WidgetId" type="Code"/>
        <xs:element name="Label" type="Name"/>
        <xs:element name="Colour">
          <xs:simpleType>
            <xs:restriction base="xs:string">
              <xs:enumeration value="do"/>
              <xs:enumeration value="xanh"/>
            </xs:restriction>
          </xs:simpleType>
        </xs:element>
        <xs:element name="Price" type="PositiveAmount" minOccurs="0"/>
        <xs:group ref="Signature"/>
      </xs:sequence>
      <xs:attributeGroup ref="PacketAttributes"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""


@pytest.fixture
def widget_kinds(tmp_path: Path):
    (tmp_path / "widget.yaml").write_text(MAPPING, encoding="utf-8")
    (tmp_path / "widget.xsd").write_text(XSD, encoding="utf-8")
    return KINDS.with_kinds(KindSpec("widget", table="widgets", key="widget_code",
                                     outbound="lgsp", mapping=tmp_path / "widget.yaml",
                                     schema=tmp_path / "widget.xsd"))


def _widget_table(url: str) -> None:
    engine = make_engine(url)
    t = Table("widgets", MetaData(), Column("id", Integer, primary_key=True),
              Column("widget_code", String(40), unique=True), Column("label", String(200)),
              Column("colour", String(2)), Column("price", BigInteger),
              Column("updated_at", DateTime, nullable=False),
              Column("version", Integer, nullable=False))
    t.metadata.create_all(engine)
    at = dt.datetime(2026, 3, 1, 9, 0)
    with engine.begin() as c:
        c.execute(insert(t), [
            dict(id=1, widget_code="W-1", label="Bàn làm việc", colour="R", price=1_500_000,
                 updated_at=at, version=1),
            dict(id=2, widget_code="W-2", label="Ghế", colour="Z", price=None,
                 updated_at=at + dt.timedelta(seconds=1), version=1),
            dict(id=3, widget_code="W-3", label="Tủ hồ sơ", colour="X", price=None,
                 updated_at=at + dt.timedelta(seconds=2), version=2)])
    engine.dispose()


def test_a_kind_from_a_mapping_an_xsd_and_a_registry_entry_travels(tmp_path, pki,
                                                                  widget_kinds):
    source = f"sqlite:///{tmp_path}/enforcement.db"
    _widget_table(source)
    config = write_config(tmp_path, pki, source_db=source, routes="""
[[routes]]
name = "widgets-to-lgsp"
kind = "widget"
recipient = "000.00.00.G22"
""")
    settings = load_settings(config, environ={}, kinds=widget_kinds)
    route = settings.route("widgets-to-lgsp")
    assert (route.direction, route.channel) == ("out", "lgsp")  # the entry's defaults

    engine = make_engine(settings.url(settings.source.url))
    records = ChangeReader(engine, route.kind, 10, kinds=settings.kinds) \
        .read(SourceCursor.decode(None))
    assert [(r.key, r.version) for r in records] == [("W-1", 1), ("W-2", 1), ("W-3", 2)]

    builder = PacketBuilder(settings)
    built = [builder.build(r, route.recipient or "") for r in records]
    by_key = {b.source_key: b for b in built}
    assert by_key["W-2"].payload is None
    assert "widget W-2" in (by_key["W-2"].error or "")
    assert "field colour: 'Z' is not in code list widget_colour" in (by_key["W-2"].error or "")

    verifier = PacketVerifier(load_certificates(pki / "ca.crt"))
    schemas = SchemaRegistry.for_kinds(widget_kinds)
    mapping = MappingSet(widget_kinds)["widget"]
    for key in ("W-1", "W-3"):
        ex = by_key[key]
        assert ex.error is None and ex.payload is not None, ex.error
        root = verifier.verify(parse_untrusted(ex.payload, name=key), packet=key).root
        schemas.check(root, packet=key)
        assert root.tag == mapping.element
        back = mapping.from_xml(root)
        assert back["widget_code"] == key
        assert mapping.header_of(root)["Version"] == str(ex.source_version)
    assert mapping.from_xml(verifier.verify(by_key["W-1"].payload).root)["colour"] == "R"


def test_the_built_in_kinds_still_validate_beside_a_new_kind_of_their_namespace(
        widget_kinds):
    from tests.helpers import build_packet

    schemas = SchemaRegistry.for_kinds(widget_kinds)
    assert schemas.namespaces() == [NS]  # one schema compiled from both files
    for kind in ("case", "receipt", "judgment"):
        schemas.check(build_packet(kind), packet=kind)
