"""What the service shows Prometheus: state read from the store at scrape time, and what
only the running process knows (attempts, latencies, rounds, breakers, revocation).

Each service has its own registry (never the client's global one), so tests and several
services in one interpreter do not collide. The figures read from the state database are
bounded by the backlog, not the history, except the delivered/cancelled counts, which are
recounted at most every `[metrics] totals_seconds` (adapter.store.metrics_queries says
what each query costs). A state database that cannot be read gives
`thads_state_db_up 0` and the other figures, never a failed scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from adapter.store import metrics_queries as mq
from adapter.store.base import utcnow

if TYPE_CHECKING:
    from adapter.config import Settings
    from adapter.engine.context import Context
    from adapter.store.records import AttemptOutcome, ClaimedExchange

log = logging.getLogger("adapter.metrics")

#: seconds from an exchange's creation (or replay) to its delivery: minutes normally,
#: hours when the platform was away.
LATENCY_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600,
                   12 * 3600, 24 * 3600, 72 * 3600)
ATTEMPT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BREAKER_STATES = ("closed", "open", "half_open")
#: the certificate and revocation figures read files: at most this often.
FILES_SECONDS = 60.0


class ServiceMetrics:
    def __init__(self, settings: Settings, ctx: Context, *,
                 signing_state: Callable[[], str | None] = lambda: None) -> None:
        self.settings, self.ctx = settings, ctx
        self.registry = CollectorRegistry()
        r = self.registry
        self.attempts = Counter(
            "thads_attempts", "Delivery attempts by outcome (delivered, duplicate, sent, "
            "rejected, transient, ...)", ["route", "outcome"], registry=r)
        self.delivery_latency = Histogram(
            "thads_delivery_latency_seconds", "From an exchange's creation (or replay) to its "
            "delivery, observed when the platform accepts it", ["route"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.attempt_duration = Histogram(
            "thads_attempt_duration_seconds", "Duration of each call to the platform",
            ["route"], buckets=ATTEMPT_BUCKETS, registry=r)
        self.received = Counter("thads_inbound_received", "Inbound packets received",
                                ["route"], registry=r)
        self.quarantined = Counter("thads_inbound_quarantined",
                                   "Inbound packets quarantined (not imported)", ["route"],
                                   registry=r)
        self.prepared = Counter("thads_prepared", "Packets prepared (mapped, validated, "
                                "signed)", ["route"], registry=r)
        self.refused = Counter("thads_prepare_refused", "Source records that could not "
                               "become a packet", ["route"], registry=r)
        self.last_success = Gauge(
            "thads_route_last_success_timestamp_seconds", "When a round of the route last "
            "finished without error (Unix time)", ["route", "job"], registry=r)
        self.rounds_failed = Counter("thads_route_rounds_failed", "Rounds that ended with an "
                                     "error (retried at the next interval)", ["route", "job"],
                                     registry=r)
        self.started = Gauge("thads_start_timestamp_seconds", "When the service started",
                             registry=r)
        self.started.set_to_current_time()
        ProcessCollector(registry=r)
        self.state = StateCollector(settings, ctx, signing_state)
        r.register(self.state)
        self._local = threading.local()

    # ---- what the service tells us ---------------------------------------------------

    def for_route(self, route: str | None) -> None:
        """The route whose attempts the store records next, in this thread."""
        self._local.route = route

    def observe_outcomes(self, outcomes: Sequence[AttemptOutcome],
                         claimed: dict[int, ClaimedExchange]) -> None:
        route = getattr(self._local, "route", None)
        now = utcnow()
        for o in outcomes:
            ex = claimed.get(o.exchange_id)
            name = route or (ex.kind if ex else "?")
            self.attempts.labels(name, o.outcome).inc()
            self.attempt_duration.labels(name).observe(max(0, o.duration_ms) / 1000)
            if o.outcome in ("delivered", "duplicate") and ex is not None:
                self.delivery_latency.labels(name).observe(
                    max(0.0, (now - ex.created_at).total_seconds()))

    def round_done(self, route: str, job: str) -> None:
        self.last_success.labels(route, job).set(time.time())

    def round_failed(self, route: str, job: str) -> None:
        self.rounds_failed.labels(route, job).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def observe_store(store, metrics: ServiceMetrics) -> None:
    """Count every attempt the store records in this process, after it is committed. The
    engines are not instrumented themselves: what the store wrote is what happened."""
    original = store.record_outcomes

    def recorded(outcomes, claimed, *args, **kwargs):
        result = original(outcomes, claimed, *args, **kwargs)
        try:
            metrics.observe_outcomes(outcomes, claimed)
        except Exception:  # figures must never fail a delivery round
            log.exception("attempts could not be counted for the metrics")
        return result

    store.record_outcomes = recorded


class StateCollector(Collector):
    """Figures read at scrape time from the store, the breakers and the certificates."""

    def __init__(self, settings: Settings, ctx: Context,
                 signing_state: Callable[[], str | None]) -> None:
        self.settings, self.ctx, self.signing_state = settings, ctx, signing_state
        self.routes = [r.name for r in settings.routes if r.enabled]
        self.outbound = [r.name for r in settings.routes if r.enabled and r.direction == "out"]
        self.channels = sorted({r.channel for r in settings.routes
                                if r.enabled and r.direction == "out"})
        self._lock = threading.Lock()
        self._history: dict[tuple[str, str], int] = {}
        self._history_at = -1e18
        self._unstamped = 0
        self._files: list[Metric] = []
        self._files_at = -1e18

    def describe(self) -> Iterable[Metric]:
        return []  # names depend on what is configured; collected at scrape time

    def collect(self) -> Iterable[Metric]:
        yield from self._store_metrics()
        yield self._breakers()
        yield from self._files_metrics()
        yield from self._revocation()

    # ---- the state database ----------------------------------------------------------

    def _store_metrics(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("thads_state_db_up", "1 when the state database answered "
                               "this scrape")
        try:
            out = list(self._read_store())
        except SQLAlchemyError as exc:
            log.warning("metrics: state database unavailable (%s)", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from out

    def _read_store(self) -> Iterable[Metric]:
        engine = self.ctx.state_engine
        counts = mq.state_counts(engine, self.routes, mq.BACKLOG)
        with self._lock:
            every = self.settings.metrics.totals_seconds
            if time.monotonic() - self._history_at >= every:
                self._history = mq.state_counts(engine, self.routes, mq.HISTORY)
                self._unstamped = mq.unstamped_checkpoints(engine)
                self._history_at = time.monotonic()
            counts.update(self._history)
            unstamped = self._unstamped
        ex = GaugeMetricFamily("thads_exchanges", "Exchanges by route and state",
                               labels=["route", "state"])
        for (route, state), n in sorted(counts.items()):
            ex.add_metric([route, state], n)
        yield ex
        oldest = mq.oldest_waiting(engine, self.outbound)
        now = utcnow()
        age = GaugeMetricFamily("thads_oldest_pending_age_seconds", "Age of the oldest "
                                "exchange waiting to be sent (0: none)", labels=["route"])
        for route in self.outbound:
            t = oldest.get(route)
            age.add_metric([route], max(0.0, (now - t).total_seconds()) if t else 0.0)
        yield age
        pos = mq.evidence_position(engine)
        if pos is not None:
            head, signed, _at = pos
            yield GaugeMetricFamily("thads_evidence_entries", "Entries in the evidence chain",
                                    value=head)
            yield GaugeMetricFamily("thads_evidence_entries_since_checkpoint",
                                    "Evidence entries not yet covered by a signed checkpoint",
                                    value=max(0, head - signed))
            yield GaugeMetricFamily("thads_checkpoints_unstamped", "Checkpoints still waiting "
                                    "for their RFC 3161 timestamp", value=unstamped)

    # ---- this process ----------------------------------------------------------------

    def _breakers(self) -> Metric:
        m = GaugeMetricFamily("thads_circuit_breaker_state", "1 for the state the circuit "
                              "breaker of the endpoint is in", labels=["endpoint", "state"])
        for channel in self.channels:
            view = self.ctx.breaker(channel).view()
            for st in BREAKER_STATES:
                m.add_metric([channel, st], 1 if view.state == st else 0)
        return m

    def _files_metrics(self) -> Iterable[Metric]:
        with self._lock:
            if time.monotonic() - self._files_at >= FILES_SECONDS:
                self._files = self._read_files()
                self._files_at = time.monotonic()
            files = list(self._files)
        yield from files
        stopped = self.signing_state()
        m = GaugeMetricFamily("thads_signing_stopped", "1 while our signing certificate is "
                              "revoked or expired and nothing is signed")
        m.add_metric([], 1 if stopped else 0)
        yield m

    def _read_files(self) -> list[Metric]:
        from adapter.crypto.expiry import certificate_expiry

        days = GaugeMetricFamily("thads_certificate_expiry_days", "Days until each configured "
                                 "certificate expires (negative: expired)",
                                 labels=["role", "subject"])
        bad = GaugeMetricFamily("thads_certificate_unreadable", "1 for a configured "
                                "certificate file that cannot be read", labels=["role", "path"])
        for e in certificate_expiry(self.settings):
            if e.days is None:
                bad.add_metric([e.role, e.path], 1)
            else:
                days.add_metric([e.role, e.subject], round(e.days, 3))
        return [days, bad]

    def _revocation(self) -> Iterable[Metric]:
        from adapter.crypto import revocation

        up = GaugeMetricFamily("thads_revocation_source_up", "1 when the revocation source "
                               "answered at its last use, 0 when it did not (absent: not "
                               "asked yet)", labels=["anchor", "kind", "source"])
        nxt = GaugeMetricFamily("thads_revocation_next_update_timestamp_seconds",
                                "nextUpdate of the source's current CRL or OCSP answer",
                                labels=["anchor", "kind", "source"])
        flagged = GaugeMetricFamily("thads_revocation_flagged", "Signatures accepted under "
                                    "the flag policy because this source could not answer",
                                    labels=["anchor", "kind", "source"])
        for st in revocation.status():
            labels = [st.anchor, st.kind, st.source]
            if st.reachable is not None:
                up.add_metric(labels, 1 if st.reachable else 0)
            if st.next_update is not None:
                nxt.add_metric(labels, st.next_update.timestamp())
            flagged.add_metric(labels, st.flagged)
        yield up
        yield nxt
        yield flagged

