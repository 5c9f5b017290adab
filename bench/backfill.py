"""The national backfill, scaled: N cases (and their receipts) generated into the demo
enforcement database, then the outbound pipeline (`thads-adapter run --until-idle`, its own
process with its sign workers) delivers every packet to the simulator (another process that
verifies and stores each one). Nothing is mocked; SQLite state, evidence log on.

Every 10% of the packets delivered it prints: packets/s over the tenth, CPU per packet of
the adapter's main process and of its sign workers (from /proc/<pid>/stat of the adapter's own
processes; the simulator's is shown apart), the RSS of each process and the state database
bytes per packet. At the end:

    backfill_cpu_growth=  last tenth's main-process CPU per packet / first tenth's
    rss_growth_mb=        adapter RSS (main + workers) at the last tenth - at the first
    backfill_2m_minutes=  2,026,800 cases with their receipts on 8 cores, platform elsewhere,
                          computed from the CPU per packet measured here (formula printed)

    python bench/backfill.py [--cases 200000] [--quick] [--sign-workers 1] [--cores 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    children,
    cpu_seconds,
    load_note,
    role_of,
    rss_bytes,
    system_cpu_seconds,
    write_bench_config,
)

NATIONAL_CASES = 2_026_800
MB = 1024 * 1024


# ---- the demo enforcement database ----------------------------------------------------

def generate_cases(url: str, cases: int) -> dict[str, int]:
    """Bulk-insert `cases` synthetic cases and their receipts (adapter.sources.synth, chunks
    of 5,000 rows: memory stays flat). Durability is off while filling: a benchmark's source
    database is thrown away if the machine stops, and fsync per chunk is not what we measure."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url

    from adapter.sources.synth import generate

    Path(make_url(url).database or ".").parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _fast(dbapi_conn, _record) -> None:
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=OFF")

    try:
        return generate(engine, cases=cases, judgments=0, decisions=0, chunk=5000)
    finally:
        engine.dispose()


# ---- watching the adapter's processes -------------------------------------------------

@dataclass
class Sample:
    """What the adapter's processes and state database look like at one moment."""
    t: float
    delivered: int
    prepared: int
    main_cpu: float
    worker_cpu: float  # every sign worker seen so far (a gone worker keeps its last value)
    main_sys: float = 0.0  # the kernel's part of main_cpu
    rss: dict[str, int] = field(default_factory=dict)  # label -> bytes
    db_bytes: int = 0

    @property
    def adapter_rss(self) -> int:
        return sum(v for k, v in self.rss.items() if k != "simulator")


def write_progress(path: Path, prepared: int, delivered: int) -> None:
    """The lockstep driver's own count, replaced whole (a reader never sees half of it)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{prepared} {delivered}\n")
    os.replace(tmp, path)


class Watcher:
    """Reads /proc of the adapter (main + pool children), and its progress: in lockstep from
    the driver's progress file, for `--service` by counting in its state database.

    Counting delivered rows costs a scan of an index that grows with the table (~30 ms at
    400,000 rows, four times a second), on the two cores the adapter measures its own cost
    on, and holds a read snapshot that keeps the adapter's WAL from restarting: a growth in
    the adapter's CPU per packet that the benchmark itself caused. The driver knows its
    counts, so in lockstep nothing but the adapter touches the state database."""

    def __init__(self, adapter_pid: int, sim_pid: int, state_db: Path,
                 progress: Path | None = None) -> None:
        self.pid, self.sim_pid, self.db, self.progress = adapter_pid, sim_pid, state_db, progress
        self.worker_cpu: dict[int, float] = {}
        self.worker_rss: dict[int, int] = {}  # a gone worker keeps its last value
        self._conn: sqlite3.Connection | None = None

    def _counts(self) -> tuple[int, int]:
        if self.progress is not None:
            try:
                prepared, delivered = self.progress.read_text().split()
            except (FileNotFoundError, ValueError):
                return 0, 0
            return int(delivered), int(prepared)
        if self._conn is None:
            if not self.db.exists():
                return 0, 0
            self._conn = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        try:
            delivered = self._conn.execute(
                "SELECT count(*) FROM exchanges WHERE state = 'delivered'").fetchone()[0]
            prepared = self._conn.execute("SELECT max(id) FROM exchanges").fetchone()[0]
        except sqlite3.OperationalError:  # schema not created yet
            return 0, 0
        return delivered, prepared or 0

    def sample(self) -> Sample | None:
        """None once the adapter's main process is gone (a zombie still reports its CPU)."""
        try:
            main_cpu = cpu_seconds(self.pid)
            main_sys = system_cpu_seconds(self.pid)
            rss = {"main": rss_bytes(self.pid)}
            workers = [c for c in children(self.pid) if role_of(c) == "sign worker"]
        except (FileNotFoundError, ProcessLookupError):
            return None
        for w in workers:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                self.worker_cpu[w] = cpu_seconds(w)
                self.worker_rss[w] = rss_bytes(w)
        rss.update({f"worker{i + 1}": v for i, v in enumerate(self.worker_rss.values())})
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            rss["simulator"] = rss_bytes(self.sim_pid)
        delivered, prepared = self._counts()
        size = self.db.stat().st_size if self.db.exists() else 0
        return Sample(time.perf_counter(), delivered, prepared, main_cpu,
                      sum(self.worker_cpu.values()), main_sys, rss, size)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


@dataclass
class Tenth:
    """One tenth of the run: deltas between two samples."""
    label: str
    end: Sample
    packets: int
    prepared: int
    seconds: float
    main_cpu: float
    worker_cpu: float
    main_sys: float = 0.0

    def main_per_packet(self) -> float:
        return self.main_cpu / max(self.packets, 1)

    def worker_per_prepared(self) -> float | None:
        return self.worker_cpu / self.prepared if self.prepared else None


def tenth_between(label: str, a: Sample, b: Sample) -> Tenth:
    return Tenth(label, b, b.delivered - a.delivered, b.prepared - a.prepared, b.t - a.t,
                 b.main_cpu - a.main_cpu, b.worker_cpu - a.worker_cpu, b.main_sys - a.main_sys)


def print_tenth(x: Tenth) -> None:
    w = x.worker_per_prepared()
    rss = " ".join(f"{k} {v / MB:.0f}" for k, v in x.end.rss.items())
    print(f"{x.label:>5} delivered {x.end.delivered:>9} prepared {x.end.prepared:>9} | "
          f"{x.packets / x.seconds if x.seconds else 0:7.1f} packets/s | cpu/packet main "
          f"{x.main_per_packet() * 1000:.3f} ms (kernel "
          f"{x.main_sys / max(x.packets, 1) * 1000:.3f}), workers "
          f"{'-' if w is None else f'{w * 1000:.3f}'} ms | rss MB {rss} | state DB "
          f"{x.end.db_bytes / max(x.end.prepared, 1) / 1024:.1f} KB/packet", flush=True)


# ---- the national estimate ------------------------------------------------------------

def national_minutes(main_cpu: float, worker_cpu: float, receipts_per_case: float,
                     cores: int = 8) -> tuple[float, float, int]:
    """(minutes, packets/s, packets) for the national backfill on `cores` cores with the
    platform on other machines. One main process (claims, state, SOAP: single-threaded
    Python, so at most one core: 1/main_cpu packets/s) and cores-1 sign workers
    ((cores-1)/worker_cpu packets/s): the slower of the two sets the pace."""
    packets = round(NATIONAL_CASES * (1 + receipts_per_case))
    rate = min(1 / main_cpu, (cores - 1) / worker_cpu)
    return packets / rate / 60, rate, packets


# ---- the adapter under test (a child process) ------------------------------------------

def drive(config: str, progress: Path) -> int:
    """The service's own engines (OutboundEngine, its Context and sign-worker pool) in
    lockstep: one source batch of a route prepared, then delivered, route after route, until
    nothing is left. The scheduler of `thads-adapter run` lets preparation run ahead of
    delivery, so a tenth of the deliveries would carry another tenth's preparing; in lockstep
    every tenth holds the same packets in both stages and the table grows steadily."""
    import logging

    from adapter.config import load_settings
    from adapter.engine.context import Context
    from adapter.engine.outbound import OutboundEngine

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    s = load_settings(Path(config))
    ctx = Context(s)
    signal.signal(signal.SIGTERM, lambda *_: ctx.stopping.set())
    try:
        ctx.store.create_schema()
        ctx.warm_up()
        engine = OutboundEngine(ctx)
        routes = [r for r in s.routes if r.enabled and r.direction == "out"]
        prepared = delivered = 0
        while not ctx.stopping.is_set():
            moved = 0
            for route in routes:
                st = engine.prepare(route, max_batches=1)
                prepared += st.prepared + st.rejected
                write_progress(progress, prepared, delivered)
                done = engine.deliver(route).delivered
                delivered += done
                write_progress(progress, prepared, delivered)
                moved += st.prepared + st.rejected + done
            if not moved:
                if ctx.store.outstanding() == 0:
                    break
                time.sleep(0.2)  # retries wait for their backoff
        time.sleep(1.0)  # the watcher's last sample, with the sign workers still alive
        return 0
    finally:
        ctx.close()


def growth_fit(tenths: list[Tenth]) -> tuple[float, float]:
    """(intercept s, slope s per row): least squares of the main process's CPU per packet
    against the state table's rows in the middle of each tenth."""
    xs = [(t.end.prepared - t.prepared / 2) for t in tenths]
    ys = [t.main_per_packet() for t in tenths]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return my - slope * mx, slope


# ---- the run ----------------------------------------------------------------------------

def stop_group(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM the adapter's process group (it and its sign workers), SIGKILL if it stays."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def run(args) -> int:
    from adapter.config import load_settings
    from adapter.crypto.devpki import create_dev_pki
    from adapter.sim.server import start_child

    with tempfile.TemporaryDirectory(prefix="bench-backfill-", dir=args.dir) as tmp:
        d = Path(tmp)
        create_dev_pki(d / "pki")
        cfg = write_bench_config(d, d / "pki", sign_workers=args.sign_workers,
                                 concurrency=args.concurrency, batch=args.batch,
                                 submit_batch=args.submit_batch, evidence=True)
        s = load_settings(cfg)
        t0, c0 = time.perf_counter(), time.process_time()
        totals = generate_cases(s.url(s.source.url), args.cases)
        gen_s = time.perf_counter() - t0
        expected = totals["cases"] + totals["receipts"]
        ratio = totals["receipts"] / max(totals["cases"], 1)
        print(f"generated {totals['cases']} cases + {totals['receipts']} receipts in "
              f"{gen_s:.1f}s ({totals['cases'] / gen_s:.0f} cases/s wall, "
              f"{time.process_time() - c0:.1f}s CPU; peak RSS of this process "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB); "
              f"{ratio:.3f} receipts per case", flush=True)
        pipeline = "thads-adapter run --until-idle" if args.service else \
            "the service's engines in lockstep (prepare one source batch, deliver it)"
        print(f"pipeline: {pipeline}; packets to deliver: {expected}; sign workers "
              f"{args.sign_workers}, claim "
              f"batch {args.batch}, submit batch {args.submit_batch}, concurrency "
              f"{args.concurrency}, evidence log on", flush=True)
        print(load_note(), flush=True)

        sim = start_child(s, config_file=str(cfg), log=d / "sim.log", timeout=120)
        log = open(d / "adapter.log", "wb")  # noqa: SIM115 - closed below
        cmd = [sys.executable, "-m", "adapter", "--config", str(cfg), "run", "--until-idle",
               "--no-simulator"] if args.service else \
            [sys.executable, str(Path(__file__).resolve()), "--drive", str(cfg),
             "--progress", str(d / "progress")]
        adapter = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        watch = Watcher(adapter.pid, sim.pid, d / "var" / "state.db",
                        None if args.service else d / "progress")
        try:
            return _watch(args, watch, adapter, sim, d, expected, ratio)
        finally:
            stop_group(adapter)
            sim.terminate()
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait(10)
            watch.close()
            log.close()


def _watch(args, watch: Watcher, adapter: subprocess.Popen, sim: subprocess.Popen, d: Path,
           expected: int, ratio: float) -> int:
    sim_cpu0 = cpu_seconds(sim.pid)
    started = time.perf_counter()
    base: Sample | None = None  # the first sample with a delivered (lockstep: whole) batch
    last: Sample | None = None
    tenths: list[Tenth] = []
    mark, next_k, pending = None, 1, False
    deadline = started + args.timeout
    while True:
        smp = watch.sample()
        if smp is None or adapter.poll() is not None:
            break
        last = smp
        if base is None and smp.delivered > 0 and (args.service
                                                    or smp.delivered == smp.prepared):
            base = mark = smp
            print(f"first batch delivered after {smp.t - started:.1f}s (adapter start-up: "
                  "imports, sign workers, key, WSDL; not counted in the tenths)", flush=True)
        while mark is not None and next_k <= 10 and smp.delivered >= expected * next_k / 10:
            next_k, pending = next_k + 1, True
        # in lockstep, end a tenth where both stages stand at the same packet (between two
        # source batches), so that its preparing and delivering concern the same packets
        if pending and smp is not mark and (args.service or smp.delivered == smp.prepared
                                            or smp.delivered - mark.delivered >= expected / 5):
            pending = False
            tenths.append(tenth_between(f"{100 * smp.delivered // expected}%", mark, smp))
            print_tenth(tenths[-1])
            mark = smp
        if time.perf_counter() > deadline:
            print(f"ERROR: not finished after {args.timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(args.interval)
    code = adapter.wait()
    # the last stretch since the last tenth (the adapter may stop between two samples)
    if mark is not None and last is not None and last.delivered > mark.delivered \
            and (next_k <= 10 or pending):
        tenths.append(tenth_between(f"~{100 * last.delivered // expected}%", mark, last))
        print_tenth(tenths[-1])
    sim_cpu = _sim_cpu(sim.pid) - sim_cpu0
    delivered = _delivered(d / "var" / "state.db")
    elapsed = time.perf_counter() - started
    db_bytes = (d / "var" / "state.db").stat().st_size
    print(f"adapter exited with {code}: delivered {delivered}/{expected} in {elapsed:.1f}s "
          f"({delivered / elapsed:.1f} packets/s wall clock, start-up included); simulator "
          f"{sim_cpu / max(delivered, 1) * 1000:.3f} ms CPU per packet (not the adapter's); "
          f"state DB {db_bytes / MB:.0f} MB = {db_bytes / max(delivered, 1) / 1024:.1f} KB per "
          "packet", flush=True)
    if code != 0 or delivered != expected or len(tenths) < 2:
        print(f"ERROR: not every packet was delivered, or too few samples (see {d}/adapter.log)",
              file=sys.stderr)
        print((d / "adapter.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        return 1
    return report(args, base, last, tenths, ratio)


def report(args, base: Sample, last: Sample, tenths: list[Tenth], ratio: float) -> int:
    first, final = tenths[0], tenths[-1]
    growth = final.main_per_packet() / first.main_per_packet()
    whole = tenth_between("all", base, last)
    # sign workers only prepare: their CPU per prepared packet over the whole run
    worker = whole.worker_per_prepared() or 0.0
    main = final.main_per_packet()  # at the largest table measured
    minutes, rate, packets = national_minutes(main, worker, ratio, args.cores)
    print(f"main process cpu/packet: first tenth {first.main_per_packet() * 1000:.3f} ms, last "
          f"{main * 1000:.3f} ms, whole run {whole.main_per_packet() * 1000:.3f} ms; sign "
          f"workers {worker * 1000:.3f} ms per prepared packet (whole run)")
    print("backfill_cpu_growth = main-process CPU per delivered packet in the last tenth / in "
          "the first tenth (tenths counted from the first delivered source batch)")
    print(f"backfill_2m_minutes = packets_2m / min(1 / main_cpu, (cores - 1) / worker_cpu) / 60 "
          f"with packets_2m = {NATIONAL_CASES} x (1 + {ratio:.3f} receipts per case) = "
          f"{packets}, main_cpu = {main * 1000:.3f} ms (last tenth), worker_cpu = "
          f"{worker * 1000:.3f} ms, cores = {args.cores}: min({1 / main:.0f}, "
          f"{(args.cores - 1) / worker:.0f}) = {rate:.0f} packets/s; the platform on other "
          "machines, one main process, cores - 1 sign workers"
          + ("" if args.service else "; main_cpu is the engines' in lockstep: the service's "
             "scheduler around them adds to it (docs/performance.md)"))
    if growth > 1.15:
        a, b = growth_fit(tenths)
        mean_2m = a + b * packets / 2  # the table grows from 0 to packets_2m rows
        extra, _, _ = national_minutes(mean_2m, worker, ratio, args.cores)
        print(f"note: the main process's cost still grows with the table (linear fit over the "
              f"tenths: {a * 1000:.3f} ms + {b * 1e8:.3f} ms per 100,000 rows), so the "
              f"estimate above, taken at this run's largest table ({last.prepared} rows), is "
              f"optimistic; if the growth went on linearly, the mean over {packets} rows would "
              f"be {mean_2m * 1000:.2f} ms per packet and the backfill {extra:.0f} minutes "
              "(an extrapolation, not a measurement)")
    for name, t in (("first", first), ("last", final)):
        if abs(t.prepared - t.packets) > 0.1 * max(t.packets, 1):
            print(f"warning: in the {name} tenth {t.prepared} packets were prepared and "
                  f"{t.packets} delivered: the stages were out of step, so its main-process "
                  "CPU per packet carries more (or less) preparing than its share and "
                  "backfill_cpu_growth is not comparable; measure it in lockstep (the default)")
    print(f"backfill_cpu_growth={growth:.3f}")
    print(f"rss_growth_mb={(final.end.adapter_rss - first.end.adapter_rss) / MB:.1f}")
    print(f"backfill_2m_minutes={minutes:.1f}")
    return 0


def _sim_cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def _delivered(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as c:
        return c.execute("SELECT count(*) FROM exchanges WHERE state = 'delivered'").fetchone()[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=200_000,
                    help="cases to generate (default 200,000; the nation: 2026800)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 3,000 cases (the figures are then rough)")
    ap.add_argument("--sign-workers", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--batch", type=int, default=200, help="exchanges claimed per round")
    ap.add_argument("--submit-batch", type=int, default=50, help="packets per batch call")
    ap.add_argument("--cores", type=int, default=8, help="cores of the estimated machine")
    ap.add_argument("--interval", type=float, default=0.25, help="seconds between samples")
    ap.add_argument("--timeout", type=float, default=24 * 3600.0,
                    help="give up (and stop every process) after this many seconds")
    ap.add_argument("--service", action="store_true",
                    help="run `thads-adapter run --until-idle` instead of the lockstep driver: "
                    "preparing then runs ahead of delivery and the tenths mix the two stages")
    ap.add_argument("--drive", metavar="CONFIG", help=argparse.SUPPRESS)
    ap.add_argument("--progress", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help="where the throw-away directory goes (default: $TMPDIR); "
                    "about 11 KB per packet of state")
    args = ap.parse_args(argv)
    if args.drive:
        if args.progress is None:
            ap.error("--drive needs --progress FILE (where the driver writes its counts)")
        return drive(args.drive, args.progress)
    if args.quick:
        args.cases = 3000
    # SIGTERM (and SIGHUP) leave through the finally blocks that stop the children
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda n, _f: sys.exit(128 + n))
    if args.cases < 100:
        ap.error("--cases: at least 100, or the tenths are empty")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
