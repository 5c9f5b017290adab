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

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


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
        self._files: dict[str, Path] = {}
        self._rich: dict[str, xmlschema.XMLSchema10] = {}
        self._lock = threading.Lock()
        for f in files:
            doc = etree.parse(str(f), etree.XMLParser(resolve_entities=False, no_network=True))
            ns = doc.getroot().get("targetNamespace", "")
            self._lxml[ns] = etree.XMLSchema(doc)
            self._files[ns] = f

    @classmethod
    def default(cls) -> SchemaRegistry:
        return cls(sorted((SCHEMA_DIR / "thads").glob("exchange.xsd")))

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
                rich = self._rich[ns] = xmlschema.XMLSchema10(str(self._files[ns]))
        issues: list[SchemaIssue] = []
        for err in rich.iter_errors(etree.ElementTree(root)):
            line = getattr(err, "sourceline", None)
            reason = err.reason or str(err.message)
            value = err.obj if isinstance(err.obj, str | int) else None
            if value is None and getattr(err, "elem", None) is not None:
                value = (err.elem.text or "").strip() or None
            elem = getattr(err, "elem", None)
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
