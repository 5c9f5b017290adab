"""Run the simulator under waitress, standalone (`thads-adapter sim`) or as a child process
of `thads-adapter run` in the demo."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests
import waitress
from waitress.server import create_server

from adapter.config import Settings
from adapter.crypto.keys import load_certificates
from adapter.crypto.verify import PacketVerifier
from adapter.sim.app import Faults, SimulatorApp
from adapter.sim.store import SimStore
from adapter.xml.schema import SchemaRegistry


def build_app(settings: Settings, faults: Faults | None = None,
              db: Path | None = None) -> SimulatorApp:
    cfg = settings.simulator
    anchors = [c for p in cfg.trust_anchors for c in load_certificates(settings.path(p))]
    return SimulatorApp(SimStore(db or settings.path(cfg.db)), PacketVerifier(anchors),
                        SchemaRegistry.default(), faults)


def serve(settings: Settings, host: str | None = None, port: int | None = None,
          faults: Faults | None = None, db: Path | None = None) -> None:
    cfg = settings.simulator
    app = build_app(settings, faults, db)
    server = create_server(app, host=host or cfg.host, port=port if port is not None else cfg.port,
                           threads=cfg.threads, channel_timeout=120, connection_limit=200,
                           ident="thads-lgsp-sim", clear_untrusted_proxy_headers=True)
    print(f"simulator listening on http://{server.effective_host}:{server.effective_port}/lgsp",
          flush=True)
    try:
        server.run()
    finally:
        server.close()


def start_child(settings: Settings, *, config_file: str, timeout: float = 30.0,
                log: Path | None = None) -> subprocess.Popen:
    """Start `thads-adapter sim` as a child process (the other core) and wait until healthy."""
    cfg = settings.simulator
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "adapter", "--config", config_file, "sim"],
                            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://{cfg.host}:{cfg.port}/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"simulator exited with code {proc.returncode} (see {log})")
        try:
            if requests.get(url, timeout=1).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"simulator did not answer on {url} within {timeout}s")


__all__ = ["build_app", "serve", "start_child", "waitress"]
