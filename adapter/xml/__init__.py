"""The one place untrusted XML is parsed, and the schema registry."""

from adapter.xml.safe import MAX_PACKET_BYTES, parse_untrusted, serialize
from adapter.xml.schema import SchemaRegistry, ValidationReport

__all__ = ["MAX_PACKET_BYTES", "SchemaRegistry", "ValidationReport", "parse_untrusted",
           "serialize"]
