"""Channels to the national platforms behind one small interface."""

from adapter.transports.base import PlatformReceipt, Transport

__all__ = ["PlatformReceipt", "Transport"]
