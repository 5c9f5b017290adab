"""Shared by the benchmarks: the in-run reference and a throw-away configuration."""

from __future__ import annotations

import os
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


def raw_rsa_sign_cpu(seconds: float = 2.0) -> float:
    """CPU seconds (this process, user + system) per RSA-2048 PKCS#1 v1.5 SHA-256 signature,
    key loaded once. CPU time, unlike a wall-clock rate, hardly moves when other processes
    share the cores, so it is the reference the `*_cpu_ratio` figures divide by."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    msg = b"x" * 10_000
    for _ in range(20):
        key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    n, c0, t0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
        n += 50
    return (time.process_time() - c0) / n


# ---- the adapter's own processes, read from /proc (Linux) -----------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _stat_fields(pid: int) -> list[str]:
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (its own, not its children's)."""
    f = _stat_fields(pid)
    return (int(f[11]) + int(f[12])) / _TICK


def system_cpu_seconds(pid: int) -> float:
    """The system (kernel) part of `cpu_seconds`: I/O, page faults, fsync."""
    return int(_stat_fields(pid)[12]) / _TICK


def rss_bytes(pid: int) -> int:
    """Resident set size of a process now."""
    return int(_stat_fields(pid)[21]) * _PAGE


def children(pid: int) -> list[int]:
    """Direct children of a process (every thread's list: a pool thread may have forked)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return sorted(set(out))


def role_of(pid: int) -> str:
    """'sign worker' for a multiprocessing spawn child, else a short command name."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "gone"
    if "resource_tracker" in cmd:
        return "resource tracker"
    if "spawn_main" in cmd or "forkserver" in cmd:
        return "sign worker"
    return cmd.split(" ")[-1][:30] or "process"


def sign_workers_of(pid: int, exclude: tuple[int, ...] = ()) -> list[int]:
    """The pool processes under `pid` (not the resource tracker, not `exclude`)."""
    return [c for c in children(pid) if c not in exclude and role_of(c) == "sign worker"]


def load_note() -> str:
    """One line on how busy the machine is: wall-clock figures move with it, CPU per packet
    (and the cpu ratios) much less."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "machine load: unknown"
    return (f"machine load: {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cpus; "
            "packets/s and seconds are wall clock and drop when other work shares the cores, "
            "CPU per packet and the *_cpu_ratio figures are robust to it")


OUTBOUND_CPU_FORMULA = ("outbound_cpu_ratio = raw RSA-2048 sign CPU per signature / adapter CPU "
                        "per delivered packet (main process + sign workers, from /proc, the "
                        "simulator excluded); 1.0 would be RSA alone")
INBOUND_CPU_FORMULA = ("inbound_cpu_ratio = bare signxml verify CPU per judgment / adapter CPU "
                       "per imported judgment (the adapter's process, the simulator excluded); "
                       "1.0 would be verification alone")
