"""Replay at scale: 10,000 exchanges failed by a platform that refused them all; the cause
is fixed; the operator replays every failed exchange with one command and the service
delivers them. Timed from the replay command to the last exchange delivered, with the
simulator (its own process) verifying and storing every packet and counting submissions.

The last line is `replay_10k_seconds=<value>` (scaled to exactly 10,000 exchanges).

    python bench/replay.py [--exchanges 10000]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    cpu_seconds,
    load_note,
    sign_workers_of,
    write_bench_config,
)


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _children_cpu() -> float:
    """Reaped children (the replay command; sign workers once the pool has ended)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _watch(db: Path, t0: float, total: int) -> None:
    """A thread printing the simulator's count of stored packets against time."""
    import sqlite3
    import threading

    def run() -> None:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        seen = -1
        while seen < total:
            seen = c.execute("SELECT count(*) FROM received").fetchone()[0]
            print(f"  t={time.perf_counter() - t0:5.2f}s  {seen} stored", flush=True)
            time.sleep(0.5)

    threading.Thread(target=run, daemon=True).start()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exchanges", type=int, default=10_000)
    ap.add_argument("--timeline", action="store_true",
                    help="print how many packets the simulator holds, every half second")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    from adapter.config import load_settings
    from adapter.crypto.devpki import create_dev_pki
    from adapter.dbutil import make_engine
    from adapter.service.runner import Service
    from adapter.sim.server import start_child
    from adapter.sources.synth import generate

    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        d = Path(tmp)
        create_dev_pki(d / "pki")
        cfg = write_bench_config(d, d / "pki", sign_workers=1)
        s = load_settings(cfg)
        cases = int(args.exchanges / 1.99) + 10  # about one receipt per case
        totals = generate(make_engine(s.url(s.source.url)), cases=cases)
        n = totals["cases"] + totals["receipts"]
        sim = start_child(s, config_file=str(cfg), log=d / "sim.log")
        base = f"http://{s.simulator.host}:{s.simulator.port}"
        try:
            requests.post(base + "/control", json={"reject_rate": 1.0}, timeout=10)

            workers_cpu: dict[int, float] = {}

            def drain() -> int:
                service = Service(s)
                service.ctx.store.create_schema()
                service.ctx.warm_up()
                try:
                    return service.run(until_idle=True, poll=0.05)
                finally:
                    for pid in sign_workers_of(os.getpid()):
                        try:
                            workers_cpu[pid] = cpu_seconds(pid)
                        except (FileNotFoundError, ProcessLookupError):
                            continue
                    service.ctx.close()

            t0 = time.perf_counter()
            assert drain() == 1
            print(f"{n} exchanges prepared, sent and refused by the platform in "
                  f"{time.perf_counter() - t0:.1f}s")
            requests.post(base + "/control", json={"reject_rate": 0.0}, timeout=10)
            workers_cpu.clear()
            sim_c0, kids_c0 = cpu_seconds(sim.pid), _children_cpu()
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "adapter", "--config", str(cfg), "replay",
                                "--state", "failed", "--yes", "--reason", "benchmark"],
                               capture_output=True, text=True)
            t_cli = time.perf_counter() - t0
            cli_cpu = _children_cpu() - kids_c0
            if r.returncode != 0:
                print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
                return 1
            if args.timeline:
                _watch(d / "var" / "simulator.db", t0, n)
            main_c0 = _self_cpu()
            code = drain()
            elapsed = time.perf_counter() - t0
            main_cpu = _self_cpu() - main_c0
            sim_cpu = cpu_seconds(sim.pid) - sim_c0
            report = requests.get(base + "/report", timeout=60).json()
        finally:
            sim.terminate()
            try:
                sim.wait(30)
            except subprocess.TimeoutExpired:  # a loaded machine: never leave it running
                sim.kill()
                sim.wait()
        dupes = sum(1 for v in report["packets"].values() if v > 1)
        print(f"replay command: {t_cli:.1f}s; replay to last delivery: {elapsed:.1f}s for {n} "
              f"exchanges (exit {code})")
        print(f"CPU seconds during the replay: replay command {cli_cpu:.2f}, service main "
              f"{main_cpu:.2f}, sign workers {sum(workers_cpu.values()):.2f}, simulator "
              f"{sim_cpu:.2f} (per exchange: main {main_cpu / n * 1000:.2f} ms, simulator "
              f"{sim_cpu / n * 1000:.2f} ms)")
        print(load_note())
        print(f"simulator: {report['accepted']} accepted, {report['submissions']} submissions, "
              f"{dupes} packets submitted more than once")
        if code != 0 or report["accepted"] != n or dupes:
            print("ERROR: not every exchange was delivered exactly once", file=sys.stderr)
            return 1
        print(f"replay_10k_seconds={elapsed * 10_000 / n:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
