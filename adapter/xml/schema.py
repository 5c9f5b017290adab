"""Schema registry: lxml decides valid or invalid fast; xmlschema explains why.

xmlschema is ~100x slower than libxml2, so it runs only after lxml has said "invalid", to
give the operator a line, a path and a reason per error.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import xmlschema
from lxml import etree

from adapter.errors import SchemaInvalidError
from adapter.kinds import KINDS, SCHEMAS_DIR, KindRegistry

SCHEMA_DIR = SCHEMAS_DIR


_XSD_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def _target_namespace(f: Path) -> str:
    return etree.parse(str(f), _XSD_PARSER).getroot().get("targetNamespace", "")


def _wrapper(namespace: str, files: list[Path]) -> str:
    includes = "".join(f'<xs:include schemaLocation="{f.as_uri()}"/>' for f in files)
    return (f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
            f'targetNamespace="{namespace}" elementFormDefault="qualified">{includes}'
            "</xs:schema>")


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


class SchemaRegistry:
    """Compiled schemas by namespace; build once per process and share."""

    def __init__(self, files: list[Path]) -> None:
        self._lxml: dict[str, etree.XMLSchema] = {}
        #: what xmlschema compiles for the detailed report: the file, or a wrapper text.
        self._sources: dict[str, Path | str] = {}
        self._rich: dict[str, xmlschema.XMLSchema10] = {}
        self._lock = threading.Lock()
        by_ns: dict[str, list[Path]] = {}
        for f in dict.fromkeys(Path(f).resolve() for f in files):
            by_ns.setdefault(_target_namespace(f), []).append(f)
        for ns, group in by_ns.items():
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
        _, schema = self._schema_for(root)
        return schema.validate(root)

    def report(self, root: etree._Element) -> ValidationReport:
        """Operator-facing detail: every error with line, path and reason."""
        ns, schema = self._schema_for(root)
        if schema.validate(root):
            return ValidationReport(True)
        with self._lock:
            rich = self._rich.get(ns)
            if rich is None:
                rich = self._rich[ns] = _rich_schema(self._sources[ns])
        issues: list[SchemaIssue] = []
        for err in rich.iter_errors(etree.ElementTree(root)):
            line = getattr(err, "sourceline", None)
            reason = err.reason or str(err.message)
            value = err.obj if isinstance(err.obj, str | int) else None
            elem = getattr(err, "elem", None)
            if value is None and elem is not None:
                value = (elem.text or "").strip() or None
            if value is not None and (elem is None or len(elem) == 0):
                reason += f" (got {value!r})"
            issues.append(SchemaIssue(line, err.path, reason))
        if not issues:  # engines disagree: fall back to libxml2's own words.
            issues = [SchemaIssue(e.line, e.path, e.message) for e in schema.error_log]
        return ValidationReport(False, issues)

    def check(self, root: etree._Element, *, packet: str | None = None) -> None:
        """Raise SchemaInvalidError naming the packet and the first error's line and path."""
        if self.is_valid(root):
            return
        report = self.report(root)
        first = report.issues[0]
        where = ", ".join(x for x in (first.line and f"line {first.line}", first.path) if x)
        raise SchemaInvalidError(f"schema invalid: {first.reason}", packet=packet,
                                 where=where or None, details=[str(i) for i in report.issues])
