"""Enforcement databases: demo schema, synthetic data, change capture."""

from adapter.sources.changes import ChangeReader, SourceCursor, SourceRecord

__all__ = ["ChangeReader", "SourceCursor", "SourceRecord"]
