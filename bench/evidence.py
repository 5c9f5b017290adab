"""What the evidence log costs: outbound throughput with the log on versus off, measured in
one run (alternating, best of each), same workload, same machine. The log appends each
packet's bytes and every attempt to the hash chain inside the state transactions and signs
checkpoints. The last line is `evidence_on_off_ratio=<value>` (target >= 0.9).

    python bench/evidence.py [--cases 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.outbound import run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    args.sign_workers, args.concurrency, args.batch, args.submit_batch = 1, 8, 200, 50
    logging.basicConfig(level=logging.ERROR)
    on, off = [], []
    for _ in range(args.rounds):
        for evidence, results in ((False, off), (True, on)):
            res = run(args, batch=True, evidence=evidence)
            if res.code:
                return res.code
            results.append(res.pps)
    print(f"evidence log off: best {max(off):.1f} packets/s of {[round(x) for x in off]}")
    print(f"evidence log on:  best {max(on):.1f} packets/s of {[round(x) for x in on]}")
    print(f"evidence_on_off_ratio={max(on) / max(off):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
