"""init, run, sim, status."""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path
from typing import Any

from adapter.cli.common import print_field, print_json, print_table, settings_of
from adapter.i18n import _


def register(sub) -> None:
    p = sub.add_parser("init", help=_("create the state database (and with --demo, the "
                                      "demo)"))
    p.add_argument("--demo", action="store_true",
                   help=_("also the dev PKI and a demo enforcement database"))
    p.add_argument("--cases", type=int, default=1000, help=_("demo cases (default 1000)"))
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("run", help=_("the service: every configured route on its schedule"))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--once", action="store_true", help=_("run each job once, then exit"))
    g.add_argument("--until-idle", action="store_true",
                   help=_("run until nothing is pending or waiting to retry"))
    p.add_argument("--no-simulator", action="store_true",
                   help=_("do not start the embedded simulator even if configured"))
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("sim", help=_("the local simulator of the ministry platform"))
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--db", help=_("simulator store (default from {key})").format(
        key="[simulator] db"))
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--lost-response-rate", type=float, default=0.0)
    p.add_argument("--reject-rate", type=float, default=0.0)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--seed", type=int)
    p.set_defaults(handler=cmd_sim)

    p = sub.add_parser("status", help=_("counts per state, oldest pending, platform health"))
    p.add_argument("--json", action="store_true", help=_("machine-readable output"))
    p.set_defaults(handler=cmd_status)


def cmd_init(args) -> int:
    from adapter.crypto.devpki import create_dev_pki
    from adapter.dbutil import make_engine
    from adapter.sources.synth import generate

    s = settings_of(args)
    if args.demo:
        certs_dir = s.path(s.signing.cert).parent
        written = create_dev_pki(certs_dir)
        print(_("dev PKI in {dir}: created").format(dir=certs_dir) if written
              else _("dev PKI in {dir}: already present").format(dir=certs_dir))
        t0 = time.perf_counter()
        totals = generate(make_engine(s.url(s.source.url)), cases=args.cases)
        if totals["cases"]:
            print(_("demo enforcement database: {cases} cases, {receipts} receipts, "
                    "{judgments} judgments ({seconds}s)").format(
                cases=totals["cases"], receipts=totals["receipts"],
                judgments=totals["judgments"], seconds=f"{time.perf_counter() - t0:.1f}"))
        else:
            print(_("demo enforcement database: already filled"))
    from adapter.cli.db import upgrade_state_db

    upgrade_state_db(s)
    return 0


def cmd_run(args) -> int:
    """The service; in the demo (`[simulator] embedded`) with the simulator as a child
    process, whose summary ends the output.

    Everything that can refuse the start is tried before anything starts: the schema, the
    notify socket, the metrics address, the simulator's port. Each refusal is one line and
    exit 2, and leaves no process behind."""
    import logging

    from adapter.service import log_format
    from adapter.service.endpoint import Endpoint
    from adapter.service.notify import Notifier
    from adapter.service.runner import require_schema, run_service

    s = settings_of(args)
    log_format.configure(s)
    require_schema(s)  # before the simulator starts: a refused service leaves nothing behind
    notifier = Notifier.from_environ()
    endpoint = Endpoint(s.metrics.address) if s.metrics.address else None
    sim = None
    try:
        embedded = s.simulator.embedded and not args.no_simulator
        if embedded:
            sim = _start_simulator(s)
            logging.getLogger("adapter.cli").info("embedded simulator started (pid %d)",
                                                  sim.pid)
        if endpoint is not None:
            print(_("metrics: {url}/metrics (health: {url}/healthz, {url}/readyz)").format(
                url=endpoint.url), flush=True)
        result = run_service(s, once=args.once, until_idle=args.until_idle,
                             notifier=notifier, endpoint=endpoint)
        for name, totals in result.summary.items():  # the README's lines: names, not prose
            print(f"route {name}: " + ", ".join(f"{k} {v}" for k, v in totals.items()),
                  flush=True)
        if sim is not None:
            print(_simulator_summary(s), flush=True)
        print(_("finished in {seconds}s, exit code {code}").format(
            seconds=f"{result.elapsed:.1f}", code=result.code), flush=True)
        return result.code
    finally:
        if endpoint is not None:
            endpoint.close()
        notifier.close()
        if sim is not None:
            sim.terminate()
            try:
                sim.wait(10)
            except Exception:
                sim.kill()


def _start_simulator(s):
    """The embedded simulator, on a port no one else holds, set to die with us."""
    from adapter.service.lifeline import ensure_port_free
    from adapter.sim.server import start_child

    ensure_port_free(s.simulator.host, s.simulator.port, "the embedded simulator")
    try:  # start_child tells the child our pid: it dies with us
        return start_child(s, config_file=s.source_file,
                           log=s.path(s.adapter.data_dir) / "simulator.log")
    except RuntimeError as exc:  # it exited or never answered: one line, exit 2
        from adapter.errors import AdapterError
        raise AdapterError(_("the embedded simulator did not start: {error}").format(
            error=exc)) from None


def _simulator_summary(settings) -> str:
    import requests

    cfg = settings.simulator
    try:
        rep = requests.get(f"http://{cfg.host}:{cfg.port}/report", timeout=10).json()
    except (requests.RequestException, ValueError) as exc:
        return _("simulator: report unavailable ({error})").format(error=exc)
    dupes = sum(1 for n in rep["packets"].values() if n > 1)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(rep["by_kind"].items()))
    line = _("simulator holds {accepted} packets ({kinds}); {submissions} submissions, "
             "{dupes} packets submitted more than once (deduplicated)").format(
        accepted=rep["accepted"], kinds=kinds, submissions=rep["submissions"], dupes=dupes)
    axis = rep.get("axis")
    if axis and axis["documents"]:
        got = axis["deliveries"]
        line += "\n" + _("simulated axis carried {documents} documents to {recipients} "
                         "recipients ({taken} taken), and {statuses} status packets back").format(
            documents=axis["documents"], recipients=sum(got.values()),
            taken=got.get("done", 0), statuses=axis["statuses"])
    return line


def cmd_sim(args) -> int:

    from adapter.service.lifeline import die_with_parent_from_environ
    from adapter.sim.app import Faults
    from adapter.sim.server import serve

    # the embedded simulator ends with the service at once: SIGKILL, since a graceful
    # stop waits for cheroot's worker threads (seconds under load), and every packet it
    # accepted is already committed to its SQLite store
    die_with_parent_from_environ(signal.SIGKILL)
    s = settings_of(args)
    faults = Faults(error_rate=args.error_rate, lost_response_rate=args.lost_response_rate,
                    reject_rate=args.reject_rate, latency_ms=args.latency_ms, seed=args.seed)
    serve(s, args.host, args.port, faults, Path(args.db) if args.db else None)
    return 0


def _platform_health(s) -> dict:
    from adapter.errors import AdapterError
    from adapter.transports.lgsp import LgspTransport

    t0 = time.perf_counter()
    try:
        t = LgspTransport(s.lgsp, s.path)
        t.query_status("00000000-0000-0000-0000-000000000000")
        t.close()
        return {"reachable": True, "ms": round((time.perf_counter() - t0) * 1000)}
    except AdapterError as exc:
        return {"reachable": False, "error": str(exc)}


def cmd_status(args) -> int:
    from adapter.crypto.expiry import certificate_expiry
    from adapter.dbutil import make_engine
    from adapter.store.repository import ExchangeStore, utcnow
    from adapter.store.schema_version import require_current

    s = settings_of(args)
    store = ExchangeStore(make_engine(s.url(s.adapter.state_db)))
    require_current(store.engine)  # `status` reads: it never creates or alters tables
    counts = store.counts()
    oldest = store.oldest_outstanding()
    last = store.last_delivery()
    expiring = certificate_expiry(s)
    sources, signing = _revocation_and_signing(s)
    data: dict[str, Any] = {
        "exchanges": [{"kind": k, "state": st, "count": n}
                      for (k, st), n in sorted(counts.items())],
        "oldest_pending_seconds": (utcnow() - oldest).total_seconds() if oldest else None,
        "last_delivery": {r: t.isoformat() + "Z" for r, t in last.items()},
        "platform": _platform_health(s),
        "evidence": _evidence_summary(store),
        "circuit_breakers": [dict(endpoint=b.endpoint, instance=b.instance, state=b.state,
                                  failed_rounds=b.failures, open_seconds=b.opened_for,
                                  at=b.updated_at.isoformat(timespec="seconds") + "Z")
                             for b in store.breakers()
                             if utcnow() - b.updated_at < dt.timedelta(hours=1)],  # live
        "signing": signing,
        "revocation": [st.as_dict() for st in sources],
        "certificate_expiry": [e.as_dict() for e in expiring],
    }
    if args.json:
        print_json(data)
        return 0
    states = ["pending", "sending", "sent", "delivered", "retry_wait", "failed", "cancelled"]
    kinds = sorted({kind for kind, _state in counts})
    # the state columns are state names (as in --state and --json): never translated
    print_table([_("kind"), *[x.replace("retry_wait", "retry") for x in states]],
                [[k, *[counts.get((k, st), 0) for st in states]] for k in kinds])
    print()
    age = data["oldest_pending_seconds"]
    print_field(_("oldest pending"), _("none") if age is None else f"{age:.0f}s")
    for r in s.routes:
        t = last.get(r.name)
        when = t.isoformat(timespec="seconds") + "Z" if t else _("never")
        print_field(_("last delivery"), f"{r.name}: {when}")
    pf = data["platform"]
    print_field(_("platform"), _("reachable ({ms} ms)").format(ms=pf["ms"]) if pf["reachable"]
                else _("UNREACHABLE: {error}").format(error=pf["error"]))
    ev = data["evidence"]
    if ev:
        print_field(_("evidence"), _evidence_line(ev))
    for b in data["circuit_breakers"]:  # b["state"] is a name (closed, open, half-open)
        print_field(_("circuit"), _breaker_line(b))
    print_field(_("signing"), _("ok") if signing["ok"]
                else _("STOPPED: {reason}").format(reason=signing["reason"]))
    for st in sources:
        print_field(_("revocation"), _revocation_line(st))
    for e in expiring:  # the role and the level are --json's words, as in the logs
        level = "" if e.level == "ok" else f" [{e.level.upper()}]"
        print_field(_("certificate"), _expiry_line(e) + level)
    return 0


def _revocation_and_signing(s) -> tuple[list, dict]:
    """The revocation sources (brought up to date: a CRL is fetched only past its
    nextUpdate) and whether our certificate in use now may sign."""
    from adapter.crypto import revocation

    checker = revocation.checker_from_settings(s)
    sources = checker.refresh()
    now = dt.datetime.now(dt.UTC)
    sig = s.signing
    rotated = sig.next_cert and sig.next_from and now >= sig.next_from
    from adapter.crypto.keys import load_certificates

    cert = load_certificates(s.path(sig.next_cert if rotated else sig.cert))[0]
    try:
        revocation.check_own_certificate(s, cert=cert, at=now, checker=checker)
    except revocation.OwnCertificateUnusable as exc:
        return sources, {"ok": False, "reason": str(exc)}
    return sources, {"ok": True, "reason": None}


def _evidence_summary(store) -> dict | None:
    from adapter.audit import checkpoint

    head = store.evidence_entries()
    if head is None:
        return None
    cps = checkpoint.summary(store.engine)
    return dict(entries=head, last_checkpoint=cps.last_seq, last_checkpoint_at=cps.last_at,
                unstamped=cps.unstamped)


def _evidence_line(ev: dict) -> str:
    at = ev["last_checkpoint_at"] or _("none yet")
    if ev["unstamped"]:
        return _("{entries} entries, last checkpoint at entry {seq} ({at}); {count} "
                 "checkpoints wait for a timestamp").format(
            entries=ev["entries"], seq=ev["last_checkpoint"], at=at, count=ev["unstamped"])
    return _("{entries} entries, last checkpoint at entry {seq} ({at})").format(
        entries=ev["entries"], seq=ev["last_checkpoint"], at=at)


def _breaker_line(b: dict) -> str:
    if b["state"] == "closed":
        return _("{endpoint} on {instance}: {state} ({rounds} failed rounds, at {at})").format(
            endpoint=b["endpoint"], instance=b["instance"], state=b["state"],
            rounds=b["failed_rounds"], at=b["at"])
    return _("{endpoint} on {instance}: {state} ({rounds} failed rounds, open for {seconds}s, "
             "at {at})").format(endpoint=b["endpoint"], instance=b["instance"],
                                state=b["state"], rounds=b["failed_rounds"],
                                seconds=b["open_seconds"], at=b["at"])


def _revocation_line(st) -> str:
    """One revocation source: its kind (CRL, OCSP) and address as configured."""
    state = {True: _("reachable"), False: _("UNREACHABLE"),
             None: _("not asked yet")}[st.reachable]
    if st.next_update:
        line = _("{kind} {source} ({anchor}): {state}, next update {at}").format(
            kind=st.kind, source=st.source, anchor=st.anchor, state=state,
            at=f"{st.next_update:%Y-%m-%dT%H:%M:%SZ}")
    else:
        line = _("{kind} {source} ({anchor}): {state}").format(
            kind=st.kind, source=st.source, anchor=st.anchor, state=state)
    return line + (f": {st.error}" if st.error else "")


def _expiry_line(e) -> str:
    """A certificate's days to expiry (its role is the configuration's word, kept)."""
    if e.level == "unreadable":
        return _("{path} ({role}) is unreadable: {error}").format(
            path=e.path, role=e.role, error=e.error)
    when = e.not_after.strftime("%Y-%m-%d") if e.not_after else "?"
    if e.level == "expired":
        return _("{subject} ({role}) EXPIRED on {date}").format(
            subject=repr(e.subject), role=e.role, date=when)
    return _("{subject} ({role}) expires in {days} days, on {date}").format(
        subject=repr(e.subject), role=e.role, days=f"{e.days:.0f}", date=when)
