"""The service's small HTTP endpoint: /metrics (Prometheus text format), /healthz, /readyz.

The socket is bound before anything else starts (the simulator, the workers, the
scheduler), so an address that is taken or not ours stops the start with one line and exit
2 instead of a service running without its monitoring. Requests are answered from a
thread of their own; a scrape never blocks the scheduler.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from adapter.errors import AdapterError

log = logging.getLogger("adapter.metrics")


class MetricsAddressError(AdapterError):
    """The metrics address cannot be listened on; says which address and why."""


def parse_address(text: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port); ValueError naming what is wrong."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not host:port (e.g. 127.0.0.1:9741)")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"{text!r}: an IPv6 address goes in brackets, e.g. [::1]:9741")
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9741")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: port {port_text!r} is not a number from 0 to 65535")
    return host, int(port_text)


@dataclass
class Health:
    """What /readyz asks: each check returns None when fine, else the reason it is not."""

    checks: dict[str, Callable[[], str | None]]

    def problems(self) -> dict[str, str]:
        out = {}
        for name, check in self.checks.items():
            try:
                why = check()
            except Exception as exc:  # a check must never take the endpoint down
                why = f"{exc.__class__.__name__}: {exc}"
            if why:
                out[name] = why
        return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    #: SO_REUSEADDR: a restart may listen at once despite the last run's TIME_WAIT
    #: connections; on Linux a port another socket listens on is still refused.
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class Endpoint:
    """Bound at construction (errors here are the operator's), served by `start()`."""

    def __init__(self, address: str) -> None:
        host, port = parse_address(address)
        server_class = _Server6 if ":" in host else _Server
        self.server = server_class((host, port), _Handler, bind_and_activate=False)
        try:
            self.server.server_bind()
            self.server.server_activate()
        except (OSError, UnicodeError) as exc:
            self.server.server_close()
            if isinstance(exc, UnicodeError):
                raise MetricsAddressError(f"metrics address {address}: {exc}") from None
            raise MetricsAddressError(_why(address, host, port, exc)) from None
        self.server.endpoint = self  # type: ignore[attr-defined]
        self.render: Callable[[], tuple[bytes, str]] = lambda: (b"", "text/plain")
        self.health = Health({})
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server.server_close()


def _why(address: str, host: str, port: int, exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):  # first: its codes are the resolver's, not errno
        return f"metrics address {address}: cannot resolve {host!r} ({exc.strerror})"
    if exc.errno == errno.EADDRINUSE:
        return (f"metrics address {address}: port {port} on {host} is already in use by "
                "another process; choose another [metrics] address")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"metrics address {address}: {host} is not an address of this machine"
    if exc.errno == errno.EACCES:
        return f"metrics address {address}: not allowed to listen on port {port}"
    return f"metrics address {address}: cannot listen ({exc.strerror or exc})"


class _Handler(BaseHTTPRequestHandler):
    server_version = "thads-adapter"

    def do_GET(self) -> None:
        ep: Endpoint = self.server.endpoint  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                body, ctype = ep.render()
            except Exception:
                log.exception("metrics could not be rendered")
                self._send(500, b"metrics could not be rendered\n", "text/plain")
                return
            self._send(200, body, ctype)
        elif path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/readyz":
            problems = ep.health.problems()
            body = json.dumps({"ready": not problems, "problems": problems},
                              ensure_ascii=False).encode() + b"\n"
            self._send(503 if problems else 200, body, "application/json")
        else:
            self._send(404, b"not found: /metrics, /healthz, /readyz\n", "text/plain")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass  # a scrape every few seconds is not worth a log line
