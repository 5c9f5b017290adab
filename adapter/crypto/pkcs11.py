"""Signing keys that stay on a token or an HSM, used through PKCS#11 (python-pkcs11).

The key object is a `cryptography` RSA or EC private key whose `sign` asks the token, so
every signer of the adapter (THADS packets, edXML, evidence checkpoints) takes the token
path without knowing it; only the private numbers cannot be read (they never leave).

Sessions are per process: PKCS#11 state does not survive fork, and a session must not be
used by two processes. Each process opens its own session on first use (spawned workers
do so in their initializer), looks the key handle up once, and signs under one lock (a
session runs one operation at a time). A child made by fork drops what it inherited and
initialises the library again. A session lost mid-run (token pulled, HSM fail-over) is
reopened once before the signature is refused.

At load, a missing module or token, a locked token, a wrong PIN or a key that does not
match its certificate raise `TokenConfigError`: one line, naming `signing.key`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11

from adapter.crypto.pkcs11_uri import PinSource, Pkcs11Uri
from adapter.errors import AdapterError

log = logging.getLogger("adapter.crypto.pkcs11")

#: hash -> the mechanism that hashes and signs on the token (RSA PKCS#1 v1.5).
_RSA_MECHANISMS = {"sha256": Mechanism.SHA256_RSA_PKCS, "sha1": Mechanism.SHA1_RSA_PKCS,
                   "sha384": Mechanism.SHA384_RSA_PKCS, "sha512": Mechanism.SHA512_RSA_PKCS}
#: DER DigestInfo prefixes, for an already hashed input signed with CKM_RSA_PKCS.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
#: errors after which a fresh session may succeed (the token came back, the HSM failed over).
_SESSION_LOST = (p11.SessionClosed, p11.SessionHandleInvalid, p11.DeviceRemoved,
                 p11.TokenNotPresent, p11.UserNotLoggedIn, p11.DeviceError,
                 p11.ObjectHandleInvalid, p11.KeyHandleInvalid)


class TokenConfigError(Exception):
    """The token cannot be used as configured; the message is the one line to show."""


class TokenUnavailable(AdapterError):
    """Signing failed on the token after the session was reopened once; the round is
    retried later (the exchange is not failed for it)."""

    permanent = False


@dataclass
class _Process:
    """What one process holds: libraries and sessions by token, key handles by URI."""

    pid: int
    libs: dict[str, Any]
    sessions: dict[tuple, Any]
    keys: dict[str, Any]


_lock = threading.RLock()
_state = _Process(os.getpid(), {}, {}, {})
#: module path -> the process that initialised it (kept across fork, to notice one).
_initialised_in: dict[str, int] = {}


def _after_fork_in_child() -> None:
    """Forget the parent's sessions: they are not ours (PKCS#11 state does not survive
    fork). The libraries are initialised again on first use in this process."""
    global _lock, _state
    _lock = threading.RLock()
    _state = _Process(os.getpid(), {}, {}, {})


os.register_at_fork(after_in_child=_after_fork_in_child)


def read_pin(source: PinSource) -> str:
    """The PIN, read now (each process reads it itself; it is never kept)."""
    if source.kind == "env":
        pin = os.environ.get(source.where)
        if pin is None:
            raise TokenConfigError(f"the PIN variable {source.where} (pin-source) is not set")
    else:
        try:
            st = os.stat(source.where)
            pin = Path(source.where).read_text(encoding="utf-8")
        except OSError as exc:
            raise TokenConfigError(f"cannot read the PIN file {source.where}: "
                                   f"{exc.strerror}") from None
        except UnicodeDecodeError:
            raise TokenConfigError(f"the PIN file {source.where} is not UTF-8 text") from None
        if st.st_mode & stat.S_IROTH:
            log.warning("the PIN file %s is readable by every user: chmod 0400 it",
                        source.where)
        pin = pin.removesuffix("\n").removesuffix("\r")
    if not pin:
        raise TokenConfigError(f"the PIN from {source} is empty")
    return pin


def _library(module_path: str) -> Any:
    lib = _state.libs.get(module_path)
    if lib is not None:
        return lib
    if not Path(module_path).is_file():
        raise TokenConfigError(f"PKCS#11 module {module_path} not found (install the "
                               "token's middleware, or correct module-path)")
    try:
        lib = pkcs11.lib(module_path)
        if _initialised_in.setdefault(module_path, os.getpid()) != os.getpid():
            _reinitialize(lib)  # inherited through fork from a process that used it
            _initialised_in[module_path] = os.getpid()
    except p11.PKCS11Error as exc:
        raise TokenConfigError(f"PKCS#11 module {module_path} cannot be loaded: "
                               f"{exc or type(exc).__name__}") from None
    _state.libs[module_path] = lib
    return lib


def _reinitialize(lib: Any) -> None:
    with contextlib.suppress(p11.PKCS11Error):  # the library may have seen the fork itself
        lib.finalize()
    try:
        lib.initialize()
    except p11.PKCS11Error as exc:
        if "already initialized" not in str(exc):
            raise


def _token(lib: Any, uri: Pkcs11Uri) -> Any:
    found, seen = [], []
    for slot in lib.get_slots(token_present=True):
        if uri.slot_id is not None and slot.slot_id != uri.slot_id:
            continue
        try:
            token = slot.get_token()
        except (p11.TokenNotPresent, p11.TokenNotRecognised):
            continue
        if not token.flags & TokenFlag.TOKEN_INITIALIZED:
            continue
        seen.append(token.label)
        if ((uri.token is None or token.label == uri.token)
                and (uri.serial is None or token.serial.decode(errors="replace").strip()
                     == uri.serial)
                and (uri.manufacturer is None or token.manufacturer_id == uri.manufacturer)):
            found.append(token)
    if not found:
        present = ", ".join(repr(s) for s in seen) or "none"
        raise TokenConfigError(f"no token {uri.token_name} in {uri.module_path} (tokens "
                               f"present: {present}); is the token plugged in?")
    if len(found) > 1:
        raise TokenConfigError(f"{len(found)} tokens match {uri.token_name}: add serial= "
                               "to the URI")
    return found[0]


def _login(token: Any, uri: Pkcs11Uri) -> Any:
    flags = token.flags
    name = f"token {uri.token_name}"
    if flags & TokenFlag.USER_PIN_LOCKED:
        raise TokenConfigError(f"{name} is locked: its user PIN was blocked after wrong "
                               "PINs; unblock it with the SO PIN before starting")
    if not flags & TokenFlag.USER_PIN_INITIALIZED:
        raise TokenConfigError(f"{name} has no user PIN yet (initialise it first)")
    pin = read_pin(uri.pin)
    try:
        return token.open(user_pin=pin)
    except p11.UserAlreadyLoggedIn:
        return token.open()  # this process is logged in to the token already
    except p11.PinIncorrect:
        last = ""
        with contextlib.suppress(p11.PKCS11Error):  # the flags as they are now, after the try
            if token.slot.get_token().flags & TokenFlag.USER_PIN_FINAL_TRY:
                last = " (the next wrong PIN locks it)"
        raise TokenConfigError(f"wrong PIN for {name} (from the {uri.pin}){last}; the token "
                               "locks after a few wrong PINs: correct the PIN before "
                               "starting again") from None
    except p11.PinLocked:
        raise TokenConfigError(f"{name} is locked: its user PIN was blocked after wrong "
                               "PINs; unblock it with the SO PIN before starting") from None
    except (p11.PinExpired, p11.PinInvalid, p11.PinLenRange) as exc:
        raise TokenConfigError(f"the PIN for {name} is refused ({type(exc).__name__}): "
                               "set a valid PIN") from None


def _session_key(uri: Pkcs11Uri) -> tuple:
    return (uri.module_path, uri.token, uri.serial, uri.slot_id, uri.manufacturer)


def _find_key(session: Any, uri: Pkcs11Uri) -> Any:
    try:
        return session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=uri.object,
                               id=uri.id)
    except p11.NoSuchKey:
        raise TokenConfigError(f"no private key with {uri.key_name} on token "
                               f"{uri.token_name}") from None
    except p11.MultipleObjectsReturned:
        raise TokenConfigError(f"several private keys match {uri.key_name} on token "
                               f"{uri.token_name}: add id= to the URI") from None


def _handle(uri: Pkcs11Uri, *, fresh: bool = False) -> Any:
    """This process's handle of the key (session opened and key found on first use)."""
    sk = _session_key(uri)
    if fresh:
        old = _state.sessions.pop(sk, None)
        for u in [u for u in _state.keys if _state.keys[u][0] == sk]:
            del _state.keys[u]
        if old is not None:
            with contextlib.suppress(p11.PKCS11Error):
                old.close()
    cached = _state.keys.get(uri.text)
    if cached is not None:
        return cached[1]
    lib = _library(uri.module_path)
    session = _state.sessions.get(sk)
    if session is None:
        session = _login(_token(lib, uri), uri)
        _state.sessions[sk] = session
    key = _find_key(session, uri)
    _state.keys[uri.text] = (sk, key)
    return key


class TokenKeyRef:
    """A key on a token, named by its URI; signs in this process's own session."""

    def __init__(self, uri: Pkcs11Uri) -> None:
        self.uri = uri

    def open(self) -> KeyType:
        """Open this process's session and find the key; TokenConfigError if it cannot."""
        with _lock:
            try:
                return _handle(self.uri)[Attribute.KEY_TYPE]
            except TokenConfigError:
                raise
            except p11.PKCS11Error as exc:
                raise TokenConfigError(f"token {self.uri.token_name}: "
                                       f"{exc or type(exc).__name__}") from None

    def sign(self, data: bytes, mechanism: Mechanism) -> bytes:
        with _lock:
            try:
                return bytes(_handle(self.uri).sign(data, mechanism=mechanism))
            except _SESSION_LOST as first:
                log.warning("token %s: %s; reopening the session", self.uri.token_name,
                            type(first).__name__)
                try:
                    return bytes(_handle(self.uri, fresh=True).sign(data, mechanism=mechanism))
                except (p11.PKCS11Error, TokenConfigError) as exc:
                    raise TokenUnavailable(f"token {self.uri.token_name} cannot sign: "
                                           f"{exc or type(exc).__name__}") from None
            except p11.PKCS11Error as exc:
                raise TokenUnavailable(f"token {self.uri.token_name} cannot sign: "
                                       f"{exc or type(exc).__name__}") from None


def _hash_name(algorithm: Any) -> str:
    name = getattr(algorithm, "name", "")
    if name not in _DIGEST_INFO:
        raise ValueError(f"hash {name or algorithm!r} is not supported for token keys")
    return name


def _never_leaves(what: str) -> TypeError:
    return TypeError(f"{what}: the key stays on the token (PKCS#11) and cannot be exported")


_PKCS1v15 = padding.PKCS1v15  # `padding` is the name of sign()'s parameter below
#: what cryptography's EllipticCurvePrivateKey.sign accepts as data (its `utils.Buffer`,
#: spelled out: that alias is not in every cryptography release the project allows).
_Buffer = bytes | bytearray | memoryview


class TokenRsaKey(rsa.RSAPrivateKey):
    """An RSA key on a token: PKCS#1 v1.5 signatures computed by the token."""

    def __init__(self, ref: TokenKeyRef, public: rsa.RSAPublicKey) -> None:
        self.ref, self._public = ref, public

    def sign_profile(self, data: bytes, hash_name: str) -> bytes:
        """The XML-DSig SignatureValue: CKM_SHA256_RSA_PKCS (or SHA-1 for legacy edXML)."""
        return self.ref.sign(data, _RSA_MECHANISMS[hash_name])

    def sign(self, data: bytes, padding: padding.AsymmetricPadding,
             algorithm: Any) -> bytes:
        if not isinstance(padding, _PKCS1v15):
            raise ValueError("token RSA keys sign with PKCS#1 v1.5 padding only")
        if isinstance(algorithm, utils.Prehashed):
            name = _hash_name(algorithm._algorithm)
            return self.ref.sign(_DIGEST_INFO[name] + data, Mechanism.RSA_PKCS)
        return self.sign_profile(data, _hash_name(algorithm))

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        raise _never_leaves("decrypt is not offered")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        raise _never_leaves("private_numbers")

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        raise _never_leaves("private_bytes")

    def __copy__(self) -> TokenRsaKey:
        return self

    def __deepcopy__(self, memo: dict) -> TokenRsaKey:
        return self

    def __repr__(self) -> str:
        return f"<TokenRsaKey {self.ref.uri.key_name} on {self.ref.uri.token_name}>"



class TokenEcKey(ec.EllipticCurvePrivateKey):
    """An EC key on a token: CKM_ECDSA over the digest, which already gives raw r‖s."""

    def __init__(self, ref: TokenKeyRef, public: ec.EllipticCurvePublicKey) -> None:
        self.ref, self._public = ref, public

    def sign_profile(self, data: bytes, hash_name: str) -> bytes:
        """The XML-DSig SignatureValue: r‖s over the hash of `data` (no DER round trip)."""
        return self.ref.sign(hashlib.new(hash_name, data).digest(), Mechanism.ECDSA)

    def sign(self, data: _Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm
             ) -> bytes:
        """DER, as cryptography's EC keys return it (checkpoints, `openssl dgst`)."""
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise ValueError("token EC keys sign with ECDSA only")
        alg = signature_algorithm.algorithm
        if isinstance(alg, utils.Prehashed):
            digest = bytes(data)
        else:
            digest = hashlib.new(_hash_name(alg), data).digest()
        raw = self.ref.sign(digest, Mechanism.ECDSA)
        half = len(raw) // 2
        return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                          int.from_bytes(raw[half:], "big"))

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.curve.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def exchange(self, algorithm: ec.ECDH, peer_public_key: Any) -> bytes:
        raise _never_leaves("key exchange is not offered")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise _never_leaves("private_numbers")

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        raise _never_leaves("private_bytes")

    def __copy__(self) -> TokenEcKey:
        return self

    def __deepcopy__(self, memo: dict) -> TokenEcKey:
        return self

    def __repr__(self) -> str:
        return f"<TokenEcKey {self.ref.uri.key_name} on {self.ref.uri.token_name}>"


TokenKey = TokenRsaKey | TokenEcKey


def open_token_key(uri: Pkcs11Uri, public: Any) -> TokenKey:
    """The token's key for the certificate's public key, proven by one test signature:
    a key that is not the certificate's would sign every packet invalidly."""
    ref = TokenKeyRef(uri)
    key_type = ref.open()
    probe = b"thads-adapter: does the token key match its certificate?"
    try:
        if key_type == KeyType.RSA and isinstance(public, rsa.RSAPublicKey):
            rsa_key = TokenRsaKey(ref, public)
            public.verify(rsa_key.sign(probe, padding.PKCS1v15(), hashes.SHA256()), probe,
                          padding.PKCS1v15(), hashes.SHA256())
            key: TokenKey = rsa_key
        elif key_type == KeyType.EC and isinstance(public, ec.EllipticCurvePublicKey):
            ec_key = TokenEcKey(ref, public)
            public.verify(ec_key.sign(probe, ec.ECDSA(hashes.SHA256())), probe,
                          ec.ECDSA(hashes.SHA256()))
            key = ec_key
        else:
            held = {KeyType.RSA: "an RSA", KeyType.EC: "an EC"}.get(key_type, str(key_type))
            raise TokenConfigError(f"the key with {uri.key_name} on token {uri.token_name} "
                                   f"is {held} key, but the certificate's is not")
    except InvalidSignature:
        raise TokenConfigError(f"the key with {uri.key_name} on token {uri.token_name} is "
                               "not the certificate's key (its test signature does not "
                               "verify with the certificate)") from None
    except TokenUnavailable as exc:
        raise TokenConfigError(str(exc)) from None
    except ValueError as exc:  # a mechanism the token does not offer
        raise TokenConfigError(f"token {uri.token_name}: {exc}") from None
    return key


def close_all() -> None:
    """Close this process's sessions (tests; the service just exits)."""
    with _lock:
        for session in _state.sessions.values():
            with contextlib.suppress(p11.PKCS11Error):
                session.close()
        _state.sessions.clear()
        _state.keys.clear()


def reset_process() -> None:
    """Close this process's sessions and finalise its PKCS#11 libraries, so the next use
    opens everything afresh (tests switching SoftHSM configurations)."""
    close_all()
    with _lock:
        for lib in _state.libs.values():
            with contextlib.suppress(p11.PKCS11Error):
                lib.finalize()
        _state.libs.clear()
