"""Parse untrusted XML safely: no DTD, no entities, no network, bounded size, no recovery.

Every byte that comes from outside (platform answers, inbound packets, files an operator
hands us) goes through `parse_untrusted`. lxml alone still expands internal entities and
repairs broken input in recover mode; both are refused here, so callers cannot get it wrong.
"""

from __future__ import annotations

from lxml import etree

from adapter.errors import UnsafeXmlError

#: packets above this size are refused before parsing (attachments travel as files).
MAX_PACKET_BYTES = 64 * 1024 * 1024

_PARSER_OPTIONS = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    recover=False,
    remove_comments=False,
    remove_pis=False,
    collect_ids=True,
)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(**_PARSER_OPTIONS)


def parse_untrusted(data: bytes, *, name: str = "<input>",
                    max_bytes: int = MAX_PACKET_BYTES) -> etree._Element:
    """Parse bytes from outside; raise UnsafeXmlError naming the input and the line."""
    if not isinstance(data, bytes | bytearray):
        raise UnsafeXmlError("expected bytes, got text (encode before parsing)", packet=name)
    if len(data) > max_bytes:
        raise UnsafeXmlError(f"{len(data)} bytes exceed the limit of {max_bytes}", packet=name)
    if not data.strip():
        raise UnsafeXmlError("empty document", packet=name)
    start = bytes(data[:1024]).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not start.startswith(b"<"):
        junk = start.split(b"<", 1)[0][:20]
        raise UnsafeXmlError(f"{len(junk)} stray bytes {junk!r} before the XML declaration",
                             packet=name, where="line 1")
    try:
        tree = etree.fromstring(bytes(data), _parser()).getroottree()
    except etree.XMLSyntaxError as exc:
        line = getattr(exc, "lineno", None)
        raise UnsafeXmlError(f"not well-formed XML: {exc.msg}", packet=name,
                             where=f"line {line}" if line else None) from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise UnsafeXmlError("DOCTYPE declarations are refused (entity and DTD attacks)",
                             packet=name, where="line 1")
    root = tree.getroot()
    for node in root.iter(etree.Entity):
        raise UnsafeXmlError(f"entity reference &{node.name}; refused", packet=name,
                             where=f"line {node.sourceline}")
    return root


def serialize(element: etree._Element) -> bytes:
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8")
