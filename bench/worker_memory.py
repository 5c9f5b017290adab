"""The sign worker's memory as volumes grow, in-process: `init_worker` once, then
`build_in_worker` for N synthetic cases and their receipts (the backfill's two kinds), the
RSS (/proc/self/statm) and traced Python memory printed every `--every` packets, with the
top growth by allocation site since the first sample.

    python bench/worker_memory.py [--cases 50000] [--every 10000] [--top 8] [--no-trace]

tracemalloc slows each build several-fold and adds its own memory to the RSS: `--no-trace`
gives the RSS curve as the worker sees it.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import write_bench_config  # noqa: E402

MB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


def heap() -> tuple[int, int]:
    """glibc's heap: bytes in use by live allocations, bytes free but kept (fragments)."""
    m = _libc.mallinfo2()
    return m.uordblks + m.hblkhd, m.fordblks


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def records(cases: int) -> Iterator[tuple]:
    """(SourceRecord, recipient) as ChangeReader gives them: cases with their parties and
    obligations, receipts with their case's code."""
    from adapter.sources.changes import SourceCursor, SourceRecord
    from adapter.sources.synth import Generator

    gen = Generator(2026)
    for i in range(1, cases + 1):
        case, parties, obligations, receipts = gen.case(i)
        cur = SourceCursor(case["updated_at"], i)
        yield (SourceRecord("case", case["case_code"], 1, cur,
                            dict(case, parties=parties, obligations=obligations)),
               "000.00.00.G22")
        for r in receipts:
            yield (SourceRecord("receipt", r["receipt_code"], 1, cur,
                                dict(r, case_code=case["case_code"])), "000.00.00.G22")


def _stage(build, stage: str):
    """Only the first steps of `PacketBuilder.build` (to find which one keeps memory)."""
    import datetime as dt

    from adapter.mapping import PacketHeader, packet_id

    b = build._worker

    def run(record, recipient) -> None:
        pid = packet_id(record.kind, record.key, record.version)
        header = PacketHeader(pid, record.key, record.version, b.sender, recipient,
                              dt.datetime.now(dt.UTC))
        tree = b.mappings[record.kind].to_xml(record.data, header)
        if stage == "schema":
            b.schemas.check(tree, packet=record.key)
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=50_000)
    ap.add_argument("--every", type=int, default=10_000, help="packets between samples")
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--no-trace", action="store_true")
    ap.add_argument("--stage", choices=["map", "schema", "all"], default="all",
                    help="stop after mapping, after the schema check, or build fully")
    args = ap.parse_args(argv)

    from adapter.crypto.devpki import create_dev_pki
    from adapter.engine import build

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        create_dev_pki(d / "pki")
        cfg = write_bench_config(d, d / "pki")
        build.init_worker(str(cfg), None)
        partial = _stage(build, args.stage)
        trace = not args.no_trace
        if trace:
            tracemalloc.start(12)
        base = None
        errors = n = 0
        print(f"start rss {rss() / MB:.1f} MB")
        cpu0 = time.process_time()
        for item in records(args.cases):
            if args.stage == "all":
                errors += build.build_in_worker(item).error is not None
            else:
                partial(*item)
            n += 1
            if n % args.every:
                continue
            gc.collect()
            used, free = heap()
            line = (f"packets {n:>8} rss {rss() / MB:7.1f} MB heap used {used / MB:6.1f} "
                    f"free {free / MB:5.1f} MB errors {errors}")
            if trace:
                snap = tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.Filter(False, tracemalloc.__file__)])
                traced = sum(s.size for s in snap.statistics("filename"))
                line += f" traced {traced / MB:7.2f} MB"
                if base is None:
                    base = snap
                else:
                    print(line)
                    for s in snap.compare_to(base, "traceback")[:args.top]:
                        print(f"    {s.size_diff / 1024:+9.1f} KiB {s.count_diff:+7d} blocks  "
                              + " <- ".join(f"{Path(f.filename).name}:{f.lineno}"
                                            for f in reversed(s.traceback[-5:])))
                    continue
            print(line, flush=True)
        cpu = (time.process_time() - cpu0) / max(n, 1) * 1000
        print(f"end: {n} packets, {errors} errors, rss {rss() / MB:.1f} MB, "
              f"{cpu:.3f} ms CPU per packet (with the sampling)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
