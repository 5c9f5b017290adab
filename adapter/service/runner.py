"""`thads-adapter run`: one APScheduler per process, a prepare and a deliver job per route.

Scheduler settings are deliberate (PITFALLS.md): the in-memory job store is never shared
between processes (instances coordinate through row claims), `misfire_grace_time=None` so a
late run is run rather than silently skipped, `coalesce=True` and `max_instances=1` so a
slow round is never overlapped by itself. A job that found work asks to run again at once,
so a backlog drains without waiting for the next interval.

SIGTERM/SIGINT: stop claiming, let the running round finish and record its outcomes, then
exit. Whatever a kill interrupts is covered by leases and deterministic packet ids.

Under systemd (`Type=notify`) the service says READY=1 once its workers are warm and its
scheduler runs, keeps STATUS= to the last rounds' counts, and a heartbeat job on an
executor of its own sends WATCHDOG=1: if the scheduler stops dispatching, the pings stop
and systemd restarts the service. Before each prepare round and each checkpoint our own
certificate is checked: revoked or expired, nothing is signed (one error line, the metrics
and `status` say so) while delivery of what was signed before goes on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.exc import SQLAlchemyError

from adapter.config import Settings
from adapter.engine.axis_inbound import AxisInbound
from adapter.engine.context import Context
from adapter.engine.inbound import InboundEngine, PullStats
from adapter.engine.outbound import OutboundEngine
from adapter.service.lock import InstanceLock
from adapter.service.notify import Notifier

if TYPE_CHECKING:
    from adapter.service.endpoint import Endpoint
    from adapter.service.metrics import ServiceMetrics

log = logging.getLogger("adapter.service")

#: seconds between heartbeats without a systemd watchdog (for /readyz)
HEARTBEAT_SECONDS = 5.0
#: seconds between revocation refreshes; certificate expiry is logged once a day
CERTIFICATES_SECONDS = 300.0


@dataclass
class RouteProgress:
    prepare_rounds: int = 0
    last_prepared: int = -1
    totals: dict[str, int] = field(default_factory=dict)
    #: the counts of the route's last round that did something (for STATUS=)
    last_round: str = ""

    def add(self, **counts: int) -> None:
        for k, v in counts.items():
            self.totals[k] = self.totals.get(k, 0) + v


class Service:
    def __init__(self, settings: Settings, ctx: Context | None = None, *,
                 notifier: Notifier | None = None,
                 metrics: ServiceMetrics | None = None) -> None:
        self.settings = settings
        self.ctx = ctx or Context(settings)
        self.notifier = notifier or Notifier(None)
        self.metrics = metrics
        #: why signing is stopped (our certificate revoked or expired), None while it may sign
        self.signing_stopped: str | None = None
        self.heartbeat_seconds = (self.notifier.watchdog_seconds / 2
                                  if self.notifier.watchdog_seconds else HEARTBEAT_SECONDS)
        self.last_heartbeat: float | None = None
        self._expiry_logged: dt.date | None = None
        #: set when run_service installed the handlers before the warm-up
        self.signals_installed = False
        if metrics is not None:
            from adapter.service.metrics import observe_store
            observe_store(self.ctx.store, metrics)
        self.engine = OutboundEngine(self.ctx)
        self.inbound = InboundEngine(self.ctx)
        self.axis_inbound = AxisInbound(self.ctx)
        self.routes = [r for r in settings.routes if r.enabled]
        self.progress = {r.name: RouteProgress() for r in self.routes}
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._wanted: set[str] = set()
        self.scheduler: BackgroundScheduler | None = None
        self.started_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    # ---- jobs ------------------------------------------------------------------------

    def _prepare_job(self, name: str) -> None:
        with self._running(f"prepare:{name}"):
            route = self.settings.route(name)
            p = self.progress[name]
            if not self.may_sign():
                p.last_prepared = 0  # nothing this service can do for the route now
                p.prepare_rounds += 1
                return
            try:
                stats = self.engine.prepare(route)
            except Exception:
                log.exception("route %s: prepare round failed; will try again", name)
                self._round_failed(name, "prepare")
                return
            p.add(prepared=stats.prepared, rejected=stats.rejected)
            p.last_prepared = stats.prepared + stats.rejected
            p.prepare_rounds += 1
            self._round_done(name, "prepare")
            if self.metrics is not None:
                self.metrics.prepared.labels(name).inc(stats.prepared)
                self.metrics.refused.labels(name).inc(stats.rejected)
            if stats.prepared or stats.rejected:
                p.last_round = f"prepared {stats.prepared}, refused {stats.rejected}"
                log.info("route %s: %d packets prepared, %d refused", name, stats.prepared,
                         stats.rejected)
            if stats.prepared:
                self._kick(f"deliver:{name}")

    def _deliver_job(self, name: str) -> None:
        with self._running(f"deliver:{name}"):
            route = self.settings.route(name)
            p = self.progress[name]
            if self.metrics is not None:
                self.metrics.for_route(name)
            try:
                stats = self.engine.deliver(route)
            except Exception:
                log.exception("route %s: delivery round failed; will try again", name)
                self._round_failed(name, "deliver")
                return
            finally:
                if self.metrics is not None:
                    self.metrics.for_route(None)
            p.add(delivered=stats.delivered, retrying=stats.retrying, failed=stats.failed)
            self._round_done(name, "deliver")
            if stats.delivered or stats.failed or stats.retrying:
                p.last_round = (f"delivered {stats.delivered}, retrying {stats.retrying}, "
                                f"failed {stats.failed}")
                log.info("route %s: %d delivered, %d waiting to retry, %d failed", name,
                         stats.delivered, stats.retrying, stats.failed)

    def _pull_job(self, name: str) -> None:
        with self._running(f"pull:{name}"):
            route = self.settings.route(name)
            p = self.progress[name]
            try:
                if route.channel == "axis":
                    a = self.axis_inbound.pull(route)
                    stats = PullStats(received=a.received, imported=a.accepted + a.statuses,
                                      quarantined=a.rejected, acknowledged=a.acknowledged)
                else:
                    stats = self.inbound.pull(route)
            except Exception as exc:
                log.warning("route %s: pull round failed (%s); will try again", name, exc)
                p.last_prepared = -1
                self._round_failed(name, "pull")
                return
            p.add(received=stats.received, imported=stats.imported,
                  quarantined=stats.quarantined, acknowledged=stats.acknowledged)
            p.last_prepared = stats.received + stats.acknowledged
            p.prepare_rounds += 1
            self._round_done(name, "pull")
            if self.metrics is not None:
                self.metrics.received.labels(name).inc(stats.received)
                self.metrics.quarantined.labels(name).inc(stats.quarantined)
            if stats.received or stats.acknowledged:
                p.last_round = (f"received {stats.received}, imported {stats.imported}, "
                                f"quarantined {stats.quarantined}")
                log.info("route %s: %d received, %d imported, %d quarantined", name,
                         stats.received, stats.imported, stats.quarantined)
                self._kick(f"pull:{name}")

    def _checkpoint_job(self, force: bool = False) -> None:
        """Sign the chain's tip when enough time or enough entries have passed."""
        from adapter.audit import checkpoint

        a = self.settings.audit
        try:
            head = self.ctx.store.evidence_entries()
            if not head:
                return
            last = checkpoint.summary(self.ctx.state_engine)
            due = force or last.last_at is None \
                or head - last.last_seq >= a.checkpoint_entries \
                or (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(last.last_at)
                    ).total_seconds() >= a.checkpoint_seconds
            if due and self.may_sign() and checkpoint.make_checkpoint(
                    self.ctx.state_engine, self.ctx.builder.identity):
                log.info("evidence checkpoint signed at entry %d", head)
            if a.tsa_url:
                stamped, error = checkpoint.stamp_pending(self.ctx.state_engine, a.tsa_url)
                if error:
                    log.warning("timestamp authority: %s; checkpoints wait for their stamp "
                                "(traffic goes on)", error)
                elif stamped:
                    log.info("%d checkpoints timestamped", stamped)
        except Exception:
            log.exception("evidence checkpoint failed; will try again")

    def may_sign(self, now: dt.datetime | None = None) -> bool:
        """False (one error line when it starts) while our certificate in use now is
        revoked or expired; True again once it is usable."""
        from adapter.crypto.revocation import OwnCertificateUnusable, check_own_certificate

        now = now or dt.datetime.now(dt.UTC)
        try:
            cert = self.ctx.builder.identity.at(now).cert
            check_own_certificate(self.settings, cert=cert, at=now)
        except OwnCertificateUnusable as exc:
            reason = str(exc)
            with self._lock:
                changed, self.signing_stopped = self.signing_stopped != reason, reason
            if changed:
                log.error("%s", reason)
                self.notifier.status(reason)
            return False
        with self._lock:
            was, self.signing_stopped = self.signing_stopped, None
        if was:
            log.info("signing resumed: our certificate is usable again")
        return True

    def _round_done(self, route: str, job: str) -> None:
        if self.metrics is not None:
            self.metrics.round_done(route, job)

    def _round_failed(self, route: str, job: str) -> None:
        if self.metrics is not None:
            self.metrics.round_failed(route, job)

    def status_line(self) -> str:
        """STATUS= for systemd: the last round of each route that did something."""
        if self.signing_stopped:
            return self.signing_stopped
        parts = [f"{n}: {p.last_round}" for n, p in self.progress.items() if p.last_round]
        return "; ".join(parts) or "running, nothing to do yet"

    def _heartbeat_job(self) -> None:
        """Runs on the scheduler's own executor: proof that the scheduler dispatches."""
        self.last_heartbeat = time.monotonic()
        self.notifier.send("WATCHDOG=1", f"STATUS={self.status_line()}")

    def _certificates_job(self) -> None:
        """Bring the revocation sources up to date; log expiry warnings once a day."""
        from adapter.crypto import expiry, revocation, trust

        try:
            today = dt.datetime.now(dt.UTC).date()
            if self._expiry_logged != today:
                expiry.log_expiry_warnings(self.settings)
                self._expiry_logged = today
            checker = trust.revocation_check()
            if isinstance(checker, revocation.RevocationChecker):
                checker.refresh()
        except Exception:
            log.exception("certificate check failed; will try again")

    def scheduler_problem(self) -> str | None:
        """For /readyz: None while the scheduler runs and its heartbeat is fresh."""
        sched = self.scheduler
        if sched is None or not sched.running:
            return "the scheduler is not running"
        if self.last_heartbeat is None:
            return "the scheduler has not dispatched its first job yet"
        age = time.monotonic() - self.last_heartbeat
        if age > max(3 * self.heartbeat_seconds, 15.0):
            return f"no heartbeat from the scheduler for {age:.0f}s"
        return None

    @contextlib.contextmanager
    def _running(self, job_id: str):
        """Mark a job busy; if someone asked for it meanwhile, run it again right after."""
        with self._lock:
            self._busy.add(job_id)
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard(job_id)
                again = job_id in self._wanted
                self._wanted.discard(job_id)
            if again:
                self._kick(job_id)

    def _kick(self, job_id: str) -> None:
        """Run a job now instead of at its next interval (never overlapping itself)."""
        if self.scheduler is None or self.ctx.stopping.is_set():
            return
        with self._lock:
            if job_id in self._busy:
                self._wanted.add(job_id)
                return
        with contextlib.suppress(JobLookupError):  # job gone during shutdown
            self.scheduler.modify_job(job_id, next_run_time=dt.datetime.now(dt.UTC))

    # ---- running ---------------------------------------------------------------------

    def run_once(self) -> int:
        for r in self.routes:
            if r.direction == "in":
                self._pull_job(r.name)
            else:
                self._prepare_job(r.name)
                self._deliver_job(r.name)
        return self._exit_code()

    def run(self, *, until_idle: bool = False, poll: float = 0.2) -> int:
        sched = BackgroundScheduler(
            # the heartbeat has an executor of its own: long rounds never starve it, so
            # only a scheduler that stops dispatching stops the watchdog pings
            executors={"default": ThreadPoolExecutor(max(2, 2 * len(self.routes)) + 2),
                       "heartbeat": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.UTC)
        now = dt.datetime.now(dt.UTC)
        for r in self.routes:
            if r.direction == "in":
                sched.add_job(self._pull_job, "interval", args=[r.name], id=f"pull:{r.name}",
                              seconds=r.interval_seconds, next_run_time=now)
                continue
            sched.add_job(self._prepare_job, "interval", args=[r.name], id=f"prepare:{r.name}",
                          seconds=r.interval_seconds, next_run_time=now)
            sched.add_job(self._deliver_job, "interval", args=[r.name], id=f"deliver:{r.name}",
                          seconds=min(r.interval_seconds, 5.0), next_run_time=now)
        if self.settings.audit.enabled:
            sched.add_job(self._checkpoint_job, "interval", id="checkpoint",
                          seconds=min(self.settings.audit.checkpoint_seconds, 60.0),
                          next_run_time=now)
        sched.add_job(self._heartbeat_job, "interval", id="heartbeat", executor="heartbeat",
                      seconds=self.heartbeat_seconds, next_run_time=now)
        sched.add_job(self._certificates_job, "interval", id="certificates",
                      seconds=CERTIFICATES_SECONDS, next_run_time=now)
        self.scheduler = sched
        previous = {} if self.signals_installed else self._install_signals()
        sched.start()
        log.info("service started: %d routes (%s)", len(self.routes),
                 ", ".join(r.name for r in self.routes))
        if not self.ctx.stopping.is_set():  # a SIGTERM during the warm-up: never ready
            self.notifier.ready(self.status_line())
        try:
            while not self.ctx.stopping.wait(poll):
                if until_idle and self._idle():
                    log.info("nothing left to do: stopping (--until-idle)")
                    break
        finally:
            if not self.ctx.stopping.is_set():
                self.notifier.stopping()
            self.ctx.stopping.set()
            sched.shutdown(wait=True)
            if self.settings.audit.enabled:
                self._checkpoint_job(force=True)  # leave the tip signed
            self.scheduler = None
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self._exit_code()

    def _idle(self) -> bool:
        with self._lock:
            if self._busy or self._wanted or any(
                    p.prepare_rounds == 0 or p.last_prepared != 0
                    for p in self.progress.values()):
                return False
        try:
            return not self.ctx.store.has_outstanding()
        except SQLAlchemyError as exc:  # the state database is away: wait for it
            log.warning("state database unavailable (%s); waiting", exc.__class__.__name__)
            return False

    def _install_signals(self) -> dict:
        """SIGTERM/SIGINT set the stopping flag; returns the handlers they replace."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum, _frame) -> None:
            log.info("%s received: finishing the running round, then stopping",
                     signal.Signals(signum).name)
            self.notifier.stopping()
            self.ctx.stopping.set()

        return {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}

    def _exit_code(self) -> int:
        """1 when outbound exchanges failed during this run or signing is stopped."""
        if self.signing_stopped:
            return 1
        return 1 if self.ctx.store.failed_outbound_since(self.started_at) else 0

    _ORDER = ("prepared", "rejected", "delivered", "retrying", "failed", "received",
              "imported", "quarantined", "acknowledged")

    def summary(self) -> dict[str, dict[str, int]]:
        return {name: {k: p.totals.get(k, 0) for k in self._ORDER if k in p.totals}
                for name, p in self.progress.items()}


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its exit code, each route's totals and how long it took."""

    code: int
    summary: dict[str, dict[str, int]]
    elapsed: float


def require_schema(settings: Settings) -> None:
    """Refuse to start on a state database that is not at this release's revision
    (SchemaVersionError: one line naming the command to run, exit 2). The service never
    creates or alters tables: `init` and `db upgrade` do."""
    from adapter.dbutil import make_engine
    from adapter.store.schema_version import require_current

    engine = make_engine(settings.url(settings.adapter.state_db))
    try:
        require_current(engine)
    finally:
        engine.dispose()


def run_service(settings: Settings, *, once: bool = False, until_idle: bool = False,
                notifier: Notifier | None = None,
                endpoint: Endpoint | None = None) -> RunResult:
    """Entry point behind `thads-adapter run` (the CLI starts the demo's simulator, binds
    the metrics endpoint and opens the notify socket first, so a bad one stops the start
    before anything runs)."""
    from adapter.crypto import expiry, revocation, trust

    require_schema(settings)
    lock = InstanceLock(settings.url(settings.adapter.state_db)).acquire()
    ctx = Context(settings)
    previous_check = trust.revocation_check()
    previous_signals: dict = {}
    try:
        if lock.exclusive:
            released = ctx.store.release_leases()
            if released:
                log.info("%d exchanges left sending by a previous run returned to the queue",
                         released)
        revocation.configure(settings)
        metrics = None
        if endpoint is not None:
            from adapter.service.metrics import ServiceMetrics
            metrics = ServiceMetrics(settings, ctx, signing_state=lambda: service.signing_stopped)
        service = Service(settings, ctx, notifier=notifier, metrics=metrics)
        # from here a SIGTERM is a graceful stop, even during the warm-up (the workers
        # start, the key loads): the scheduler then stops as soon as it has started
        previous_signals = service._install_signals()
        service.signals_installed = bool(previous_signals)
        if endpoint is not None and metrics is not None:
            endpoint.render = metrics.render
            endpoint.health.checks.update(_readiness(service))
            endpoint.start()
        expiry.log_expiry_warnings(settings)
        service._expiry_logged = dt.datetime.now(dt.UTC).date()
        ctx.warm_up()
        t0 = time.perf_counter()
        code = service.run_once() if once else service.run(until_idle=until_idle)
        return RunResult(code, service.summary(), time.perf_counter() - t0)
    finally:
        ctx.close()
        lock.release()
        trust.set_revocation_check(previous_check)
        for signum, handler in previous_signals.items():
            signal.signal(signum, handler)


def _readiness(service: Service) -> dict:
    """/readyz: the state database answers, the scheduler dispatches, the key is loaded
    and may sign."""
    from sqlalchemy import text

    def state_db() -> str | None:
        try:
            with service.ctx.state_engine.connect() as c:
                c.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return f"state database unavailable ({exc.__class__.__name__})"
        return None

    def signing_key() -> str | None:
        if "builder" not in service.ctx.__dict__:
            return "the signing key is not loaded yet"
        return service.signing_stopped

    return {"state_db": state_db, "scheduler": service.scheduler_problem,
            "signing_key": signing_key}
