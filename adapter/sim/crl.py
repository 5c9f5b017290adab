"""The simulated CA's CRL distribution point: GET /crl/<name>.crl (DER, as RFC 5280 wants
it over HTTP) or /crl/<name>.crl.pem, read from the dev PKI directory on each request, so
a `certs dev-pki revoke` shows at once."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

_NAME = re.compile(r"^/crl/([A-Za-z0-9][A-Za-z0-9_.-]{0,100}\.crl(?:\.pem)?)$")


class CrlDesk:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        #: requests served, per file name (tests count fetches).
        self.served: dict[str, int] = {}

    def __call__(self, path: str, start_response: Callable) -> Iterable[bytes]:
        m = _NAME.match(path)
        file = self.directory / m.group(1) if m else None
        if file is None or not file.is_file():
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such CRL"]
        data = file.read_bytes()
        self.served[file.name] = self.served.get(file.name, 0) + 1
        kind = "application/x-pem-file" if file.name.endswith(".pem") else "application/pkix-crl"
        start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(data)))])
        return [data]
