"""Raw HTTP for the axis wire tests: read a fixture request, send it byte for byte, and a
small real server that records requests exactly as they arrive (header names in their case,
which WSGI would lose) and answers with canned JSON."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

WIRE = Path(__file__).resolve().parents[1] / "fixtures" / "axis-wire"


@dataclass
class RawRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """By name, without case (HTTP's rule)."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def to_bytes(self) -> bytes:
        head = f"{self.method} {self.path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in self.headers)
        return head.encode() + b"\r\n" + self.body

    def replace(self, name: str, value: str) -> RawRequest:
        return RawRequest(self.method, self.path, [
            (k, value if k.lower() == name.lower() else v) for k, v in self.headers], self.body)


def parse_request(raw: bytes) -> RawRequest:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
    return RawRequest(method, path, headers, body)


def fixture(name: str) -> RawRequest:
    return parse_request((WIRE / name).read_bytes())


def _read(rfile) -> RawRequest | None:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = rfile.readline()
        if not line:
            return None
        head += line
    req = parse_request(head)
    length = int(req.header("Content-Length") or 0)
    req.body = rfile.read(length) if length else b""
    return req


def send_raw(host: str, port: int, req: RawRequest) -> tuple[int, dict]:
    """Send the request exactly as written (Content-Length recomputed, connection closed)."""
    headers = [(k, v) for k, v in req.headers if k.lower() not in ("content-length",
                                                                    "connection")]
    headers += [("Content-Length", str(len(req.body))), ("Connection", "close")]
    wire = RawRequest(req.method, req.path, headers, req.body).to_bytes()
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(wire)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, json.loads(body)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if not size:
            break
        out, body = out + rest[:size], rest[size + 2:]
    return out


class CaptureServer:
    """Records every request; `answer(request)` gives (HTTP status, body bytes)."""

    def __init__(self, answer: Callable[[RawRequest], tuple[int, bytes]]) -> None:
        self.requests: list[RawRequest] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                req = _read(self.rfile)
                if req is None:
                    return
                outer.requests.append(req)
                code, body = answer(req)
                self.wfile.write(f"HTTP/1.1 {code} X\r\nContent-Type: application/json\r\n"
                                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                                 .encode() + body)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/axis"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
