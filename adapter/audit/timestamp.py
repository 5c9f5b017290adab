"""RFC 3161 timestamps on checkpoints, through the openssl command line.

The token proves the checkpoint statement existed at the time the timestamp authority
says, independently of our clock and key. A TSA outage never stops traffic: checkpoints
wait unstamped, are stamped when the TSA answers again, and the gap is reported.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import requests

OPENSSL = shutil.which("openssl") or "openssl"


class TimestampError(Exception):
    pass


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, timeout=60)


def request_token(data: bytes, url: str, *, timeout: float = 10.0) -> bytes:
    """Ask the TSA to stamp `data`; returns the DER timestamp token."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "data").write_bytes(data)
        q = _run(["ts", "-query", "-data", "data", "-sha256", "-cert", "-out", "q.tsq"], d)
        if q.returncode:
            raise TimestampError(f"cannot build the request: {q.stderr.decode()[-300:]}")
        try:
            r = requests.post(url, data=(d / "q.tsq").read_bytes(), timeout=timeout,
                              headers={"Content-Type": "application/timestamp-query"})
        except requests.RequestException as exc:
            raise TimestampError(f"timestamp authority unreachable: {exc}"[:300]) from None
        if r.status_code != 200:
            raise TimestampError(f"timestamp authority answered HTTP {r.status_code}")
        (d / "r.tsr").write_bytes(r.content)
        t = _run(["ts", "-reply", "-in", "r.tsr", "-token_out", "-out", "token.der"], d)
        if t.returncode:
            raise TimestampError(f"unreadable timestamp reply: {t.stderr.decode()[-300:]}")
        return (d / "token.der").read_bytes()


def verify_token(data: bytes, token: bytes, ca_file: Path) -> str | None:
    """None when the token stamps exactly `data` and chains to `ca_file`; else why not."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "data").write_bytes(data)
        (d / "token.der").write_bytes(token)
        v = _run(["ts", "-verify", "-data", "data", "-in", "token.der", "-token_in",
                  "-CAfile", str(ca_file)], d)
        if v.returncode:
            return (v.stderr or v.stdout).decode(errors="replace").strip().splitlines()[-1] \
                if (v.stderr or v.stdout) else "verification failed"
        return None


def token_time(token: bytes) -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "token.der").write_bytes(token)
        t = _run(["ts", "-reply", "-in", "token.der", "-token_in", "-text"], d)
        for line in t.stdout.decode(errors="replace").splitlines():
            if line.startswith("Time stamp:"):
                return line.split(":", 1)[1].strip()
    return None
