"""Run the simulator under cheroot, standalone (`thads-adapter sim`) or as a child process
of `thads-adapter run` in the demo."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import requests
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from adapter.config import Settings
from adapter.crypto.keys import load_certificates, load_identity
from adapter.crypto.sign import PacketSigner
from adapter.sim.agencies import AgencyDesk
from adapter.sim.app import Faults, SimulatorApp
from adapter.sim.axis import AxisDesk
from adapter.sim.court import CourtDesk
from adapter.sim.crl import CrlDesk
from adapter.sim.dsig import PlatformSignatureCheck
from adapter.sim.store import SimStore
from adapter.xml.schema import SchemaRegistry


def build_app(settings: Settings, faults: Faults | None = None,
              db: Path | None = None) -> SimulatorApp:
    cfg = settings.simulator
    anchors = [c for p in cfg.trust_anchors for c in load_certificates(settings.path(p))]
    court = None
    if settings.path(cfg.court_key).exists():
        identity = load_identity(settings.path(cfg.court_key), settings.path(cfg.court_cert))
        court = CourtDesk(PacketSigner(identity), cfg.court_organisation_id,
                          settings.adapter.organisation_id)
    store = SimStore(db or settings.path(cfg.db))
    if court is not None and cfg.demo_judgments and not store.outbox_report():
        for pid, data in court.judgments(cfg.demo_judgments, start=100_001):
            store.put_outbox(pid, "judgment", court.court_id, court.recipient, data)
    clients = {c.system_id: (c.organisation_id,
                             settings.path(c.secret_file).read_text().strip().encode())
               for c in cfg.axis_clients if settings.path(c.secret_file).exists()}
    agencies = None
    if cfg.axis_agencies:
        agencies = AgencyDesk(load_identity(settings.path(cfg.agency_key),
                                            settings.path(cfg.agency_cert)),
                              cfg.axis_agencies, anchors)
    axis = AxisDesk(store.path, clients, cfg.axis_max_skew_seconds, agencies)
    app = SimulatorApp(store, PlatformSignatureCheck(anchors), SchemaRegistry.default(), faults,
                       court, axis)
    if settings.path(cfg.tsa_key).exists():
        from adapter.sim.tsa import TimestampAuthority
        app.tsa = TimestampAuthority(settings.path(cfg.tsa_cert), settings.path(cfg.tsa_key))
    app.crl = CrlDesk(settings.path(cfg.court_cert).parent)  # the dev PKI's directory
    return app


def make_server(settings: Settings, app: SimulatorApp, host: str | None = None,
                port: int | None = None) -> wsgi.Server:
    """A cheroot WSGI server (threaded, HTTP/1.1 keep-alive, TLS and mutual TLS)."""
    cfg = settings.simulator
    server = wsgi.Server((host or cfg.host, cfg.port if port is None else port), app,
                         numthreads=cfg.threads, server_name="thads-lgsp-sim", timeout=120,
                         request_queue_size=64, shutdown_timeout=2)
    if cfg.tls:
        adapter = BuiltinSSLAdapter(str(settings.path(cfg.tls_cert)),
                                    str(settings.path(cfg.tls_key)))
        if cfg.tls_client_ca:
            adapter.context.load_verify_locations(str(settings.path(cfg.tls_client_ca)))
            adapter.context.verify_mode = ssl.CERT_REQUIRED
        server.ssl_adapter = adapter
    return server


def url_of(settings: Settings, server: wsgi.Server) -> str:
    host, port = server.bind_addr[:2]
    return f"{'https' if settings.simulator.tls else 'http'}://{host}:{port}/lgsp"


def serve(settings: Settings, host: str | None = None, port: int | None = None,
          faults: Faults | None = None, db: Path | None = None) -> None:
    app = build_app(settings, faults, db)
    server = make_server(settings, app, host, port)
    server.prepare()
    print(f"simulator listening on {url_of(settings, server)}", flush=True)

    def stop(signum, _frame) -> None:
        raise SystemExit(0)  # leaves serve(); the finally below closes the server

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()


def start_child(settings: Settings, *, config_file: str, timeout: float = 30.0,
                log: Path | None = None) -> subprocess.Popen:
    """Start `thads-adapter sim` as a child process (the other core) and wait until healthy.

    The child dies with this process (lifeline.py), as the one `run` starts does: a test or
    benchmark that crashes or is killed leaves no simulator holding its port. Call it from
    a thread that lives as long as the child must (the kernel watches the starting thread)."""
    from adapter.service.lifeline import PARENT_ENV

    cfg = settings.simulator
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "adapter", "--config", config_file, "sim"],
                            stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, PARENT_ENV: str(os.getpid())})
    scheme = "https" if cfg.tls else "http"
    url = f"{scheme}://{cfg.host}:{cfg.port}/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"simulator exited with code {proc.returncode} (see {log})")
        try:
            lg = settings.lgsp
            verify = str(settings.path(lg.ca_file)) if lg.ca_file else True
            cert = (str(settings.path(lg.client_cert)), str(settings.path(lg.client_key))) \
                if lg.client_cert and lg.client_key else None
            if requests.get(url, timeout=1, verify=verify, cert=cert).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"simulator did not answer on {url} within {timeout}s")


__all__ = ["build_app", "make_server", "serve", "start_child", "url_of"]
