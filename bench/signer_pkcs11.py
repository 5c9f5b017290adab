"""CPU per signed packet with the key on a SoftHSM2 token (PKCS#11) against the same key in
a file and raw RSA-2048, all in the same run.

The dev RSA key is imported into a SoftHSM2 token initialised in a temporary directory;
the profile signer (adapter.crypto.sign.PacketSigner) signs the same demo packets with the
file key and with the token key, in alternating rounds; raw RSA-2048 PKCS#1 v1.5 signing of
a SignedInfo-sized message is the floor. Process CPU time: SoftHSM2 computes in this
process, so its CPU counts here (a hardware HSM's would not, but its latency would: wall
time per signature is printed too).

    python bench/signer_pkcs11.py [--packets 400] [--rounds 5]

Prints `raw_rsa_cpu_ms=`, `file_cpu_ms=`, `softhsm_cpu_ms=` (and `_wall_ms=`), each signer's
`_ratio=` (raw RSA CPU ÷ its CPU per packet; 1.0 is the limit) and `softhsm_vs_file=`
(token CPU ÷ file CPU per packet).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODULES = ("/usr/lib/softhsm/libsofthsm2.so",
           "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
PIN = "4711-bench"


def softhsm_token(tmp: Path, key_pem: Path) -> str:
    """A SoftHSM2 token holding `key_pem`; returns the key's PKCS#11 URI."""
    module = next((m for m in MODULES if Path(m).is_file()), None)
    if module is None or not shutil.which("softhsm2-util"):
        raise SystemExit("SoftHSM2 is needed: apt-get install softhsm2 (make system-deps)")
    (tmp / "tokens").mkdir()
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n", encoding="utf-8")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    for args in (["--init-token", "--free", "--label", "bench", "--pin", PIN,
                  "--so-pin", "so-" + PIN],
                 ["--import", str(key_pem), "--token", "bench", "--label", "adapter",
                  "--id", "01", "--pin", PIN]):
        subprocess.run(["softhsm2-util", *args], check=True, capture_output=True)
    os.environ["THADS_BENCH_PIN"] = PIN
    return (f"pkcs11:token=bench;object=adapter?module-path={module}"
            "&pin-source=env:THADS_BENCH_PIN")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packets", type=int, default=400, help="packets per signer per round")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from adapter.crypto.devpki import create_dev_pki
    from adapter.crypto.keys import load_identity, load_token_identity
    from adapter.crypto.sign import PacketSigner
    from adapter.mapping import MappingSet, PacketHeader, packet_id
    from adapter.sources.synth import Generator

    with tempfile.TemporaryDirectory(prefix="bench-pkcs11-") as tmp:
        pki = Path(tmp) / "pki"
        create_dev_pki(pki)
        file_ident = load_identity(pki / "adapter.key", pki / "adapter.crt")
        token_dir = Path(tmp) / "softhsm"
        token_dir.mkdir()
        uri = softhsm_token(token_dir, pki / "adapter.key")
        token_ident = load_token_identity(uri, pki / "adapter.crt")

        mappings, gen, now = MappingSet(), Generator(seed=7), dt.datetime.now(dt.UTC)
        templates = []
        for i in range(1, 21):
            case, parties, obligations, _ = gen.case(i)
            rec = dict(case, parties=parties, obligations=obligations)
            templates.append(mappings["case"].to_xml(rec, PacketHeader(
                packet_id("case", f"K-{i}", 1), f"K-{i}", 1, "000.00.00.G15",
                "000.00.00.G22", now)))
        signers = {"file": PacketSigner(file_ident), "softhsm": PacketSigner(token_ident)}
        assert signers["file"].sign_bytes(copy.deepcopy(templates[0])) == \
            signers["softhsm"].sign_bytes(copy.deepcopy(templates[0])), "not the same key"
        signed_info = b"x" * 1100
        key = file_ident.key

        def raw(n: int) -> tuple[float, float]:
            t0, w0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                key.sign(signed_info, padding.PKCS1v15(), hashes.SHA256())
            return (time.process_time() - t0) / n, (time.perf_counter() - w0) / n

        def timed(signer, n: int) -> tuple[float, float]:
            trees = [copy.deepcopy(templates[i % len(templates)]) for i in range(n)]
            t0, w0 = time.process_time(), time.perf_counter()
            for t in trees:
                signer.sign_bytes(t)
            return (time.process_time() - t0) / n, (time.perf_counter() - w0) / n

        for s in signers.values():  # warm up
            timed(s, 20)
        raw(20)
        cpu: dict[str, list[float]] = {"raw_rsa": [], "file": [], "softhsm": []}
        wall: dict[str, list[float]] = {k: [] for k in cpu}
        for _ in range(args.rounds):
            for name, fn in (("raw_rsa", raw), ("file", lambda n: timed(signers["file"], n)),
                             ("softhsm", lambda n: timed(signers["softhsm"], n))):
                c, w = fn(args.packets)
                cpu[name].append(c)
                wall[name].append(w)
        from adapter.crypto.pkcs11 import reset_process
        reset_process()
    med = {k: statistics.median(v) for k, v in cpu.items()}
    wmed = {k: statistics.median(v) for k, v in wall.items()}
    print(f"packets={args.packets}x{args.rounds} kind=case templates={len(templates)} "
          "(medians of rounds; RSA-2048, the same key in a file and on the token)")
    print(f"raw_rsa_cpu_ms={med['raw_rsa'] * 1000:.3f}")
    for name in ("file", "softhsm"):
        print(f"{name}_cpu_ms={med[name] * 1000:.3f} {name}_wall_ms={wmed[name] * 1000:.3f} "
              f"{name}_ratio={med['raw_rsa'] / med[name]:.2f}")
    print(f"softhsm_vs_file={med['softhsm'] / med['file']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
