"""The backfill benchmark's arithmetic and its /proc readers (bench/ is not a package the
adapter ships, but its figures decide what the integrator reports)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.backfill import NATIONAL_CASES, Sample, Tenth, growth_fit, national_minutes
from bench.common import children, cpu_seconds, role_of, rss_bytes


def test_national_minutes_takes_the_slower_of_main_process_and_workers() -> None:
    # main at 0.5 ms: 2,000 packets/s; 7 workers at 1 ms: 7,000/s -> the main process sets it
    minutes, rate, packets = national_minutes(0.0005, 0.001, 1.0, cores=8)
    assert packets == 2 * NATIONAL_CASES
    assert rate == 2000
    assert round(minutes, 2) == round(2 * NATIONAL_CASES / 2000 / 60, 2)
    # slow workers: 7 / 5 ms = 1,400/s is now the ceiling
    assert national_minutes(0.0005, 0.005, 1.0, cores=8)[1] == 1400


def _tenth(i: int, per_packet: float) -> Tenth:
    end = Sample(t=float(i), delivered=4000 * (i + 1), prepared=4000 * (i + 1),
                 main_cpu=0.0, worker_cpu=0.0)
    return Tenth("x", end, 4000, 4000, 1.0, per_packet * 4000, 0.0)


def test_growth_fit_recovers_a_linear_cost_and_a_flat_one() -> None:
    a, b = growth_fit([_tenth(i, 0.0005 + 0.00001 * i) for i in range(10)])
    assert abs(b - 0.00001 / 4000) < 1e-12
    assert abs(a - (0.0005 - 0.00001 / 2)) < 1e-9
    assert growth_fit([_tenth(i, 0.0005) for i in range(10)])[1] == 0.0


def test_proc_readers_see_a_child_and_its_cpu() -> None:
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nt=time.process_time()\n"
                              "while time.process_time()-t<0.3: pass\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while cpu_seconds(child.pid) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in children(os.getpid())
        assert cpu_seconds(child.pid) >= 0.25
        assert rss_bytes(child.pid) > 1_000_000
        assert role_of(child.pid) != "sign worker"
    finally:
        child.kill()
        child.wait()
