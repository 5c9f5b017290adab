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
from adapter.xml.safe import _parser, parse_untrusted

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
        self._lock = threading.Lock()
        self._config = SignatureConfiguration(
            require_x509=True, location="./", expect_references=1,
            signature_methods=frozenset(signature_methods), digest_algorithms=frozenset(digests))

    def _check_chain(self, leaf: x509.Certificate, intermediates: list[x509.Certificate],
                     store: verification.Store, packet: str | None) -> None:
        fp = leaf.fingerprint(hashes.SHA256())
        now = time.monotonic()
        with self._lock:
            fresh = self._chains.get(fp, 0.0) > now
            if fresh and leaf.not_valid_after_utc > dt.datetime.now(dt.UTC):
                return
        try:
            verify_signer(leaf, intermediates, store, self._purpose, pin=self._pin)
        except UntrustedCertificate as exc:
            raise SignatureError(f"signer {exc}", outcome="untrusted", packet=packet,
                                 where="Signature/KeyInfo") from None
        with self._lock:
            self._chains[fp] = now + self._ttl

    def verify(self, data: bytes | etree._Element, *, packet: str | None = None) -> VerifiedPacket:
        root = parse_untrusted(data, name=packet or "<packet>") if isinstance(data, bytes) else data
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
        same_id = [e for e in root.iter() if isinstance(e.tag, str) and e.get("Id") == root_id]
        if len(same_id) != 1:
            raise SignatureError(f"Id {root_id!r} occurs {len(same_id)} times (ambiguous "
                                 "reference, a wrapping attack)", packet=packet)
        certs_b64 = sig.findall(f"{_DS}KeyInfo/{_DS}X509Data/{_DS}X509Certificate")
        if not certs_b64:
            raise SignatureError("signature carries no X509Certificate", outcome="untrusted",
                                 packet=packet, where="Signature/KeyInfo")
        try:
            chain = [x509.load_der_x509_certificate(base64.b64decode("".join(c.text.split())))
                     for c in certs_b64 if c.text]
        except ValueError as exc:
            raise SignatureError(f"unreadable X509Certificate: {exc}", packet=packet,
                                 where="Signature/KeyInfo") from None
        leaf = self._find_leaf(chain)
        if self._store is not None:
            self._check_chain(leaf, [c for c in chain if c is not leaf], self._store, packet)
        try:
            result = XMLVerifier().verify(root, x509_cert=leaf, parser=_parser(),
                                          expect_config=self._config, id_attribute="Id")
        except InvalidDigest:
            raise SignatureError("digest mismatch: the packet was changed after signing",
                                 packet=packet) from None
        except InvalidCertificate as exc:
            raise SignatureError(f"certificate refused: {exc}", outcome="untrusted",
                                 packet=packet) from None
        except (InvalidSignature, InvalidInput) as exc:
            raise SignatureError(f"signature invalid: {exc}", packet=packet) from None
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
