"""The packet-kind registry: consistent entries, clear refusals, and every mapped kind's
mapping, XSD element and source table agreeing with each other."""

from __future__ import annotations

import pytest

from adapter.errors import MappingError
from adapter.kinds import KINDS, KindRegistry, KindSpec, UnknownKind
from adapter.mapping import MappingSet
from adapter.sources.models import SourceBase
from adapter.xml.schema import SchemaRegistry


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(UnknownKind) as ei:
        KINDS["fax"]
    assert str(ei.value) == ("unknown packet kind 'fax': known kinds are 'case', 'receipt', "
                             "'judgment', 'edoc', 'status' or 'debtor'")


@pytest.mark.parametrize(("spec", "reason"), [
    (KindSpec("case", table="t", key="k", outbound="lgsp", mapping="m", schema="s"),
     "registered twice"),
    (KindSpec("x", table="t", key="k", outbound="fax", mapping="m", schema="s"),
     "unknown channel 'fax'"),
    (KindSpec("x", table="t", key="k", outbound="lgsp"), "needs a mapping file and a schema"),
])
def test_the_registry_refuses_inconsistent_entries(spec, reason):
    with pytest.raises(ValueError, match=reason):
        KINDS.with_kinds(spec)


def test_every_mapped_kind_agrees_with_its_xsd_and_its_table():
    mappings, schemas = MappingSet(), SchemaRegistry.default()
    for spec in KINDS.mapped():
        m = mappings[spec.name]
        assert m.kind == spec.name
        assert m.namespace in schemas.namespaces()
        table = SourceBase.metadata.tables[spec.table]
        assert {spec.key, spec.version_column, "id", "updated_at"} <= set(table.c.keys())
    for spec in KINDS:
        assert spec.table in SourceBase.metadata.tables, spec.name


def test_a_mapping_file_must_be_for_the_kind_its_entry_names(tmp_path):
    (tmp_path / "m.yaml").write_text(
        "kind: widget\npacket: W\nnamespace: urn:x\nfields: []\n", encoding="utf-8")
    kinds = KindRegistry([KindSpec("gadget", table="t", key="k", outbound="lgsp",
                                   mapping=tmp_path / "m.yaml", schema="thads/exchange.xsd")])
    with pytest.raises(MappingError, match="for kind 'widget', but the registry names it"):
        MappingSet(kinds)


def test_a_mapping_may_not_redefine_a_shared_code_list(tmp_path):
    (tmp_path / "m.yaml").write_text(
        "kind: widget\npacket: W\nnamespace: urn:x\ncodes:\n  party_kind: {A: a}\n"
        "fields: []\n", encoding="utf-8")
    kinds = KindRegistry([KindSpec("widget", table="t", key="k", outbound="lgsp",
                                   mapping=tmp_path / "m.yaml", schema="thads/exchange.xsd")])
    with pytest.raises(MappingError, match="party_kind are already in codes.yaml"):
        MappingSet(kinds)
