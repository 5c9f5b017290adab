"""Outbound and inbound pipelines, and the per-process context they share."""
