"""A development PKI that strict X.509 verifiers accept.

cryptography's verifier (used by signxml) refuses a CA without KeyUsage(keyCertSign), so
every certificate here carries BasicConstraints, KeyUsage and key identifiers, as a real
ministry CA would issue them. Never use these keys outside development and tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: certificates the dev PKI issues: file stem -> (common name, purpose).
MEMBERS = {
    "adapter": ("THADS exchange adapter (dev)", "signer"),
    "adapter-ec": ("THADS exchange adapter ECDSA (dev)", "signer-ec"),
    "sim": ("LGSP simulator (dev)", "server"),
    "court": ("Toa an nhan dan (dev court signer)", "signer"),
    "tsa": ("THADS dev timestamp authority", "tsa"),
}


@dataclass(frozen=True)
class DevPki:
    directory: Path

    def cert(self, stem: str) -> Path:
        return self.directory / f"{stem}.crt"

    def key(self, stem: str) -> Path:
        return self.directory / f"{stem}.key"

    @property
    def ca_cert(self) -> Path:
        return self.cert("ca")


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "THADS adapter development"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _write_key(path: Path, key) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(ca_key, ca_cert: x509.Certificate | None, subject: x509.Name, key, *,
           purpose: str, days: int, now: dt.datetime) -> x509.Certificate:
    issuer = ca_cert.subject if ca_cert else subject
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False))
    auth_pub = (ca_cert.public_key() if ca_cert else key.public_key())
    b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(auth_pub), False)
    if purpose == "ca":
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                          False), True)
    else:
        b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        signer = purpose in ("signer", "signer-ec")
        b = b.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=signer or purpose == "tsa",
            key_encipherment=purpose == "server", data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False,
            decipher_only=False), True)
        if purpose == "server":
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        if purpose == "tsa":
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                                True)
    return b.sign(ca_key, hashes.SHA256())


def create_dev_pki(directory: Path, *, force: bool = False, days: int = 825) -> list[Path]:
    """Create the CA and every member under `directory`; existing files are kept unless
    `force`, so running it twice is harmless. Returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = DevPki(directory)
    if pki.ca_cert.exists() and all(pki.cert(s).exists() for s in MEMBERS) and \
            (directory / "axis.secret").exists() and not force:
        return []
    now = dt.datetime.now(dt.UTC)
    written: list[Path] = []
    if pki.ca_cert.exists() and pki.key("ca").exists() and not force:
        ca_key = serialization.load_pem_private_key(pki.key("ca").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    else:
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        ca_cert = _issue(ca_key, None, _name("THADS adapter development CA"), ca_key,
                         purpose="ca", days=days + 365, now=now)
        _write_key(pki.key("ca"), ca_key)
        _write_cert(pki.ca_cert, ca_cert)
        written += [pki.key("ca"), pki.ca_cert]
    for stem, (cn, purpose) in MEMBERS.items():
        if pki.cert(stem).exists() and not force:
            continue
        key = (ec.generate_private_key(ec.SECP256R1()) if purpose == "signer-ec"
               else rsa.generate_private_key(public_exponent=65537, key_size=2048))
        cert = _issue(ca_key, ca_cert, _name(cn), key, purpose=purpose, days=days, now=now)
        _write_key(pki.key(stem), key)
        _write_cert(pki.cert(stem), cert)
        written += [pki.key(stem), pki.cert(stem)]
    # The shared secret of the development axis client (HMAC of the request headers).
    secret = directory / "axis.secret"
    if not secret.exists() or force:
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        written.append(secret)
    # An untrusted CA and signer, so tests and demos can show a refusal.
    rogue = directory / "untrusted"
    if not (rogue / "signer.crt").exists() or force:
        rogue.mkdir(exist_ok=True)
        r_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        r_cert = _issue(r_key, None, _name("Untrusted CA"), r_key, purpose="ca", days=days,
                        now=now)
        s_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        s_cert = _issue(r_key, r_cert, _name("Untrusted signer"), s_key, purpose="signer",
                        days=days, now=now)
        _write_cert(rogue / "ca.crt", r_cert)
        _write_key(rogue / "signer.key", s_key)
        _write_cert(rogue / "signer.crt", s_cert)
        written += [rogue / "ca.crt", rogue / "signer.key", rogue / "signer.crt"]
    return written
