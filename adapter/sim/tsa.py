"""The simulator's RFC 3161 timestamp authority: `openssl ts -reply` with the dev PKI's TSA
certificate (the production adapter holds only the client, adapter.audit.timestamp).

It keeps nothing on disk between requests: the serial number lives in memory and each
reply is made in a temporary directory removed when the reply is read, so a stopped (or
killed) simulator leaves no directory behind.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

OPENSSL = shutil.which("openssl") or "openssl"

TSA_CONFIG = """
[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
dir = {dir}
serial = $dir/tsaserial
crypto_device = builtin
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


class TimestampRefused(Exception):
    pass


class TimestampAuthority:
    def __init__(self, cert: Path, key: Path, chain: Path | None = None) -> None:
        self.cert, self.key, self.chain = cert, key, chain
        self._serial = 1
        self._lock = threading.Lock()

    def reply(self, query: bytes) -> bytes:
        """A DER timestamp response to a DER query."""
        with self._lock:
            serial = self._serial
            self._serial += 1
        with tempfile.TemporaryDirectory(prefix="thads-tsa-") as tmp:
            d = Path(tmp)
            (d / "tsaserial").write_text(f"{serial:02X}\n")
            (d / "tsa.cnf").write_text(TSA_CONFIG.format(dir=d))
            (d / "q.tsq").write_bytes(query)
            args = [OPENSSL, "ts", "-reply", "-config", "tsa.cnf", "-queryfile", "q.tsq",
                    "-signer", str(self.cert), "-inkey", str(self.key), "-out", "r.tsr"]
            if self.chain:
                args += ["-chain", str(self.chain)]
            r = subprocess.run(args, cwd=d, capture_output=True, timeout=60)
            if r.returncode:
                raise TimestampRefused(r.stderr.decode(errors="replace")[-300:])
            return (d / "r.tsr").read_bytes()
