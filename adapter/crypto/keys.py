"""Load keys and certificates once per process.

Loading an RSA key from PEM with full checking costs ~55 ms; a signer that reloads it per
packet runs at 18 packets/s. Identities are cached by path and file stamp, so every caller
in a process shares one key object, and a rotated key file is picked up on its next load.

`[signing] key` is a PEM file or a PKCS#11 URI (pkcs11.py): a token key is opened once per
process, in that process's own session. A rotation configured beside the key (`next_key`,
`next_cert`, `next_from`) becomes the identity's successor: `identity.at(moment)` is the
one to sign with at that moment, `identity.certificates()` lists both.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adapter.errors import ConfigError

if TYPE_CHECKING:
    from adapter.config import Settings

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@runtime_checkable
class ProfileSigner(Protocol):
    """A key on a token (pkcs11.py): it gives the XML-DSig SignatureValue in one call, so
    the signer skips the DER round trip cryptography's `sign` would need."""

    def sign_profile(self, data: bytes, hash_name: str) -> bytes: ...


@dataclass(frozen=True)
class SigningIdentity:
    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    cert_pem: str
    #: the identity that takes over at `successor_from` (a configured rotation), if any.
    successor: SigningIdentity | None = None
    successor_from: dt.datetime | None = None

    def at(self, moment: dt.datetime) -> SigningIdentity:
        """The identity to sign with at `moment` (aware): the successor from its start."""
        if self.successor is not None and self.successor_from is not None \
                and moment >= self.successor_from:
            return self.successor
        return self

    def certificates(self) -> tuple[x509.Certificate, ...]:
        """Every certificate this identity signs with, oldest first (rotation: both)."""
        return (self.cert, *(self.successor.certificates() if self.successor else ()))

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    def days_to_expiry(self, now: dt.datetime | None = None) -> float:
        now = now or dt.datetime.now(dt.UTC)
        return (self.cert.not_valid_after_utc - now).total_seconds() / 86400


_cache: dict[tuple, SigningIdentity] = {}
_lock = threading.Lock()


def load_certificates(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), "-",
                          f"cannot read certificate file: {exc.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(str(path), "-", f"not a PEM certificate file: {exc}") from None
    return certs


def load_identity(key_path: Path, cert_path: Path, chain_paths: list[Path] | None = None,
                  passphrase: bytes | None = None) -> SigningIdentity:
    """The signing key and its certificate, loaded once and checked to belong together."""
    paths = (key_path, cert_path, *(chain_paths or []))
    try:
        stamp = tuple((str(p), os.stat(p).st_mtime_ns) for p in paths)
    except OSError as exc:
        hint = "run `thads-adapter certs dev-pki` for a demo"
        raise ConfigError(str(exc.filename), "-", f"{exc.strerror} ({hint})") from None
    with _lock:
        if stamp in _cache:
            return _cache[stamp]
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), passphrase)
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(key_path), "-", f"cannot load private key: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError(str(key_path), "-", "only RSA and EC keys are supported")
        cert = load_certificates(cert_path)[0]
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        enc = serialization.Encoding.DER
        if key.public_key().public_bytes(enc, pub) != cert.public_key().public_bytes(enc, pub):
            raise ConfigError(str(cert_path), "-", f"certificate does not match key {key_path}")
        chain = tuple(c for p in chain_paths or [] for c in load_certificates(p))
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        ident = SigningIdentity(key, cert, chain, pem)
        _cache[stamp] = ident
        return ident


def load_token_identity(uri_text: str, cert_path: Path,
                        chain_paths: list[Path] | None = None, *,
                        config_file: str = "-", setting: str = "signing.key"
                        ) -> SigningIdentity:
    """The token key named by a PKCS#11 URI with its certificate, opened in this process's
    own session (once per process). A missing token, a locked token, a wrong PIN or a key
    that is not the certificate's raise a one-line ConfigError naming `setting`."""
    from adapter.crypto.pkcs11 import TokenConfigError, TokenEcKey, TokenRsaKey, open_token_key
    from adapter.crypto.pkcs11_uri import parse_pkcs11_uri

    try:
        uri = parse_pkcs11_uri(uri_text)
    except ValueError as exc:
        raise ConfigError(config_file, setting, str(exc)) from None
    paths = (cert_path, *(chain_paths or []))
    try:
        stamp = (uri_text, *((str(p), os.stat(p).st_mtime_ns) for p in paths))
    except OSError as exc:
        raise ConfigError(str(exc.filename), "-", f"{exc.strerror}") from None
    with _lock:
        if stamp in _cache:  # loaded before (in the parent, if this process was forked)
            ident = _cache[stamp]
            try:  # this process's own session, opened now (a URI stamp holds a token key)
                if isinstance(ident.key, TokenRsaKey | TokenEcKey):
                    ident.key.ref.open()
            except TokenConfigError as exc:
                raise ConfigError(config_file, setting, str(exc)) from None
            return ident
        cert = load_certificates(cert_path)[0]
        try:
            key = open_token_key(uri, cert.public_key())
        except TokenConfigError as exc:
            raise ConfigError(config_file, setting, str(exc)) from None
        chain = tuple(c for p in chain_paths or [] for c in load_certificates(p))
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        ident = SigningIdentity(key, cert, chain, pem)
        _cache[stamp] = ident
        return ident


#: the key each THADS signature algorithm needs, as an operator reads it.
_KEY_TYPES: dict[str, tuple[type, str]] = {"rsa-sha256": (rsa.RSAPrivateKey, "an RSA"),
                                           "ecdsa-sha256": (ec.EllipticCurvePrivateKey, "an EC")}


def _one_identity(settings: Settings, key: str, cert: str, chain: list[str],
                  setting: str) -> SigningIdentity:
    from adapter.crypto.pkcs11_uri import is_pkcs11_uri

    s = settings.signing
    if is_pkcs11_uri(key):
        return load_token_identity(key, settings.path(cert), [settings.path(p) for p in chain],
                                   config_file=settings.source_file, setting=setting)
    passphrase = os.environ.get(s.key_passphrase_env, "").encode() \
        if s.key_passphrase_env else None
    return load_identity(settings.path(key), settings.path(cert),
                         [settings.path(p) for p in chain], passphrase or None)


def configured_identity(settings: Settings) -> SigningIdentity:
    """The identity `[signing]` names (file or token key), checked to suit the configured
    algorithm, with its configured successor if a rotation is set. Every process calls
    this once (the service before it starts its sign workers, each worker in its
    initializer), so a token that is missing, locked or refuses the PIN stops the start
    with one line (exit 2) rather than failing packets."""
    s = settings.signing
    identity = _one_identity(settings, s.key, s.cert, s.chain, "signing.key")
    wanted, article = _KEY_TYPES[s.algorithm]
    if not isinstance(identity.key, wanted):
        held = next((a for t, a in _KEY_TYPES.values() if isinstance(identity.key, t)),
                    "another")
        raise ConfigError(settings.source_file, "signing.key",
                          f"algorithm {s.algorithm} needs {article} key, but {s.key} holds "
                          f"{held} key: name a matching key in signing.key and signing.cert "
                          "(the dev PKI's EC pair is certs/dev/adapter-ec.key and .crt)")
    if s.next_key is None or s.next_cert is None or s.next_from is None:
        return identity
    nxt = _one_identity(settings, s.next_key, s.next_cert, s.next_chain, "signing.next_key")
    if nxt.cert.not_valid_before_utc > s.next_from:
        raise ConfigError(settings.source_file, "signing.next_from",
                          f"{s.next_from.isoformat()} is before the next certificate is "
                          f"valid ({nxt.cert.not_valid_before_utc.isoformat()}): move "
                          "next_from later or use a certificate valid by then")
    if nxt.cert.not_valid_after_utc <= s.next_from:
        raise ConfigError(settings.source_file, "signing.next_cert",
                          f"the next certificate expires before next_from "
                          f"({nxt.cert.not_valid_after_utc.isoformat()})")
    return dataclasses.replace(identity, successor=nxt, successor_from=s.next_from)
