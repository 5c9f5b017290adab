"""The detailed schema report is bounded: untrusted input reaches it before any sender or
signature gate, and xmlschema's cost grows far faster than the input (4,000 attributes on
one element: minutes of CPU). Work is counted here, never timed."""

import itertools

import pytest
import xmlschema
from lxml import etree

from adapter.cli.main import main
from adapter.edxml import build_document, parse_edxml
from adapter.errors import SchemaInvalidError
from adapter.kinds import KINDS
from adapter.xml.safe import serialize
from adapter.xml.schema import MAX_REPORTED_ERRORS, DetailBudget, SchemaRegistry
from tests.helpers import N, build_packet
from tests.unit.edxml.test_build_and_sign import document

#: the XSD files of every mapped kind (one namespace may span several files)
SCHEMA_FILES = [p for s in KINDS.mapped() if (p := s.schema_path()) is not None]


class Spy:
    """Counts calls of xmlschema's error iterator and the errors taken from it."""

    def __init__(self, monkeypatch) -> None:
        self.calls = self.pulled = 0
        real = xmlschema.XMLSchema10.iter_errors
        spy = self

        def iter_errors(schema, *args, **kwargs):
            spy.calls += 1
            for err in real(schema, *args, **kwargs):
                spy.pulled += 1
                yield err

        monkeypatch.setattr(xmlschema.XMLSchema10, "iter_errors", iter_errors)


@pytest.fixture
def spy(monkeypatch) -> Spy:
    return Spy(monkeypatch)


def _with_attributes(el: etree._Element, n: int) -> None:
    for i in range(n):
        el.set(f"extra{i}", "x")


def _attributes_in_text(data: bytes, tag: bytes, n: int) -> bytes:
    """`n` attributes added to the first `tag` element, in the text (lxml's set() is
    quadratic in the attributes an element already has)."""
    extra = b"".join(b' extra%d="x"' % i for i in range(n))
    assert data.count(b"<" + tag + b">") >= 1
    return data.replace(b"<" + tag + b">", b"<" + tag + extra + b">", 1)


def test_an_edxml_document_with_4000_extra_attributes_is_reported_briefly(spy):
    data = _attributes_in_text(serialize(build_document(document())), b"edXML:Subject", 4000)
    with pytest.raises(SchemaInvalidError) as ei:
        parse_edxml(data, name="attributes")
    details = ei.value.details
    assert len(details) == MAX_REPORTED_ERRORS + 2
    assert "extra0" in details[0] and "line" in details[0]
    assert "4000 attributes (limit 64)" in details[-2]
    assert "the list is cut" in details[-1]
    assert spy.calls == 0  # the document is over budget: xmlschema never sees it


def test_packet_validate_reports_a_60000_attribute_packet_and_says_the_list_is_cut(
        tmp_path, capsys, spy):
    f = tmp_path / "attributes.xml"
    f.write_bytes(_attributes_in_text(serialize(build_packet("case")), b"Officer", 60_000))
    assert main(["packet", "validate", str(f)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{f}: INVALID (first {MAX_REPORTED_ERRORS} errors shown, the list is cut)"
    listed = [line for line in out if "extra" in line and "not allowed" in line]
    assert len(listed) == MAX_REPORTED_ERRORS
    assert any("60000 attributes (limit 64)" in line for line in out)
    assert spy.calls == 0


def test_within_the_budget_xmlschema_explains_only_the_first_errors(spy):
    root = build_packet("case")
    for el in itertools.islice(root.iter(etree.Element), 1, 31):  # 30 elements, 40 each
        _with_attributes(el, 40)
    root = etree.fromstring(etree.tostring(root, pretty_print=True))
    report = SchemaRegistry.default().report(root)
    assert not report.valid and report.truncated and report.note == ""
    assert len(report.issues) == MAX_REPORTED_ERRORS
    assert all(i.line and "extra" in i.reason for i in report.issues)
    assert spy.calls == 1 and spy.pulled == MAX_REPORTED_ERRORS + 1


def test_a_document_over_the_node_budget_gets_libxml2s_errors(spy):
    root = build_packet("case")
    root.find(f"{N}OfficeCode").text = "28.22.H17"
    small = SchemaRegistry(SCHEMA_FILES, budget=DetailBudget(nodes=10))
    report = small.report(root)
    assert not report.valid and not report.truncated
    assert "more than 10 elements and attributes" in report.note
    assert len(report.issues) >= 1 and "28.22.H17" in report.issues[0].reason
    assert spy.calls == 0


def test_a_few_errors_are_all_listed_in_detail(spy):
    root = build_packet("case")
    root.find(f"{N}OfficeCode").text = "28.22.H17"
    report = SchemaRegistry.default().report(etree.fromstring(etree.tostring(root)))
    assert (len(report.issues), report.truncated, report.note) == (1, False, "")
    assert report.summary() == "1 error"
    assert spy.calls == 1


@pytest.mark.parametrize("budget", [DetailBudget(), DetailBudget(nodes=10)],
                         ids=["xmlschema", "libxml2"])
def test_a_long_value_is_quoted_short(budget):
    root = build_packet("case")
    root.find(f"{N}OfficeCode").text = "X" * 100_000
    report = SchemaRegistry(SCHEMA_FILES, budget=budget).report(root)
    assert not report.valid and report.issues
    assert all(len(str(i)) < 500 for i in report.issues)
    assert any("XXXX" in i.reason for i in report.issues)
