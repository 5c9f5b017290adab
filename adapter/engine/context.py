"""Everything a process builds once and shares: settings, databases, key, WSDL client,
worker pools. The service builds one Context at start; nothing else holds global state."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import gc
import logging
import multiprocessing
import os
import socket
import threading
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Protocol, cast

from adapter.config import Settings
from adapter.dbutil import make_engine
from adapter.errors import AdapterError, ConfigError
from adapter.privacy import mask_ids
from adapter.sources.changes import SourceRecord
from adapter.store.records import NewExchange
from adapter.store.repository import ExchangeStore
from adapter.store.states import RetryPolicy
from adapter.transports.base import InboundTransport, ItemOutcome, SubmitItem, Transport

log = logging.getLogger("adapter.context")


class ChannelTransport(Protocol):
    """What delivery needs of any channel (the LGSP transport does more: `Transport`)."""

    def submit_many(self, items: list[SubmitItem]) -> list[ItemOutcome]:
        ...

    def close(self) -> None:
        ...


def _lgsp(settings: Settings) -> Transport:
    from adapter.transports.lgsp import LgspTransport
    return LgspTransport(settings.lgsp, settings.path)


def _axis(settings: Settings) -> ChannelTransport:
    from adapter.transports.axis import AxisTransport
    return AxisTransport(settings.axis, settings.path,
                         organisation_id=settings.adapter.organisation_id)


#: how each channel of adapter.kinds.CHANNELS gets its transport (a new channel adds one).
TRANSPORTS: dict[str, Callable[[Settings], ChannelTransport]] = {"lgsp": _lgsp, "axis": _axis}


class Context:
    def __init__(self, settings: Settings, *, transport: Transport | None = None) -> None:
        self.settings = settings
        self.instance = settings.adapter.instance_name or f"{socket.gethostname()}:{os.getpid()}"
        self.state_engine = make_engine(settings.url(settings.adapter.state_db))
        self.store = ExchangeStore(self.state_engine, instance=self.instance,
                                   evidence=settings.audit.enabled)
        self.stopping = threading.Event()
        #: one transport per channel, built on first use (building one parses a WSDL)
        self._transports: dict[str, ChannelTransport] = (
            {} if transport is None else {"lgsp": transport})
        self._breakers: dict = {}
        self._sign_pool: cf.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.retry_policy = self._policy(settings.retry)

    @staticmethod
    def _policy(r) -> RetryPolicy:
        return RetryPolicy(max_attempts=r.max_attempts, base_delay=r.base_delay_seconds,
                           max_delay=r.max_delay_seconds,
                           max_age=dt.timedelta(hours=r.max_age_hours))

    def policy_for(self, route) -> RetryPolicy:
        """The route's own retry policy, or the common one."""
        return self._policy(route.retry) if route.retry is not None else self.retry_policy

    @cached_property
    def source_engine(self):
        return make_engine(self.settings.url(self.settings.source.url))

    @property
    def transport(self) -> Transport:
        """The LGSP platform's transport (inbound judgments, delivery status)."""
        return cast(Transport, self.transport_for("lgsp"))  # TRANSPORTS["lgsp"] builds one

    def breaker(self, channel: str):
        from adapter.engine.breaker import CircuitBreaker
        with self._lock:
            if channel not in self._breakers:
                r = self.settings.retry
                self._breakers[channel] = CircuitBreaker(
                    channel, threshold=r.breaker_failures, open_seconds=r.breaker_open_seconds)
            return self._breakers[channel]

    def transport_for(self, channel: str) -> ChannelTransport:
        with self._lock:
            if channel not in self._transports:
                try:
                    make = TRANSPORTS[channel]
                except KeyError:
                    raise ConfigError("routes", "channel", f"no transport for channel "
                                      f"{channel!r} (known: {', '.join(TRANSPORTS)})") from None
                self._transports[channel] = make(self.settings)
            return self._transports[channel]

    def inbound_transport_for(self, channel: str) -> InboundTransport:
        """The channel's transport, as the inbound pipeline uses it (list, fetch, answer)."""
        transport = self.transport_for(channel)
        if not isinstance(transport, InboundTransport):
            raise ConfigError("routes", "channel", f"channel {channel!r} cannot receive: its "
                              "transport does not list, fetch and acknowledge packets")
        return transport

    @cached_property
    def io_pool(self) -> cf.ThreadPoolExecutor:
        return cf.ThreadPoolExecutor(self.settings.lgsp.concurrency, thread_name_prefix="send")

    @cached_property
    def builder(self):
        from adapter.engine.build import PacketBuilder
        return PacketBuilder(self.settings)

    def _pool(self) -> cf.ProcessPoolExecutor:
        from adapter.engine import build
        with self._lock:
            if self._sign_pool is None:
                # spawn, not fork: this process runs threads (scheduler, sender pool).
                self._sign_pool = cf.ProcessPoolExecutor(
                    self.settings.service.sign_worker_count,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=build.init_worker,
                    initargs=(self.settings.source_file, None))
            return self._sign_pool

    def warm_up(self) -> None:
        """Start the signing workers now (each loads its key once), and build the routes'
        transports (a WSDL parsed, a schema compiled), not on the first batch."""
        # this process loads the key first: a missing token or a wrong PIN stops the start
        # here, once (ConfigError, exit 2), not in every worker (nor each PIN try over again)
        self.builder  # noqa: B018
        n = self.settings.service.sign_worker_count
        if n > 0:
            from adapter.engine import build
            list(self._pool().map(build.ping, range(n)))
        for channel in sorted({r.channel for r in self.settings.routes}):
            try:
                self.transport_for(channel)
            except AdapterError as exc:  # said again, per exchange, when it is used
                log.error("transport for %s unavailable: %s", channel, exc)
        # What the start built (WSDLs, compiled schemas, table metadata, modules) lives as
        # long as the process: the collector's full passes stop walking it (one such pass
        # cost ~50 ms, ~0.06 ms of CPU per received judgment).
        gc.freeze()

    def build_many(self, records: Sequence[SourceRecord], recipient: str) -> list[NewExchange]:
        if not records:
            return []
        workers = self.settings.service.sign_worker_count
        if workers <= 0 or len(records) < 8:
            return [self.builder.build(r, recipient) for r in records]
        from adapter.engine import build
        chunk = max(1, len(records) // (workers * 4))
        return list(self._pool().map(build.build_in_worker,
                                        [(r, recipient) for r in records], chunksize=chunk))

    @staticmethod
    def mask(text: str) -> str:
        return mask_ids(text)

    def close(self) -> None:
        self.stopping.set()
        if self._sign_pool is not None:
            self._sign_pool.shutdown(wait=True, cancel_futures=True)
        if "io_pool" in self.__dict__:
            self.io_pool.shutdown(wait=True)
        for transport in self._transports.values():
            transport.close()
        self.state_engine.dispose()
        if "source_engine" in self.__dict__:
            self.source_engine.dispose()
