"""SoftHSM2 tokens in a temporary directory, for the PKCS#11 tests.

Each test gets its own token directory and configuration (SOFTHSM2_CONF); this process's
PKCS#11 state is reset around it, so the library reads that configuration afresh.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from adapter.crypto.pkcs11 import reset_process

MODULES = ("/usr/lib/softhsm/libsofthsm2.so",
           "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
           "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")
USER_PIN, SO_PIN = "4711-thads", "so-pin-8812"
CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED = 0x00020000, 0x00040000


def softhsm_module() -> str:
    found = next((m for m in MODULES if Path(m).is_file()), None)
    assert found and shutil.which("softhsm2-util"), \
        "SoftHSM2 is required (make test installs the Debian package softhsm2)"
    return found


class SoftHsm:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        (directory / "tokens").mkdir(parents=True)
        self.conf = directory / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {directory / 'tokens'}\n"
                             "objectstore.backend = file\nlog.level = ERROR\n"
                             "slots.removable = false\n", encoding="utf-8")
        self.module = softhsm_module()
        self.pin_file = directory / "token.pin"
        self.pin_file.write_text(USER_PIN + "\n", encoding="utf-8")
        self.pin_file.chmod(0o400)

    def util(self, *args: str) -> str:
        r = subprocess.run(["softhsm2-util", *args], capture_output=True, text=True,
                           env={"SOFTHSM2_CONF": str(self.conf), "PATH": "/usr/bin:/bin"})
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def init_token(self, label: str) -> None:
        self.util("--init-token", "--free", "--label", label, "--pin", USER_PIN,
                  "--so-pin", SO_PIN)

    def import_key(self, token: str, key_pem: Path, label: str, key_id: str) -> None:
        """A PKCS#8 PEM key (the dev PKI writes them) onto the token."""
        self.util("--import", str(key_pem), "--token", token, "--label", label, "--id",
                  key_id, "--pin", USER_PIN)

    def uri(self, token: str, label: str | None = None, key_id: str | None = None, *,
            pin_source: str | None = None) -> str:
        path = [f"token={quote(token, safe='')}"]
        if label is not None:
            path.append(f"object={quote(label, safe='')}")
        if key_id is not None:
            path.append("id=" + "".join(f"%{b:02x}" for b in bytes.fromhex(key_id)))
        pin = pin_source or f"file:{self.pin_file}"
        return f"pkcs11:{';'.join(path)}?module-path={self.module}&pin-source={pin}"

    def lock_user_pin(self, token: str) -> None:
        """Set CKF_USER_PIN_LOCKED, as a token does after too many wrong PINs (SoftHSM2
        itself never locks)."""
        self.set_token_flag(token, CKF_USER_PIN_LOCKED)

    def set_token_flag(self, token: str, flag: int) -> None:
        """Set a flag in the token's stored flags (SoftHSM2's token.object file)."""
        for obj in (self.dir / "tokens").glob("*/token.object"):
            data = bytearray(obj.read_bytes())
            if token.encode() not in data:
                continue
            tag = bytes.fromhex("000000008000534b")  # CKA_OS_TOKENFLAGS
            at = data.index(tag) + len(tag) + 8  # then the attribute type (unsigned long)
            flags = int.from_bytes(data[at:at + 8], "big") | flag
            data[at:at + 8] = flags.to_bytes(8, "big")
            obj.write_bytes(bytes(data))
            return
        raise AssertionError(f"no token {token!r}")


def softhsm_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHsm]:
    """Body of a `softhsm` fixture: a fresh SoftHSM2 configuration for this test."""
    hsm = SoftHsm(tmp_path / "softhsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(hsm.conf))
    reset_process()
    try:
        yield hsm
    finally:
        reset_process()


def certify(ca_dir: Path, public_key, cn: str, *, days: int = 365,
            not_before: dt.datetime | None = None) -> x509.Certificate:
    """A packet-signer certificate for `public_key` from the dev CA (as a ministry CA would
    certify a key generated on a token)."""
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                         "THADS adapter development"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject)
         .public_key(public_key).serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()),
                        False)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
         .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False,
                                      False), True))
    return b.sign(ca_key, hashes.SHA256())


def write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path
