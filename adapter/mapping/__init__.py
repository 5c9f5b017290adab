"""Declarative mappings between enforcement-database rows and THADS packets."""

from adapter.mapping.engine import MappingSet, PacketHeader, PacketMapping, packet_id

__all__ = ["MappingSet", "PacketHeader", "PacketMapping", "packet_id"]
