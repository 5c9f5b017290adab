"""Verify an enveloped packet signature with everything pinned.

Defences (PITFALLS.md): the signature must be a direct child of the packet root (no
wrapping), carry exactly one reference and it must be `#<root Id>`, the Id must be unique in
the document, the algorithms must be in the accepted profile, and the signer must chain to
a configured trust anchor under the THADS packet signer policy and, when the peer names its
signers, be one of them (trust.py). Callers get back only `VerifiedPacket.root`, built
from signxml's `signed_xml`: the bytes the signature covers, never the tree that was handed in.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import verification
from lxml import etree
from signxml import (
    InvalidCertificate,
    InvalidInput,
    InvalidSignature,
    SignatureConfiguration,
    XMLVerifier,
)
from signxml.exceptions import InvalidDigest

from adapter.crypto.constants import ACCEPTED_DIGESTS, ACCEPTED_SIGNATURE_METHODS, DSIG_NS
from adapter.crypto.trust import (
    Purpose,
    SignerPin,
    UntrustedCertificate,
    trust_store,
    verify_signer,
)
from adapter.errors import SignatureError
from adapter.xml.safe import MAX_PACKET_BYTES, _parser, parse_untrusted

_DS = f"{{{DSIG_NS}}}"


@dataclass(frozen=True)
class VerifiedPacket:
    #: the signed packet, rebuilt from what the signature covers (Signature removed).
    root: etree._Element
    signer: x509.Certificate
    signature_method: str

    @property
    def signer_subject(self) -> str:
        return self.signer.subject.rfc4514_string()


@dataclass(frozen=True)
class _Signer:
    """The certificates one signature carries, loaded: the signer and the others."""

    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    #: SHA-256 of the signer certificate: the key of the chain check's cache
    fingerprint: bytes


#: distinct KeyInfo contents kept loaded (a peer has a handful of signers at a time)
_MAX_SIGNERS = 256
#: how many elements carry an Id equal to the root's (exactly one, or the reference is
#: ambiguous)
_COUNT_ID = etree.XPath("count(descendant-or-self::*[@Id = $id])")


class PacketVerifier:
    """One per process and trust store; caches chain checks for `chain_cache_seconds`.

    `pin` restricts the signers to those configured for the peer (trust.SignerPin); the
    chain and its purpose are checked by trust.verify_signer, as for every signature."""

    def __init__(self, trust_anchors: Iterable[x509.Certificate], *,
                 pin: SignerPin | None = None, purpose: Purpose = Purpose.THADS_PACKET,
                 chain_cache_seconds: float = 300.0,
                 signature_methods=ACCEPTED_SIGNATURE_METHODS,
                 digests=ACCEPTED_DIGESTS, integrity_only: bool = False) -> None:
        self._anchors = list(trust_anchors)
        if not self._anchors and not integrity_only:
            raise ValueError("at least one trust anchor is required")
        #: None (integrity_only, no anchors): every check but the signer's chain runs, then
        #: the packet is refused as untrusted (offline tools before any configuration).
        self._store = trust_store(self._anchors) if self._anchors else None
        self._pin, self._purpose = pin, purpose
        self._ttl = chain_cache_seconds
        self._chains: dict[bytes, float] = {}
        #: KeyInfo certificates (base64 as carried) -> loaded certificates
        self._signers: dict[tuple[str, ...], _Signer] = {}
        self._lock = threading.Lock()
        self._config = SignatureConfiguration(
            require_x509=True, location="./", expect_references=1,
            signature_methods=frozenset(signature_methods), digest_algorithms=frozenset(digests))

    def _signer(self, certs_b64: tuple[str, ...], packet: str | None) -> _Signer:
        """The certificates a signature carries, loaded once per distinct KeyInfo: a peer
        signs thousands of packets with the same certificate."""
        with self._lock:
            known = self._signers.get(certs_b64)
        if known is not None:
            return known
        try:
            chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in certs_b64]
        except ValueError as exc:
            raise SignatureError(f"unreadable X509Certificate: {exc}", packet=packet,
                                 where="Signature/KeyInfo") from None
        if not chain:  # only empty X509Certificate elements
            raise SignatureError("unreadable X509Certificate: empty", packet=packet,
                                 where="Signature/KeyInfo")
        leaf = self._find_leaf(chain)
        signer = _Signer(leaf, tuple(c for c in chain if c is not leaf),
                         leaf.fingerprint(hashes.SHA256()))
        with self._lock:
            if len(self._signers) >= _MAX_SIGNERS:
                self._signers.clear()
            self._signers[certs_b64] = signer
        return signer

    def _check_chain(self, signer: _Signer, store: verification.Store,
                     packet: str | None) -> None:
        """The signer's chain, purpose, pin and revocation (trust.verify_signer), checked
        again once `chain_cache_seconds` have passed or the certificate has expired."""
        leaf, fp = signer.leaf, signer.fingerprint
        now = time.monotonic()
        with self._lock:
            fresh = self._chains.get(fp, 0.0) > now
            if fresh and leaf.not_valid_after_utc > dt.datetime.now(dt.UTC):
                return
        try:
            verify_signer(leaf, list(signer.intermediates), store, self._purpose,
                          pin=self._pin)
        except UntrustedCertificate as exc:
            raise SignatureError(f"signer {exc}", outcome="untrusted", packet=packet,
                                 where="Signature/KeyInfo") from None
        with self._lock:
            self._chains[fp] = now + self._ttl

    def verify(self, data: bytes | etree._Element, *, packet: str | None = None,
               max_bytes: int = MAX_PACKET_BYTES) -> VerifiedPacket:
        """Bytes are parsed here (adapter.xml.safe, at most `max_bytes`) and handed to signxml
        as they are: its own parse (same safe options) is then the only other one."""
        if isinstance(data, bytes | bytearray):
            data = bytes(data)
            root = parse_untrusted(data, name=packet or "<packet>", max_bytes=max_bytes)
        else:
            root = data
        packet = packet or root.get("Id")
        sigs = list(root.iter(f"{_DS}Signature"))
        if not sigs:
            raise SignatureError("packet is not signed", outcome="absent", packet=packet)
        if len(sigs) > 1 or sigs[0].getparent() is not root:
            raise SignatureError("exactly one Signature is allowed, as a direct child of the "
                                 "packet root (signature wrapping refused)", packet=packet,
                                 where=f"line {sigs[-1].sourceline}")
        sig = sigs[0]
        root_id = root.get("Id")
        refs = sig.findall(f"{_DS}SignedInfo/{_DS}Reference")
        if not root_id or len(refs) != 1 or refs[0].get("URI") != f"#{root_id}":
            raise SignatureError("the signature must reference the packet root by its Id "
                                 f"(expected URI=\"#{root_id}\")", packet=packet,
                                 where="Signature/SignedInfo/Reference")
        same_id = int(_COUNT_ID(root, id=root_id))
        if same_id != 1:
            raise SignatureError(f"Id {root_id!r} occurs {same_id} times (ambiguous "
                                 "reference, a wrapping attack)", packet=packet)
        certs_b64 = sig.findall(f"{_DS}KeyInfo/{_DS}X509Data/{_DS}X509Certificate")
        if not certs_b64:
            raise SignatureError("signature carries no X509Certificate", outcome="untrusted",
                                 packet=packet, where="Signature/KeyInfo")
        signer = self._signer(tuple("".join(c.text.split()) for c in certs_b64 if c.text),
                              packet)
        leaf = signer.leaf
        if self._store is not None:
            self._check_chain(signer, self._store, packet)
        try:
            result = XMLVerifier().verify(data, x509_cert=leaf, parser=_parser(),
                                          expect_config=self._config, id_attribute="Id")
        except InvalidDigest:
            raise SignatureError("digest mismatch: the packet was changed after signing",
                                 packet=packet) from None
        except InvalidCertificate as exc:
            raise SignatureError(f"certificate refused: {exc}", outcome="untrusted",
                                 packet=packet) from None
        except (InvalidSignature, InvalidInput) as exc:
            raise SignatureError(f"signature invalid: {exc}", packet=packet) from None
        except etree.DocumentInvalid as exc:  # signxml's XML-DSig schema check
            raise SignatureError(f"the Signature does not follow the XML-DSig schema: {exc}",
                                 packet=packet) from None
        if isinstance(result, list):  # only with expect_references > 1, never set above
            raise SignatureError(f"{len(result)} signed references, expected one",
                                 packet=packet)
        signed = result.signed_xml
        if signed is None or signed.get("Id") != root_id:
            raise SignatureError("signed data is not the packet root", packet=packet)
        if self._store is None:
            raise SignatureError(f"the signature matches the packet, but there is no trust "
                                 f"anchor to check its signer {leaf.subject.rfc4514_string()!r}"
                                 " against", outcome="untrusted", packet=packet,
                                 where="Signature/KeyInfo")
        method = sig.find(f"{_DS}SignedInfo/{_DS}SignatureMethod").get("Algorithm", "")
        return VerifiedPacket(signed, leaf, method)

    @staticmethod
    def _find_leaf(chain: list[x509.Certificate]) -> x509.Certificate:
        """The certificate that issued no other one in the list is the signer."""
        issuers = {c.issuer for c in chain}
        for c in chain:
            if c.subject not in issuers or len(chain) == 1:
                return c
        return chain[0]
