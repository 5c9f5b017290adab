"""Declarative row <-> XML mapping, compiled once from the mapping file of each kind.

A mapping lists XML paths in schema order with the column each one comes from, its type
(transforms.py) and an optional code list. Repeating groups (`rows:`) map lists of child
rows. The same description drives both directions, so what we send and what we import can
never drift apart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lxml import etree

from adapter.errors import MappingError
from adapter.kinds import KINDS, MAPPINGS_DIR, KindRegistry
from adapter.mapping.transforms import FIELD_TYPES, VN_TZ, FieldType, FieldValueError
from adapter.mapping.vntext import amount_in_words, words_match_amount

#: code lists shared by every mapping; a mapping may add lists of its own (`codes:`).
SHARED_CODES = MAPPINGS_DIR / "codes.yaml"

#: namespace for deterministic packet ids: uuid5(PACKET_NAMESPACE, "kind/key/version").
PACKET_NAMESPACE = uuid.UUID("6f1c2b7e-3d94-5a0e-9b51-7c2d8e4f1a63")


_NAMESPACE_BYTES = PACKET_NAMESPACE.bytes


def packet_id(kind: str, source_key: str, version: int) -> str:
    """Same record, same version, same id: a re-extraction after a crash is a duplicate
    the receiver recognises, never a second exchange.

    `str(uuid.uuid5(PACKET_NAMESPACE, name))`, written out (RFC 4122: SHA-1 of namespace and
    name, version 5, variant 10): the uuid module's objects cost three times as much, and
    every packet's id is computed twice (when read from the source, when built)."""
    h = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{kind}/{source_key}/{version}".encode(),
                               usedforsecurity=False).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


@dataclass(frozen=True)
class PacketHeader:
    packet_id: str
    source_key: str
    version: int
    sender: str
    recipient: str
    created_at: dt.datetime

    @property
    def xml_id(self) -> str:
        return f"pkt-{self.packet_id}"


@dataclass
class FieldSpec:
    path: str
    column: str
    type: FieldType
    type_name: str
    required: bool = False
    codes: dict[str, str] | None = None
    codes_name: str | None = None
    amount_of: str | None = None  # for amount_words: the column holding the amount
    rows: str | None = None       # repeating group: the record key holding child rows
    min_rows: int = 0
    children: list[FieldSpec] = field(default_factory=list)
    #: `path` as Clark-notation tags, split once: building a packet walks them per field
    tags: tuple[str, ...] = ()

    @property
    def reverse_codes(self) -> dict[str, str] | None:
        return {v: k for k, v in self.codes.items()} if self.codes else None


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


class PacketMapping:
    """One packet kind: compiled field specs plus the namespace and root element name."""

    def __init__(self, spec: dict[str, Any], codes: dict[str, dict[str, str]],
                 source: str) -> None:
        self.source = source
        try:
            self.kind: str = spec["kind"]
            self.root: str = spec["packet"]
            self.namespace: str = spec["namespace"]
            self._ns = f"{{{self.namespace}}}"
            own = spec.get("codes") or {}
            clash = sorted(set(own) & set(codes))
            if clash:
                raise MappingError(f"code lists {', '.join(clash)} are already in codes.yaml",
                                   packet=source)
            self.fields = [self._compile(f, {**codes, **own}) for f in spec["fields"]]
        except KeyError as exc:
            raise MappingError(f"mapping file lacks {exc.args[0]!r}", packet=source) from None
        self._paths: dict[str, str] = {}

    @property
    def element(self) -> str:
        """The packet's root element in Clark notation ({namespace}Name)."""
        return self._ns + self.root

    def _compile(self, f: dict[str, Any], codes: dict[str, dict[str, str]]) -> FieldSpec:
        tags = tuple(self._ns + part for part in f["path"].split("/"))
        if "rows" in f:
            return FieldSpec(path=f["path"], column=f["rows"], type=FIELD_TYPES["text"],
                             type_name="rows", rows=f["rows"], min_rows=int(f.get("min", 0)),
                             children=[self._compile(c, codes) for c in f["fields"]],
                             tags=tags)
        type_name = f.get("type", "text")
        if type_name not in FIELD_TYPES:
            raise MappingError(f"unknown type {type_name!r} for {f['path']}", packet=self.source)
        code_map = None
        if "codes" in f:
            if f["codes"] not in codes:
                raise MappingError(f"unknown code list {f['codes']!r}", packet=self.source)
            code_map = {str(k): str(v) for k, v in codes[f["codes"]].items()}
        return FieldSpec(path=f["path"], column=f["column"], type=FIELD_TYPES[type_name],
                         type_name=type_name, required=bool(f.get("required", False)),
                         codes=code_map, codes_name=f.get("codes"), amount_of=f.get("of"),
                         tags=tags)

    # ---- row -> XML ------------------------------------------------------------------

    def to_xml(self, record: dict[str, Any], header: PacketHeader) -> etree._Element:
        """Build the unsigned packet; raise MappingError listing every bad field."""
        ns = self._ns
        root = etree.Element(ns + self.root, nsmap={None: self.namespace},
                             Id=header.xml_id)
        h = etree.SubElement(root, ns + "Header")
        for tag, value in (("PacketId", header.packet_id), ("SourceKey", header.source_key),
                           ("Version", str(header.version)), ("Sender", header.sender),
                           ("Recipient", header.recipient),
                           ("CreatedAt", header.created_at.astimezone(VN_TZ)
                            .replace(microsecond=0).isoformat())):
            etree.SubElement(h, ns + tag).text = value
        errors: list[str] = []
        self._fill(root, self.fields, record, errors, prefix="")
        if errors:
            raise MappingError("; ".join(errors), packet=f"{self.kind} {header.source_key}",
                               where=None)
        return root

    @staticmethod
    def _child(parent: etree._Element, open_path: list[tuple[str, etree._Element]],
               tags: tuple[str, ...]) -> etree._Element:
        """The element at `tags` below `parent`: each step reuses the last child when it has
        that tag (fields come in schema order), else appends one.

        `open_path` is the chain of elements the previous field of `parent` went through,
        which are the last children at each level (nothing was appended since): comparing
        tags with it gives the same elements as asking lxml for each last child, without
        building the tag strings lxml returns."""
        n, limit = 0, min(len(open_path), len(tags))
        while n < limit and open_path[n][0] == tags[n]:
            n += 1
        del open_path[n:]
        node = open_path[-1][1] if open_path else parent
        for tag in tags[n:]:
            node = etree.SubElement(node, tag)
            open_path.append((tag, node))
        return node

    def _fill(self, parent: etree._Element, specs: list[FieldSpec], record: dict[str, Any],
              errors: list[str], prefix: str) -> None:
        open_path = _last_children(parent)  # e.g. the Header to_xml wrote
        for spec in specs:
            if spec.rows:
                label = f"{prefix}{spec.column}"
                rows = record.get(spec.rows) or []
                if len(rows) < spec.min_rows:
                    errors.append(f"field {label}: at least {spec.min_rows} required, "
                                  f"found {len(rows)}")
                    continue
                if not rows:
                    continue
                holder = self._child(parent, open_path, spec.tags[:-1])
                leaf = spec.tags[-1]
                for i, row in enumerate(rows):
                    item = etree.SubElement(holder, leaf)
                    self._fill(item, spec.children, row, errors, prefix=f"{label}[{i}].")
                # the last item, and what its fields put in it, are the last children now
                open_path += [(leaf, item), *_last_children(item)]
                continue
            value = record.get(spec.column)
            if spec.amount_of is not None:
                value = self._amount_words(value, record.get(spec.amount_of), errors,
                                           f"{prefix}{spec.column}")
            if value is None or (isinstance(value, str) and not value.strip()):
                if spec.required:
                    errors.append(f"field {prefix}{spec.column}: required, but empty")
                continue
            try:
                if spec.codes is not None:
                    key = str(value).strip()
                    if key not in spec.codes:
                        raise FieldValueError(f"{key!r} is not in code list {spec.codes_name}")
                    text = spec.codes[key]
                else:
                    text = spec.type.to_xml(value)
            except FieldValueError as exc:
                errors.append(f"field {prefix}{spec.column}: {exc}")
                continue
            self._child(parent, open_path, spec.tags).text = text

    @staticmethod
    def _amount_words(words: Any, amount: Any, errors: list[str], label: str) -> Any:
        """Generate words when the source has none; check them when it has."""
        try:
            n = int(amount)
        except (TypeError, ValueError):
            return words  # the amount field reports its own error.
        if n <= 0:
            return words
        if words is None or not str(words).strip():
            return amount_in_words(n)
        if not words_match_amount(str(words), n):
            errors.append(f"field {label}: words {str(words)!r} do not read the amount {n} "
                          f"(expected {amount_in_words(n)!r})")
            return None
        return words

    # ---- XML -> row ------------------------------------------------------------------

    def header_of(self, root: etree._Element) -> dict[str, str]:
        h = root.find(self._ns + "Header")
        return {} if h is None else {etree.QName(c).localname: (c.text or "") for c in h}

    def from_xml(self, root: etree._Element) -> dict[str, Any]:
        """The record a packet describes, in the same shape `to_xml` takes."""
        if root.tag != self._ns + self.root:
            raise MappingError(f"expected <{self.root}> in {self.namespace}, got <{root.tag}>")
        errors: list[str] = []
        record = self._read(root, self.fields, errors, prefix="")
        if errors:
            raise MappingError("; ".join(errors), packet=f"{self.kind} {root.get('Id')}")
        return record

    def _clark(self, path: str) -> str:
        """A mapping path ("Court/Name") in Clark notation, built once per path."""
        clark = self._paths.get(path)
        if clark is None:
            clark = self._paths[path] = "/".join(self._ns + p for p in path.split("/"))
        return clark

    def _find(self, parent: etree._Element, path: str) -> etree._Element | None:
        return parent.find(self._clark(path))

    def _read(self, parent: etree._Element, specs: list[FieldSpec], errors: list[str],
              prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        # each tag's first child, as find() of a one-step path returns it: one pass over
        # the children instead of an ElementPath search per field
        first: dict[Any, etree._Element] = {}
        for child in parent:
            first.setdefault(child.tag, child)
        for spec in specs:
            if spec.rows:
                label = f"{prefix}{spec.column}"
                items = parent.findall(self._clark(spec.path))
                out[spec.rows] = [self._read(it, spec.children, errors, f"{label}[{i}].")
                                  for i, it in enumerate(items)]
                continue
            el = self._find(parent, spec.path) if "/" in spec.path else \
                first.get(self._clark(spec.path))
            if el is None or el.text is None:
                if spec.required:
                    errors.append(f"element {spec.path}: required, but missing "
                                  f"(line {parent.sourceline})")
                out[spec.column] = None
                continue
            text = el.text.strip()
            try:
                if spec.codes is not None:
                    rev = spec.reverse_codes or {}
                    if text not in rev:
                        raise FieldValueError(f"{text!r} is not in code list {spec.codes_name}")
                    out[spec.column] = rev[text]
                else:
                    out[spec.column] = spec.type.from_xml(text)
            except (FieldValueError, ValueError) as exc:
                errors.append(f"element {spec.path} (line {el.sourceline}): {exc}")
        return out


def _last_children(el: etree._Element) -> list[tuple[str, etree._Element]]:
    """The chain of last children below `el`: where the next field may continue."""
    chain: list[tuple[str, etree._Element]] = []
    while len(el):
        el = el[-1]
        chain.append((el.tag, el))
    return chain


class MappingSet:
    """The mapping of every mapped kind of a registry, by kind."""

    def __init__(self, kinds: KindRegistry = KINDS) -> None:
        codes = _load_yaml(SHARED_CODES) or {}
        self._by_kind: dict[str, PacketMapping] = {}
        for spec in kinds.mapped():
            path = spec.mapping_path()
            assert path is not None  # the registry refuses a mapped kind without one
            m = PacketMapping(_load_yaml(path), codes, source=str(path))
            if m.kind != spec.name:
                raise MappingError(f"mapping file is for kind {m.kind!r}, but the registry "
                                   f"names it for {spec.name!r}", packet=str(path))
            self._by_kind[spec.name] = m

    def __getitem__(self, kind: str) -> PacketMapping:
        return self._by_kind[kind]
