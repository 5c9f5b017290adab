"""A development PKI that strict X.509 verifiers accept.

cryptography's verifier (used by signxml) refuses a CA without KeyUsage(keyCertSign), so
every certificate here carries BasicConstraints, KeyUsage and key identifiers, as a real
ministry CA would issue them. Never use these keys outside development and tests.

The dev CA can revoke (`revoke`): its CRL is published in the directory as dev-ca.crl (DER)
and dev-ca.crl.pem, which the simulator serves at /crl/dev-ca.crl. Certificates carry a
CRL distribution point only when one is asked for (`crl_url`), so earlier ones stay valid.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapter.crypto.trust import signs_certificates

#: certificates the dev PKI issues: file stem -> (common name, purpose).
MEMBERS = {
    "adapter": ("THADS exchange adapter (dev)", "signer"),
    "adapter-ec": ("THADS exchange adapter ECDSA (dev)", "signer-ec"),
    "sim": ("LGSP simulator (dev)", "server"),
    "court": ("Toa an nhan dan (dev court signer)", "signer"),
    "tsa": ("THADS dev timestamp authority", "tsa"),
}


#: the dev CA's CRL (DER; the PEM copy adds ".pem") and the list it is made from.
CRL_NAME = "dev-ca.crl"
REVOKED_LIST = "revoked.json"
#: how long a published CRL is current (its nextUpdate).
CRL_DAYS = 7
#: RFC 5280 reasons an operator may give (removeFromCRL belongs to delta CRLs only).
REASONS = tuple(r.value for r in x509.ReasonFlags if r != x509.ReasonFlags.remove_from_crl)


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
           purpose: str, days: int, now: dt.datetime, crl_url: str | None = None
           ) -> x509.Certificate:
    issuer = ca_cert.subject if ca_cert else subject
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False))
    auth_pub = (ca_cert.public_key() if ca_cert else key.public_key())
    if not signs_certificates(auth_pub):
        raise TypeError(f"the issuer's {type(auth_pub).__name__} cannot sign certificates")
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
        if crl_url:
            b = b.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), False)
    return b.sign(ca_key, hashes.SHA256())


def create_dev_pki(directory: Path, *, force: bool = False, days: int = 825,
                   crl_url: str | None = None) -> list[Path]:
    """Create the CA and every member under `directory`, and the CA's CRL; existing files
    are kept unless `force`, so running it twice is harmless. Members issued now name
    `crl_url` as their CRL distribution point, if given. Returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = DevPki(directory)
    if pki.ca_cert.exists() and all(pki.cert(s).exists() for s in MEMBERS) and \
            (directory / "axis.secret").exists() and (directory / CRL_NAME).exists() and \
            not force:
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
        (directory / REVOKED_LIST).unlink(missing_ok=True)  # serials of a CA now gone
    for stem, (cn, purpose) in MEMBERS.items():
        if pki.cert(stem).exists() and not force:
            continue
        key = (ec.generate_private_key(ec.SECP256R1()) if purpose == "signer-ec"
               else rsa.generate_private_key(public_exponent=65537, key_size=2048))
        cert = _issue(ca_key, ca_cert, _name(cn), key, purpose=purpose, days=days, now=now,
                      crl_url=crl_url)
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
    if not (directory / CRL_NAME).exists() or written:
        written += publish_crl(directory, now=now)
    return written


# ---- revocation -------------------------------------------------------------------------

@dataclass(frozen=True)
class Revoked:
    name: str
    serial: int
    subject: str
    revoked_at: dt.datetime
    reason: str


def _load_ca(directory: Path):
    pki = DevPki(directory)
    try:
        key = serialization.load_pem_private_key(pki.key("ca").read_bytes(), None)
        cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    except OSError as exc:
        raise ValueError(f"{directory}: no dev CA ({exc.strerror}); run "
                         "`thads-adapter certs dev-pki` first") from None
    return key, cert


def _read_list(directory: Path) -> dict:
    path = directory / REVOKED_LIST
    if not path.exists():
        return {"crl_number": 0, "revoked": []}
    return json.loads(path.read_text(encoding="utf-8"))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def publish_crl(directory: Path, *, now: dt.datetime | None = None,
                days: int = CRL_DAYS) -> list[Path]:
    """Sign the dev CA's CRL from revoked.json and write it as DER and PEM."""
    ca_key, ca_cert = _load_ca(directory)
    now = now or dt.datetime.now(dt.UTC)
    listed = _read_list(directory)
    listed["crl_number"] = int(listed.get("crl_number", 0)) + 1
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
         .last_update(now - dt.timedelta(minutes=1)).next_update(now + dt.timedelta(days=days))
         .add_extension(x509.CRLNumber(listed["crl_number"]), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             ca_cert.public_key()), False))
    for r in listed["revoked"]:
        rb = (x509.RevokedCertificateBuilder().serial_number(int(r["serial"], 16))
              .revocation_date(dt.datetime.fromisoformat(r["revoked_at"])))
        if r["reason"] != "unspecified":  # RFC 5280: leave the reason out rather
            rb = rb.add_extension(x509.CRLReason(x509.ReasonFlags(r["reason"])), False)
        b = b.add_revoked_certificate(rb.build())
    crl = b.sign(ca_key, hashes.SHA256())
    der, pem = directory / CRL_NAME, directory / f"{CRL_NAME}.pem"
    _write_atomic(der, crl.public_bytes(serialization.Encoding.DER))
    _write_atomic(pem, crl.public_bytes(serialization.Encoding.PEM))
    _write_atomic(directory / REVOKED_LIST, json.dumps(listed, indent=1).encode())
    return [der, pem]


def revoke(directory: Path, name: str, *, reason: str = "unspecified",
           now: dt.datetime | None = None) -> Revoked:
    """Add certificate NAME (`<name>.crt` in the directory, e.g. court) to the dev CA's
    CRL and publish it. Revoking twice keeps the first date and reason."""
    if reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r}: expected one of {', '.join(REASONS)}")
    _ca_key, ca_cert = _load_ca(directory)
    path = directory / f"{name}.crt"
    if not path.is_file() or name == "ca":
        known = sorted(p.stem for p in directory.glob("*.crt") if p.stem != "ca")
        raise ValueError(f"no certificate {name!r} in {directory}: expected one of "
                         f"{', '.join(known)}")
    cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    if cert.issuer != ca_cert.subject:
        raise ValueError(f"{path} was not issued by the dev CA")
    listed = _read_list(directory)
    serial = f"{cert.serial_number:x}"
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    entry = next((r for r in listed["revoked"] if r["serial"] == serial), None)
    if entry is None:
        entry = {"name": name, "serial": serial, "subject": cert.subject.rfc4514_string(),
                 "revoked_at": now.isoformat(), "reason": reason}
        listed["revoked"].append(entry)
        _write_atomic(directory / REVOKED_LIST, json.dumps(listed, indent=1).encode())
    publish_crl(directory, now=now)
    return Revoked(entry["name"], int(serial, 16), entry["subject"],
                   dt.datetime.fromisoformat(entry["revoked_at"]), entry["reason"])
