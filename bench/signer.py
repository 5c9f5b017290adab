"""CPU per packet of the two THADS signers, against raw RSA-2048 in the same run.

The profile signer (adapter.crypto.sign.PacketSigner) and signxml (SignxmlSigner, its
reference) sign the same demo packets (case, receipt, judgment from the mapping), in
alternating rounds so that both see the same machine state; raw RSA-2048 PKCS#1 v1.5 signing
of a SignedInfo-sized message is the floor no signer can beat. Process CPU time, not wall
clock: ratios measured in one run move little between machines.

    python bench/signer.py [--packets 600] [--rounds 5]

Prints per-signer `*_cpu_ms=` and `*_ratio=` (raw RSA CPU ÷ signer CPU per packet, 1.0 is
the limit), and `signer_speedup=` (signxml CPU ÷ profile CPU).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packets", type=int, default=600, help="packets per signer per round")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from adapter.crypto.devpki import create_dev_pki
    from adapter.crypto.keys import load_identity
    from adapter.crypto.sign import PacketSigner, SignxmlSigner
    from adapter.mapping import MappingSet, PacketHeader, packet_id
    from adapter.sources.synth import Generator

    with tempfile.TemporaryDirectory(prefix="bench-signer-") as tmp:
        pki = Path(tmp)
        create_dev_pki(pki)
        ident = load_identity(pki / "adapter.key", pki / "adapter.crt")
    kinds = ["case", "receipt", "judgment"]
    mappings, gen, now = MappingSet(), Generator(seed=7), dt.datetime.now(dt.UTC)
    records: list[tuple[str, dict]] = []
    for i in range(1, 21):
        case, parties, obligations, receipts = gen.case(i)
        records.append(("case", dict(case, parties=parties, obligations=obligations)))
        records += [("receipt", dict(r, case_code=case["case_code"])) for r in receipts[:1]]
        j, parties, obligations = gen.judgment(i)
        records.append(("judgment", dict(j, parties=parties, obligations=obligations)))
    templates = [mappings[k].to_xml(rec, PacketHeader(packet_id(k, f"K-{n}", 1), f"K-{n}", 1,
                                                      "000.00.00.G15", "000.00.00.G22", now))
                 for n, (k, rec) in enumerate(records)]
    signers = {"profile": PacketSigner(ident), "signxml": SignxmlSigner(ident)}
    signed_info = b"x" * 1100  # the size of a canonical SignedInfo
    key = ident.key

    def raw(n: int) -> float:
        t0 = time.process_time()
        for _ in range(n):
            key.sign(signed_info, padding.PKCS1v15(), hashes.SHA256())
        return (time.process_time() - t0) / n

    def timed(signer, n: int) -> float:
        trees = [copy.deepcopy(templates[i % len(templates)]) for i in range(n)]
        t0 = time.process_time()
        for t in trees:
            signer.sign_bytes(t)
        return (time.process_time() - t0) / n

    for s in signers.values():  # warm up: caches, first-call costs
        timed(s, 30)
    raw(30)
    cpu: dict[str, list[float]] = {"raw_rsa": [], **{k: [] for k in signers}}
    for _ in range(args.rounds):
        cpu["raw_rsa"].append(raw(args.packets))
        for name, s in signers.items():
            cpu[name].append(timed(s, args.packets))
    med = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"packets={args.packets}x{args.rounds} kinds={','.join(kinds)} "
          f"templates={len(templates)} (medians of rounds)")
    print(f"raw_rsa_cpu_ms={med['raw_rsa'] * 1000:.3f}")
    for name in signers:
        print(f"{name}_cpu_ms={med[name] * 1000:.3f} "
              f"{name}_ratio={med['raw_rsa'] / med[name]:.2f}")
    print(f"signer_speedup={med['signxml'] / med['profile']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
