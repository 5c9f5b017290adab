"""Enveloped XML-DSig over the packet root, referenced by its Id: the signer of the one
profile (exclusive c14n, SHA-256, RSA-SHA256 or ECDSA-SHA256).

Signing the element that carries `Id` gives `URI="#Id"`, so the signature still verifies
once the packet sits inside a SOAP envelope (`URI=""` would then mean the whole envelope).
Text is normalised to NFC first: the same Vietnamese name in NFD has other bytes, hence
another digest, and a receiver that normalises would see a broken signature.

`PacketSigner` does only what the profile needs: one exclusive c14n of the packet, one
SHA-256, the SignedInfo written directly in its canonical form, one private-key operation,
and the Signature spliced into the serialized packet; the certificate text is prepared once.
signxml did the same job with two copies of the tree and a PEM parse per packet (about twice
the CPU). Its output is byte-identical to signxml's (RSA PKCS#1 v1.5 is deterministic):
`SignxmlSigner` stays as the reference the tests and the benchmark compare it with.
Verification stays on signxml (verify.py).

A key on a token (pkcs11.py) makes the same one private-key operation on the token:
CKM_SHA256_RSA_PKCS, or CKM_ECDSA over the SHA-256 digest, which is already the r‖s that
XML-DSig wants. With a rotation configured, each packet is signed by the identity valid at
its moment (keys.py `SigningIdentity.at`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from signxml import XMLSigner, methods

from adapter.crypto.constants import (
    BY_NAME,
    DSIG_NS,
    ENVELOPED,
    PROFILE_C14N,
    PROFILE_DIGEST,
    PROFILE_SIGNATURE_METHODS,
    THADS_C14N,
    THADS_DIGEST,
    THADS_SIGNATURES,
)
from adapter.crypto.keys import ProfileSigner, SigningIdentity
from adapter.errors import ConfigError, PacketError
from adapter.xml.safe import parse_untrusted, serialize


def normalize_nfc(root: etree._Element) -> None:
    """Normalise every text, tail and attribute value to NFC, in place."""
    for el in root.iter():
        if el.text and not unicodedata.is_normalized("NFC", el.text):
            el.text = unicodedata.normalize("NFC", el.text)
        if el.tail and not unicodedata.is_normalized("NFC", el.tail):
            el.tail = unicodedata.normalize("NFC", el.tail)
        for k, v in el.attrib.items():
            if not unicodedata.is_normalized("NFC", v):
                el.set(k, unicodedata.normalize("NFC", v))


#: an Id needs no escaping in c14n or in serialization (xs:ID is an NCName: no &, <, >,
#: quotes, whitespace or colon).
_PLAIN_ID = re.compile(r"[^\s&<>\"':]+")


def _pem_body(cert) -> str:
    """The certificate as signxml writes it in X509Certificate: the PEM's base64 lines."""
    pem = cert.public_bytes(Encoding.PEM).decode()
    return pem.split("-----BEGIN CERTIFICATE-----\n", 1)[1].split("-----END CERTIFICATE-----")[0]


def _profile_algorithm(key) -> str:
    """The THADS profile has one algorithm per key type (a rotated-in key's follows it)."""
    return "ecdsa-sha256" if isinstance(key, ec.EllipticCurvePrivateKey) else "rsa-sha256"


class _KeyProfile:
    """One identity's half of the work, prepared once: the SignedInfo and Signature text
    around the Id and digest, the certificate text, and the private-key operation."""

    def __init__(self, identity: SigningIdentity, algorithm: str) -> None:
        alg = BY_NAME.get(algorithm)
        if alg is None or alg.uri not in THADS_SIGNATURES:
            raise ConfigError("[signing] algorithm", algorithm, "not in the THADS profile")
        want = rsa.RSAPrivateKey if alg.key == "rsa" else ec.EllipticCurvePrivateKey
        if not isinstance(identity.key, want):
            raise ConfigError("[signing] key", algorithm,
                              f"the key is not an {alg.key.upper()} key")
        self.identity, self.algorithm = identity, alg
        self._hash = alg.hash()
        #: a token key signs in one call that already gives the XML-DSig value (pkcs11.py)
        self._token_key = identity.key if isinstance(identity.key, ProfileSigner) else None
        self._ec_size = (identity.key.curve.key_size + 7) // 8 \
            if isinstance(identity.key, ec.EllipticCurvePrivateKey) else 0
        ds = f' xmlns:ds="{DSIG_NS}"'
        # SignedInfo in exclusive-c14n form, cut where the Id and the digest go
        self.si = (
            f'<ds:SignedInfo{ds}><ds:CanonicalizationMethod Algorithm="{THADS_C14N}">'
            f'</ds:CanonicalizationMethod><ds:SignatureMethod Algorithm="{alg.uri}">'
            '</ds:SignatureMethod><ds:Reference URI="#',
            f'"><ds:Transforms><ds:Transform Algorithm="{ENVELOPED}"></ds:Transform>'
            f'<ds:Transform Algorithm="{THADS_C14N}"></ds:Transform></ds:Transforms>'
            f'<ds:DigestMethod Algorithm="{THADS_DIGEST}"></ds:DigestMethod><ds:DigestValue>',
            "</ds:DigestValue></ds:Reference></ds:SignedInfo>")
        # the same Signature as lxml serializes it inside the packet
        self.sig = (
            f'<ds:Signature{ds}><ds:SignedInfo><ds:CanonicalizationMethod Algorithm='
            f'"{THADS_C14N}"/><ds:SignatureMethod Algorithm="{alg.uri}"/>'
            '<ds:Reference URI="#',
            f'"><ds:Transforms><ds:Transform Algorithm="{ENVELOPED}"/><ds:Transform Algorithm='
            f'"{THADS_C14N}"/></ds:Transforms><ds:DigestMethod Algorithm="{THADS_DIGEST}"/>'
            '<ds:DigestValue>',
            "</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>",
            ("</ds:SignatureValue><ds:KeyInfo><ds:X509Data>" + "".join(
                f"<ds:X509Certificate>{_pem_body(c)}</ds:X509Certificate>"
                for c in (identity.cert, *identity.chain))
             + "</ds:X509Data></ds:KeyInfo></ds:Signature>").encode())

    def sign(self, data: bytes) -> bytes:
        """The SignatureValue: PKCS#1 v1.5, or ECDSA as raw r‖s (XML-DSig's form)."""
        if self._token_key is not None:  # CKM_SHA256_RSA_PKCS, or CKM_ECDSA over SHA-256
            value = self._token_key.sign_profile(data, self.algorithm.hash_name)
            if self._ec_size and len(value) != 2 * self._ec_size:
                raise ConfigError("[signing] key", "ecdsa-sha256",
                                  f"the token gave a {len(value)}-byte ECDSA signature, "
                                  f"not r‖s of {2 * self._ec_size}")
            return value
        key = self.identity.key
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), self._hash)
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(self._hash)))
        return r.to_bytes(self._ec_size, "big") + s.to_bytes(self._ec_size, "big")


class PacketSigner:
    """One per process; holds the loaded key and certificates (see keys.py) and the profile.

    With a rotation configured (`identity.successor`), each packet is signed by the identity
    valid at its moment: `at=` when the caller knows it (the packet's creation time), else
    the clock's now. The file key path and the token key path (pkcs11.py) give the same
    bytes for the same RSA key."""

    def __init__(self, identity: SigningIdentity, algorithm: str = "rsa-sha256", *,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.identity = identity
        self._current = _KeyProfile(identity, algorithm)
        self.algorithm = self._current.algorithm
        self._next = None
        if identity.successor is not None and identity.successor_from is not None:
            self._next = (identity.successor_from, _KeyProfile(
                identity.successor, _profile_algorithm(identity.successor.key)))
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def profile_at(self, moment: dt.datetime | None = None) -> _KeyProfile:
        if self._next is None:
            return self._current
        start, nxt = self._next
        return nxt if (moment or self._clock()) >= start else self._current

    def identity_at(self, moment: dt.datetime | None = None) -> SigningIdentity:
        """The identity that signs a packet made at `moment` (default: the clock's now)."""
        return self.profile_at(moment).identity

    def sign_bytes(self, root: etree._Element, *, packet: str | None = None,
                   at: dt.datetime | None = None) -> bytes:
        """The serialized packet with its signature as the root's last child (what
        `serialize(sign(root))` gives, without building the signed tree); signed by the
        identity valid `at` (default: now)."""
        pid = root.get("Id")
        if not pid:
            raise PacketError("packet root has no Id attribute to reference", packet=packet)
        if not _PLAIN_ID.fullmatch(pid):
            raise PacketError(f"packet Id {pid!r} is not an XML ID", packet=packet)
        if "ds" in root.nsmap:
            raise PacketError("the packet root declares the prefix ds, which the signature "
                              "uses", packet=packet)
        if len(root) == 0:
            raise PacketError("the packet root is empty", packet=packet)
        normalize_nfc(root)
        digest = base64.b64encode(hashlib.sha256(
            etree.tostring(root, method="c14n", exclusive=True)).digest()).decode()
        profile = self.profile_at(at)
        a, b, c = profile.si
        value = profile.sign(f"{a}{pid}{b}{digest}{c}".encode())
        s1, s2, s3, s4 = profile.sig
        sig = f"{s1}{pid}{s2}{digest}{s3}".encode() + base64.b64encode(value) + s4
        data = serialize(root)
        end = data.rindex(b"</")
        return data[:end] + sig + data[end:]

    def sign(self, root: etree._Element, *, packet: str | None = None,
             at: dt.datetime | None = None) -> etree._Element:
        """A signed copy of `root`; the signature is the root's last child."""
        return parse_untrusted(self.sign_bytes(root, packet=packet, at=at),
                               name=packet or "<packet>")


class SignxmlSigner:
    """The same profile through signxml: the reference `PacketSigner` is proven against."""

    def __init__(self, identity: SigningIdentity, algorithm: str = "rsa-sha256") -> None:
        self.identity = identity
        self._signer = XMLSigner(method=methods.enveloped,
                                 signature_algorithm=PROFILE_SIGNATURE_METHODS[algorithm],
                                 digest_algorithm=PROFILE_DIGEST, c14n_algorithm=PROFILE_C14N)
        self._certs = [identity.cert_pem] + [
            c.public_bytes(Encoding.PEM).decode() for c in identity.chain]

    def sign(self, root: etree._Element, *, packet: str | None = None) -> etree._Element:
        if not root.get("Id"):
            raise PacketError("packet root has no Id attribute to reference", packet=packet)
        normalize_nfc(root)
        return self._signer.sign(root, key=self.identity.key, cert=self._certs)

    def sign_bytes(self, root: etree._Element, *, packet: str | None = None) -> bytes:
        return serialize(self.sign(root, packet=packet))
