"""Outbound throughput, end to end: source rows -> signed packets -> SOAP over HTTP to the
simulator (its own process: it verifies and stores every packet) -> state `delivered`,
persisted in SQLite.

The figure of merit is packets delivered per second as a ratio to the raw RSA-2048 sign
rate of `cryptography`, measured in the same run on the same machine: absolute numbers vary
between machines and runs, the ratio much less. The last line is `outbound_ratio=<value>`.

    python bench/outbound.py [--cases 2000] [--sign-workers 1] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import raw_rsa_sign_rate, write_bench_config  # noqa: E402


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args, *, batch: bool, evidence: bool = True) -> tuple[float, int]:
    """One measured run in a fresh directory; returns (packets/s, exit status)."""
    from adapter.config import load_settings
    from adapter.crypto.devpki import create_dev_pki
    from adapter.dbutil import make_engine
    from adapter.service.runner import Service
    from adapter.sim.server import start_child
    from adapter.sources.synth import generate
    from adapter.store.states import State

    with tempfile.TemporaryDirectory(prefix="bench-outbound-") as tmp:
        d = Path(tmp)
        create_dev_pki(d / "pki")
        cfg = write_bench_config(d, d / "pki", sign_workers=args.sign_workers,
                                 concurrency=args.concurrency, batch=args.batch,
                                 submit_batch=args.submit_batch if batch else 1,
                                 evidence=evidence)
        s = load_settings(cfg)
        totals = generate(make_engine(s.url(s.source.url)), cases=args.cases)
        sim = start_child(s, config_file=str(cfg), log=d / "sim.log")
        try:
            service = Service(s)
            service.ctx.store.create_schema()
            service.ctx.warm_up()  # worker processes start with the service, not per packet
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            w0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            code = service.run(until_idle=True, poll=0.05)
            elapsed = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            counts = service.ctx.store.counts()
            service.ctx.close()
            sim_cpu = _cpu_of(sim.pid)
        finally:
            sim.terminate()
            sim.wait(10)
        w1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        main_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        work_cpu = (w1.ru_utime + w1.ru_stime) - (w0.ru_utime + w0.ru_stime) - sim_cpu
        delivered = sum(n for (_, st), n in counts.items() if st == State.DELIVERED)
        expected = totals["cases"] + totals["receipts"]
        pps = delivered / elapsed
        n = max(delivered, 1)
        mode = f"batches of {args.submit_batch}" if batch else "one packet per call"
        mode += "" if evidence else ", evidence log off"
        print(f"[{mode}] delivered {delivered}/{expected} packets in {elapsed:.2f}s: "
              f"{pps:.1f} packets/s")
        print(f"[{mode}] cpu per packet: adapter {main_cpu / n * 1000:.2f} ms, sign workers "
              f"{work_cpu / n * 1000:.2f} ms, simulator {sim_cpu / n * 1000:.2f} ms")
        if delivered != expected:
            print("ERROR: not every packet was delivered", file=sys.stderr)
            return pps, 1
        return pps, code


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--sign-workers", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--batch", type=int, default=200, help="exchanges claimed per round")
    ap.add_argument("--submit-batch", type=int, default=50, help="packets per batch call")
    ap.add_argument("--skip-single", action="store_true",
                    help="do not measure the one-packet-per-call mode")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if os.environ.get("BENCH_VERBOSE") else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.ERROR)

    raw = raw_rsa_sign_rate()
    print(f"reference: raw RSA-2048 PKCS#1 v1.5 SHA-256 sign rate = {raw:.0f}/s "
          f"(one core; machine has {os.cpu_count()} cpus)")
    print(f"workload: {args.cases} cases and their receipts, SQLite state, simulator in its "
          "own process verifying every signature")
    single = None
    if not args.skip_single:
        single, code = run(args, batch=False)
        if code:
            return code
    pps, code = run(args, batch=True)
    if code:
        return code
    if single is not None:
        print(f"outbound_ratio_single_call={single / raw:.3f}")
    print(f"outbound_ratio={pps / raw:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
