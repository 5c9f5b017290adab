"""Inbound throughput: judgments pulled from the simulator over SOAP (list, fetch, ack),
verified against the peer's trust anchors, validated, mapped and imported into the
enforcement database (SQLite), state persisted.

Two figures of merit against a bare signxml verify of the same signed judgment (certificate
pinned) measured in the same run: `inbound_ratio=` (judgments imported per second ÷ verifies
per second, wall clock) and, the stable one, `inbound_cpu_ratio=` (verify CPU ÷ the adapter's
CPU per imported judgment; the simulator's CPU is not counted).

    python bench/inbound.py [--judgments 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import INBOUND_CPU_FORMULA, load_note, write_bench_config  # noqa: E402


def bare_signxml_verify(data: bytes, cert_pem: bytes,
                        seconds: float = 2.0) -> tuple[float, float]:
    """(verifies per second wall clock, CPU seconds per verify) of signxml alone, certificate
    pinned: the floor of any importer that checks each judgment's signature."""
    from signxml import XMLVerifier

    XMLVerifier().verify(data, x509_cert=cert_pem.decode(), expect_references=1)
    n, c0, t0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            XMLVerifier().verify(data, x509_cert=cert_pem.decode(), expect_references=1)
        n += 20
    return n / (time.perf_counter() - t0), (time.process_time() - c0) / n


def write_config(d: Path, pki: Path, judgments: int) -> Path:
    return write_bench_config(d, pki, sign_workers=0, simulator=f"""
court_key = "{pki}/court.key"
court_cert = "{pki}/court.crt"
demo_judgments = {judgments}""", routes=f"""
[[routes]]
name = "judgments"
kind = "judgment"
direction = "in"
batch_size = 200
[[peers]]
name = "courts"
organisation_ids = ["000.00.00.T01"]
trust_anchors = ["{pki}/ca.crt"]
""")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judgments", type=int, default=1000)
    ap.add_argument("--profile", metavar="FILE",
                    help="write a cProfile of the pull loop to FILE (CPU figures then include "
                         "the profiler's own overhead)")
    args = ap.parse_args()

    from adapter.config import load_settings
    from adapter.crypto.devpki import create_dev_pki
    from adapter.engine.context import Context
    from adapter.engine.inbound import InboundEngine
    from adapter.sim.server import start_child

    with tempfile.TemporaryDirectory(prefix="bench-inbound-") as tmp:
        d = Path(tmp)
        create_dev_pki(d / "pki")
        cfg = write_config(d, d / "pki", args.judgments)
        s = load_settings(cfg)
        t0 = time.perf_counter()
        sim = start_child(s, config_file=str(cfg), log=d / "sim.log", timeout=300)
        print(f"simulator holds {args.judgments} signed judgments "
              f"({time.perf_counter() - t0:.1f}s to build and sign)")
        try:
            base = f"http://127.0.0.1:{s.simulator.port}"
            first = requests.get(base + "/outbox", timeout=30).json()[0]["packet_id"]
            sample = sim_payload(s, first)
            ref, ref_cpu = bare_signxml_verify(sample, (d / "pki" / "court.crt").read_bytes())
            print(f"reference: bare signxml verify of one judgment ({len(sample)} bytes), "
                  f"certificate pinned = {ref:.0f}/s wall clock, {ref_cpu * 1000:.3f} ms CPU "
                  "per verify")
            print(load_note())
            ctx = Context(s)
            ctx.store.create_schema()
            ctx.warm_up()  # as the service starts: transports built, long-lived heap frozen
            engine = InboundEngine(ctx)
            route = s.route("judgments")
            from adapter.dbutil import make_engine
            from adapter.sources.models import SourceBase
            # the demo schema, as `init --demo` creates it: the service never does
            SourceBase.metadata.create_all(make_engine(s.url(s.source.url)))
            phases = PhaseClock()
            channel = engine.channel(route)
            transport = ctx.inbound_transport_for(route.channel)
            for name, owner, method in (
                    ("list", transport, "list_pending"), ("fetch", transport, "fetch_many"),
                    ("acknowledge", transport, "acknowledge_many"),
                    ("store", ctx.store, "add_inbound_many"),
                    ("check", channel, "check"),
                    ("verify", channel._verifier(s.peer_of("000.00.00.T01")), "verify"),
                    ("import", channel.importer, "import_many"),
                    ("record", ctx.store, "finish_round"),
                    ("record", ctx.store, "mark_acknowledged_many"),
                    ("record", ctx.store, "inbound_states"),
                    ("record", ctx.store, "inbound_pending")):
                phases.wrap(name, owner, method)
            profiler = None
            if args.profile:
                import cProfile
                profiler = cProfile.Profile()
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            imported = quarantined = 0
            if profiler:
                profiler.enable()
            while True:
                st = engine.pull(route)
                imported += st.imported
                quarantined += st.quarantined
                if not st.received and not st.acknowledged:
                    break
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
            elapsed = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            ctx.close()
            # the machine's speed drifts over minutes: the reference again, and the mean
            _, ref_cpu_after = bare_signxml_verify(sample,
                                                   (d / "pki" / "court.crt").read_bytes())
            print(f"reference again after the run: {ref_cpu_after * 1000:.3f} ms CPU per "
                  f"verify (before: {ref_cpu * 1000:.3f}); the cpu ratio uses the mean")
            ref_cpu = (ref_cpu + ref_cpu_after) / 2
        finally:
            sim.terminate()
            sim.wait(10)
        rate = imported / elapsed
        # the adapter runs in this process (no sign workers inbound); the simulator is a child
        cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / max(imported, 1)
        print(f"imported {imported}/{args.judgments} judgments ({quarantined} quarantined) in "
              f"{elapsed:.2f}s: {rate:.1f}/s; adapter cpu {cpu * 1000:.3f} ms per judgment "
              f"(cpus {os.cpu_count()})")
        if imported != args.judgments:
            print("ERROR: not every judgment was imported", file=sys.stderr)
            return 1
        print("per judgment, ms CPU: " + phases.report(imported, cpu)
              + " (verify is part of check)")
        print(INBOUND_CPU_FORMULA)
        print(f"inbound_ratio={rate / ref:.3f}")
        print(f"inbound_cpu_ratio={ref_cpu / cpu:.3f}")
    return 0


class PhaseClock:
    """CPU seconds spent inside some methods (wrapped on their instances), by phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, owner: object, method: str) -> None:
        inner = getattr(owner, method)
        self.seconds.setdefault(name, 0.0)

        def timed(*args, **kwargs):
            c0 = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] += time.process_time() - c0
        setattr(owner, method, timed)

    def report(self, n: int, total: float) -> str:
        per = {k: v * 1000 / max(n, 1) for k, v in self.seconds.items()}
        rest = total * 1000 - sum(v for k, v in per.items() if k != "verify")
        return ", ".join(f"{k} {v:.3f}" for k, v in per.items()) + f", other {rest:.3f}"


def sim_payload(settings, packet_id: str) -> bytes:
    from adapter.transports.lgsp import LgspTransport
    t = LgspTransport(settings.lgsp, settings.path)
    try:
        return t.fetch(packet_id).payload
    finally:
        t.close()


if __name__ == "__main__":
    raise SystemExit(main())
