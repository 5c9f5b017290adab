"""Shared by the benchmarks: the in-run reference and a throw-away configuration."""

from __future__ import annotations

import socket
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def raw_rsa_sign_rate(seconds: float = 2.0) -> float:
    """RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second, one core, key loaded once:
    the physical limit of any pipeline that signs each packet."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    msg = b"x" * 10_000
    for _ in range(20):
        key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
        n += 50
    return n / (time.perf_counter() - t0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_bench_config(d: Path, pki: Path, *, sign_workers: int = 1, concurrency: int = 8,
                       batch: int = 200, submit_batch: int = 50, evidence: bool = True,
                       simulator: str = "", routes: str | None = None) -> Path:
    """A throw-away configuration in `d`: SQLite everywhere, the simulator on a free port.
    `simulator` adds keys to [simulator]; `routes` replaces the two outbound routes."""
    port = free_port()
    routes = routes if routes is not None else f"""
[[routes]]
name = "cases"
kind = "case"
recipient = "000.00.00.G22"
interval_seconds = 1
batch_size = {batch}
[[routes]]
name = "receipts"
kind = "receipt"
recipient = "000.00.00.G22"
interval_seconds = 1
batch_size = {batch}
"""
    cfg = d / "config" / "adapter.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(f"""
[adapter]
organisation_id = "000.00.00.G15"
data_dir = "{d}/var"
state_db = "sqlite:///{d}/var/state.db"
[source]
url = "sqlite:///{d}/var/enforcement.db"
batch_size = 500
[signing]
key = "{pki}/adapter.key"
cert = "{pki}/adapter.crt"
trust_anchors = ["{pki}/ca.crt"]
[lgsp]
wsdl = "{ROOT}/schemas/wsdl/lgsp.wsdl"
endpoint = "http://127.0.0.1:{port}/lgsp"
concurrency = {concurrency}
batch_size = {submit_batch}
[simulator]
port = {port}
db = "{d}/var/simulator.db"
trust_anchors = ["{pki}/ca.crt"]
{simulator}
[service]
sign_workers = {sign_workers}
[audit]
enabled = {str(evidence).lower()}
{routes}""", encoding="utf-8")
    return cfg
