"""Schema registry: lxml decides valid or invalid fast; xmlschema explains why.

xmlschema is ~100x slower than libxml2, so it runs only after lxml has said "invalid", to
give the operator a line, a path and a reason per error. It runs on untrusted input before
any sender or signature gate, and its cost grows much faster than the input (one element
with 4,000 attributes: over a minute of CPU before its first error), so it explains only
within a budget: a document small enough in nodes, attributes per element and text, and
the first `max_errors` errors. Anything beyond is explained by libxml2's own error log,
and the report says its list is cut.

libxml2 records each `xs:ID` value it validates in the document's ID table, whose keys it
interns in the document's string dictionary; lxml gives every document one dictionary per
thread, kept for the life of the process. A unique packet Id per packet grew a sign worker by
about 60 bytes a packet (22 MB in a 400,000-packet backfill). So the fast check validates a
copy in which each plain `xs:ID` attribute value stands in as `id1`, `id2`, ... (equal values
alike): the verdict is the same, and the dictionary stays as small as the schemas.
"""

from __future__ import annotations

import copy
import itertools
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import xmlschema
from lxml import etree

from adapter.errors import SchemaInvalidError
from adapter.kinds import KINDS, SCHEMAS_DIR, KindRegistry

SCHEMA_DIR = SCHEMAS_DIR

#: errors listed in a report; the rest are counted (libxml2) or left unread (xmlschema).
MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True)
class DetailBudget:
    """What the detailed (xmlschema) report may be asked to explain. Real packets use a
    handful of attributes per element and a few thousand nodes."""

    #: elements plus attributes in the whole document
    nodes: int = 20_000
    #: attributes on one element (xmlschema's cost is worse than quadratic in these)
    attributes_per_element: int = 64
    #: characters of text and attribute values in the whole document
    text_chars: int = 4 * 1024 * 1024


DEFAULT_BUDGET = DetailBudget()

#: characters of one error's text (a value quoted in it is the sender's, of any length)
MAX_REASON_CHARS = 300


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit - 1]}… ({len(text)} characters)"


_XSD_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def _target_namespace(f: Path) -> str:
    return etree.parse(str(f), _XSD_PARSER).getroot().get("targetNamespace", "")


def _wrapper(namespace: str, files: list[Path]) -> str:
    includes = "".join(f'<xs:include schemaLocation="{f.as_uri()}"/>' for f in files)
    return (f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
            f'targetNamespace="{namespace}" elementFormDefault="qualified">{includes}'
            "</xs:schema>")


_XS = "http://www.w3.org/2001/XMLSchema"
_XS_ID_TYPES = {"ID", "IDREF", "IDREFS"}

#: an ASCII NCName: an `xs:ID` value libxml2 accepts as it is, as it accepts `id1`
_PLAIN_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def _schema_tree(files: list[Path]) -> list[etree._Element]:
    """The roots of `files` and of every local file they include, import or redefine."""
    seen: dict[Path, etree._Element] = {}
    todo = list(files)
    while todo:
        f = todo.pop()
        if f in seen or not f.is_file():
            continue
        root = seen[f] = etree.parse(str(f), _XSD_PARSER).getroot()
        for ref in root.iterchildren(f"{{{_XS}}}include", f"{{{_XS}}}import",
                                     f"{{{_XS}}}redefine"):
            loc = ref.get("schemaLocation") or ""
            if loc and "://" not in loc:
                todo.append((f.parent / loc).resolve())
    return list(seen.values())


def _is_xs_id(el: etree._Element, qname: str | None) -> bool:
    prefix, _, local = (qname or "").rpartition(":")
    return local in _XS_ID_TYPES and el.nsmap.get(prefix or None) == _XS


def id_attributes(files: list[Path]) -> frozenset[str]:
    """Names of the unqualified attributes declared `type="xs:ID"`, when these are the only
    ID or IDREF values the schemas know; otherwise none (a stand-in could then collide with
    an ID it does not replace, and the document is validated as it is)."""
    names: set[str] = set()
    for root in _schema_tree(files):
        qualified = root.get("attributeFormDefault") == "qualified"
        for el in root.iter(etree.Element):
            typed = [a for a in ("type", "base", "itemType") if _is_xs_id(el, el.get(a))]
            typed += [m for m in (el.get("memberTypes") or "").split() if _is_xs_id(el, m)]
            if not typed:
                continue
            local_attr = (el.tag == f"{{{_XS}}}attribute" and typed == ["type"]
                          and el.get("type", "").rpartition(":")[2] == "ID" and el.get("name")
                          and el.getparent() is not root
                          and el.get("form", "qualified" if qualified else "unqualified")
                          == "unqualified")
            if not local_attr:
                return frozenset()
            names.add(el.get("name", ""))
    return frozenset(names)


def _rich_schema(source: Path | str) -> xmlschema.XMLSchema10:
    if isinstance(source, Path):
        return xmlschema.XMLSchema10(str(source))
    return xmlschema.XMLSchema10(source)


@dataclass(frozen=True)
class SchemaIssue:
    line: int | None
    path: str | None
    reason: str

    def __str__(self) -> str:
        where = ", ".join(x for x in (self.line and f"line {self.line}", self.path) if x)
        return f"{where}: {self.reason}" if where else self.reason


@dataclass
class ValidationReport:
    valid: bool
    issues: list[SchemaIssue] = field(default_factory=list)
    #: more errors exist than `issues` lists
    truncated: bool = False
    #: why the detailed engine did not explain the errors ("" when it did)
    note: str = ""

    def summary(self) -> str:
        """One line: the count, and whether the list is cut."""
        n = len(self.issues)
        if self.truncated:
            return f"first {n} errors shown, the list is cut"
        return f"{n} error{'s' if n != 1 else ''}"


def over_budget(root: etree._Element, budget: DetailBudget = DEFAULT_BUDGET) -> str | None:
    """Why `root` is too big to explain in detail, or None. One linear walk."""
    nodes = chars = 0
    for el in root.iter():
        attrs = el.attrib if isinstance(el.tag, str) else {}
        n = len(attrs)
        if n > budget.attributes_per_element:
            name = etree.QName(el).localname
            return (f"element {name} (line {el.sourceline}) has {n} attributes "
                    f"(limit {budget.attributes_per_element})")
        nodes += 1 + n
        chars += len(el.text or "") + len(el.tail or "") + sum(len(v) for v in attrs.values())
        if nodes > budget.nodes:
            return f"more than {budget.nodes} elements and attributes"
        if chars > budget.text_chars:
            return f"more than {budget.text_chars} characters of text"
    return None


class SchemaRegistry:
    """Compiled schemas by namespace; build once per process and share."""

    def __init__(self, files: list[Path], *, budget: DetailBudget = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self._lxml: dict[str, etree.XMLSchema] = {}
        #: what xmlschema compiles for the detailed report: the file, or a wrapper text.
        self._sources: dict[str, Path | str] = {}
        self._rich: dict[str, xmlschema.XMLSchema10] = {}
        self._lock = threading.Lock()
        #: attributes validated with stand-in values, by namespace (see the module's text)
        self._id_names: dict[str, frozenset[str]] = {}
        #: the elements that carry one of them, found in C (a Python walk over every
        #: element cost as much as the validation itself)
        self._id_holders: dict[str, etree.XPath] = {}
        by_ns: dict[str, list[Path]] = {}
        for f in dict.fromkeys(Path(f).resolve() for f in files):
            by_ns.setdefault(_target_namespace(f), []).append(f)
        for ns, group in by_ns.items():
            self._id_names[ns] = names = id_attributes(group)
            if names:  # xs:ID names are NCNames: nothing to quote in the expression
                self._id_holders[ns] = etree.XPath("descendant-or-self::*[" + " or ".join(
                    f"@{n}" for n in sorted(names)) + "]")
            if len(group) == 1:
                self._sources[ns] = group[0]
                self._lxml[ns] = etree.XMLSchema(etree.parse(str(group[0]), _XSD_PARSER))
            else:  # several files of one namespace (a kind per file): one schema of them all
                text = _wrapper(ns, group)
                self._sources[ns] = text
                doc = etree.fromstring(text.encode(), _XSD_PARSER,
                                       base_url=str(group[0].parent) + "/")
                self._lxml[ns] = etree.XMLSchema(doc)

    @classmethod
    def default(cls) -> SchemaRegistry:
        """The schemas of the adapter's own mapped packet kinds."""
        return cls.for_kinds(KINDS)

    @classmethod
    def for_kinds(cls, kinds: KindRegistry) -> SchemaRegistry:
        return cls([p for s in kinds.mapped() if (p := s.schema_path()) is not None])

    def namespaces(self) -> list[str]:
        return list(self._lxml)

    def _schema_for(self, root: etree._Element) -> tuple[str, etree.XMLSchema]:
        ns = etree.QName(root).namespace or ""
        try:
            return ns, self._lxml[ns]
        except KeyError:
            raise SchemaInvalidError(f"no schema for namespace {ns!r} (root <{root.tag}>)",
                                     where="line 1") from None

    def is_valid(self, root: etree._Element) -> bool:
        ns, schema = self._schema_for(root)
        return schema.validate(self._stand_in(ns, root))

    def _stand_in(self, ns: str, root: etree._Element) -> etree._Element:
        """`root`, or a copy of it whose plain ID values are `id1`, `id2`, ... (equal values
        alike): libxml2 keeps every ID value it validates for the life of the process."""
        names = self._id_names.get(ns)
        if not names:
            return root
        stand_in = copy.deepcopy(root)
        seen: dict[str, str] = {}
        holders = self._id_holders[ns](stand_in)
        assert isinstance(holders, list)
        for el in holders:
            for name in names:
                value = el.get(name)
                if value is not None and _PLAIN_NCNAME.fullmatch(value):
                    el.set(name, seen.setdefault(value, f"id{len(seen) + 1}"))
        return stand_in

    def report(self, root: etree._Element, *,
               max_errors: int = MAX_REPORTED_ERRORS) -> ValidationReport:
        """Operator-facing detail: the first `max_errors` errors with line, path and reason."""
        ns, schema = self._schema_for(root)
        if self.is_valid(root):
            return ValidationReport(True)
        schema.validate(root)  # libxml2's own errors name the document's own values
        too_big = over_budget(root, self.budget)
        if too_big is None:
            issues = self._explain(ns, root, max_errors + 1)
            if issues:
                return ValidationReport(False, issues[:max_errors], len(issues) > max_errors)
            note = ""  # engines disagree: fall back to libxml2's own words.
        else:
            note = f"detailed report skipped: {too_big}; libxml2's errors shown"
        log = schema.error_log
        issues = [SchemaIssue(e.line, e.path, _short(e.message, MAX_REASON_CHARS))
                  for e in itertools.islice(log, max_errors)]
        return ValidationReport(False, issues, len(log) > max_errors, note)

    def _explain(self, ns: str, root: etree._Element, limit: int) -> list[SchemaIssue]:
        """At most `limit` errors from xmlschema, read lazily: it stops when we stop."""
        with self._lock:
            rich = self._rich.get(ns)
            if rich is None:
                rich = self._rich[ns] = _rich_schema(self._sources[ns])
        issues: list[SchemaIssue] = []
        for err in itertools.islice(rich.iter_errors(etree.ElementTree(root)), limit):
            line = getattr(err, "sourceline", None)
            reason = err.reason or str(err.message)
            value = err.obj if isinstance(err.obj, str | int) else None
            elem = getattr(err, "elem", None)
            if value is None and elem is not None:
                value = (elem.text or "").strip() or None
            if value is not None and (elem is None or len(elem) == 0):
                reason += f" (got {_short(str(value), 80)!r})"
            issues.append(SchemaIssue(line, err.path, _short(reason, MAX_REASON_CHARS)))
        return issues

    def check(self, root: etree._Element, *, packet: str | None = None) -> None:
        """Raise SchemaInvalidError naming the packet and the first error's line and path."""
        if self.is_valid(root):
            return
        report = self.report(root)
        first = report.issues[0]
        where = ", ".join(x for x in (first.line and f"line {first.line}", first.path) if x)
        details = [str(i) for i in report.issues]
        if report.note:
            details.append(report.note)
        if report.truncated:
            details.append(f"({report.summary()})")
        raise SchemaInvalidError(f"schema invalid: {first.reason}", packet=packet,
                                 where=where or None, details=details)
