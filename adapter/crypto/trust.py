"""Who may sign what: one chain validation, one explicit policy per certificate purpose.

Every certificate check of the adapter goes through `verify_signer`: THADS packet signers,
edXML signers, evidence checkpoint signers, the timestamp authority and the TLS
certificates. The chain itself (path, signatures, validity, CA constraints) is checked by
cryptography's strict verifier under the web PKI's CA rules; the end-entity rules are ours,
written out per purpose below, so no caller can hold a signer to a weaker rule by accident.

Signing purposes (THADS packet, edXML, checkpoint) share one rule:
- KeyUsage present, with digitalSignature or nonRepudiation;
- not a CA certificate;
- if ExtendedKeyUsage is present, it names a signing purpose (documentSigning,
  emailProtection, clientAuth, Microsoft or Adobe document signing, or any): a certificate
  issued only for timeStamping, serverAuth, OCSPSigning or codeSigning never signs a packet,
  even under the same CA (a TSA's or web server's key cannot pass for a court's).

A signer may further be pinned to its peer (`SignerPin`): its subject or the certificate
itself must be among those configured for that peer, not only chain to the peer's CA.

Revocation (CRL, OCSP) is checked here too, for the purposes that accept someone's
signature, by the process's checker (revocation.configure) or one passed in: a revoked
signer fails every caller the same way, whatever verifier it goes through.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, TypeGuard, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier


class Purpose(StrEnum):
    THADS_PACKET = "THADS packet signer"
    EDXML = "edXML signer"
    CHECKPOINT = "evidence checkpoint signer"
    TSA = "timestamp authority"
    TLS_SERVER = "TLS server"
    TLS_CLIENT = "TLS client"


#: RFC 9336 id-kp-documentSigning, Microsoft and Adobe document signing.
DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
MS_DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.4.1.311.10.3.12")
ADOBE_PDF_SIGNING = ObjectIdentifier("1.2.840.113583.1.1.5")
SIGNING_EKUS = frozenset({DOCUMENT_SIGNING, MS_DOCUMENT_SIGNING, ADOBE_PDF_SIGNING,
                          ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CLIENT_AUTH,
                          ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE})


#: the key classes that can sign certificates and CRLs, as the installed cryptography lists
#: them (a certificate may also hold an X25519, X448 or ML-KEM key, which cannot sign).
_ISSUER_KEY_TYPES: tuple[type, ...] = get_args(CertificateIssuerPublicKeyTypes)


def signs_certificates(key: object) -> TypeGuard[CertificateIssuerPublicKeyTypes]:
    """Whether `key` (a certificate's public key) can have signed a certificate or a CRL."""
    return isinstance(key, _ISSUER_KEY_TYPES)


#: the purposes of a key that signs what the adapter sends (one key does all three).
SIGNING_PURPOSES = (Purpose.THADS_PACKET, Purpose.EDXML, Purpose.CHECKPOINT)

#: purposes whose certificate's revocation status is checked: each accepts a signature.
REVOCATION_PURPOSES = frozenset({*SIGNING_PURPOSES, Purpose.TSA})


@dataclass(frozen=True)
class CertificatePolicy:
    """The end-entity rule of one purpose."""

    purpose: Purpose
    #: KeyUsage must be present with at least one of these flags (cryptography's names).
    key_usage: tuple[str, ...]
    #: ExtendedKeyUsage, when present, must name at least one of these.
    eku_any_of: frozenset[ObjectIdentifier]
    #: ExtendedKeyUsage must be present (and, for a TSA, critical: RFC 3161 2.3).
    eku_required: bool = False
    eku_critical: bool = False
    #: the EKU may name nothing else (RFC 3161: a TSA certificate is for timestamps only).
    eku_exclusive: bool = False


_SIGNING_KU = ("digital_signature", "content_commitment")

POLICIES: dict[Purpose, CertificatePolicy] = {
    Purpose.THADS_PACKET: CertificatePolicy(Purpose.THADS_PACKET, _SIGNING_KU, SIGNING_EKUS),
    Purpose.EDXML: CertificatePolicy(Purpose.EDXML, _SIGNING_KU, SIGNING_EKUS),
    Purpose.CHECKPOINT: CertificatePolicy(Purpose.CHECKPOINT, _SIGNING_KU, SIGNING_EKUS),
    Purpose.TSA: CertificatePolicy(Purpose.TSA, _SIGNING_KU,
                                   frozenset({ExtendedKeyUsageOID.TIME_STAMPING}),
                                   eku_required=True, eku_critical=True, eku_exclusive=True),
    Purpose.TLS_SERVER: CertificatePolicy(Purpose.TLS_SERVER,
                                          ("digital_signature", "key_encipherment"),
                                          frozenset({ExtendedKeyUsageOID.SERVER_AUTH}),
                                          eku_required=True),
    Purpose.TLS_CLIENT: CertificatePolicy(Purpose.TLS_CLIENT, ("digital_signature",),
                                          frozenset({ExtendedKeyUsageOID.CLIENT_AUTH}),
                                          eku_required=True),
}


class UntrustedCertificate(Exception):
    """The certificate may not act for the purpose; the message says why."""


class RevocationCheck(Protocol):
    """Raises UntrustedCertificate when a certificate of the validated chain (leaf first,
    anchor last) is revoked, or its status is unknown and the anchor's policy rejects."""

    def check(self, chain: Sequence[x509.Certificate], *,
              at: dt.datetime | None = None) -> None: ...


_revocation: RevocationCheck | None = None


def set_revocation_check(check: RevocationCheck | None) -> RevocationCheck | None:
    """Install the process's revocation checker (None: none); returns the previous one."""
    global _revocation
    previous, _revocation = _revocation, check
    return previous


def revocation_check() -> RevocationCheck | None:
    return _revocation


def _ee_policy(rule: CertificatePolicy) -> verification.ExtensionPolicy:
    def key_usage(_policy, _cert, ku: x509.KeyUsage) -> None:
        if not any(getattr(ku, flag) for flag in rule.key_usage):
            raise ValueError(f"KeyUsage allows none of {', '.join(rule.key_usage)}")

    def not_a_ca(_policy, _cert, bc: x509.BasicConstraints | None) -> None:
        if bc is not None and bc.ca:
            raise ValueError("a CA certificate cannot act as an end entity")

    def eku(_policy, _cert, ext: x509.ExtendedKeyUsage | None) -> None:
        if ext is None:
            return
        named = set(ext)
        if not named & rule.eku_any_of:
            raise ValueError("ExtendedKeyUsage (" + ", ".join(sorted(
                getattr(o, "_name", o.dotted_string) for o in named)) + f") does not "
                f"cover the purpose {rule.purpose}")
        if rule.eku_exclusive and named - rule.eku_any_of:
            raise ValueError(f"ExtendedKeyUsage names more than the purpose {rule.purpose}")

    policy = (verification.ExtensionPolicy.permit_all()
              .require_present(x509.KeyUsage, verification.Criticality.AGNOSTIC, key_usage)
              .may_be_present(x509.BasicConstraints, verification.Criticality.AGNOSTIC,
                              not_a_ca))
    crit = verification.Criticality.CRITICAL if rule.eku_critical else \
        verification.Criticality.AGNOSTIC
    if rule.eku_required:
        return policy.require_present(x509.ExtendedKeyUsage, crit, eku)
    return policy.may_be_present(x509.ExtendedKeyUsage, crit, eku)


_EE = {p: _ee_policy(r) for p, r in POLICIES.items()}
_CA = verification.ExtensionPolicy.webpki_defaults_ca()


def trust_store(anchors: Iterable[x509.Certificate]) -> verification.Store:
    anchors = list(anchors)
    if not anchors:
        raise UntrustedCertificate("no trust anchor is configured")
    return verification.Store(anchors)


def validate_chain(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                   anchors: verification.Store | Iterable[x509.Certificate],
                   purpose: Purpose, *, at: dt.datetime | None = None
                   ) -> list[x509.Certificate]:
    """The chain from `leaf` to an anchor, checked against the purpose's policy (at `at`,
    default now); raises UntrustedCertificate naming the subject and the reason."""
    store = anchors if isinstance(anchors, verification.Store) else trust_store(anchors)
    builder = verification.PolicyBuilder().store(store).extension_policies(
        ca_policy=_CA, ee_policy=_EE[purpose])
    if at is not None:
        builder = builder.time(at)
    try:
        verified = builder.build_client_verifier().verify(leaf, list(intermediates))
    except verification.VerificationError as exc:
        raise UntrustedCertificate(f"{leaf.subject.rfc4514_string()!r} is not trusted "
                                   f"(purpose: {purpose}): {_reason(exc)}") from None
    return verified.chain


_NOISE = re.compile(r"^validation failed: |Python extension validator failed: \w+: |"
                    r" \(encountered processing <Certificate\(.*$")
_OIDS = {"2.5.29.37": "ExtendedKeyUsage", "2.5.29.15": "KeyUsage",
         "2.5.29.19": "BasicConstraints"}


def _reason(exc: Exception) -> str:
    """cryptography's message without its wrapping, extensions named."""
    text = _NOISE.sub("", _NOISE.sub("", str(exc)))
    for oid, name in _OIDS.items():
        text = text.replace(f"extension: {oid}:", f"extension {name}:")
    return text


@dataclass(frozen=True)
class SignerPin:
    """The signers a peer may use: by subject, or by the certificate itself. Empty pins
    nothing (any signer under the peer's anchors)."""

    subjects: frozenset[x509.Name] = frozenset()
    #: SHA-256 fingerprints of the configured signer certificates.
    certificates: frozenset[bytes] = field(default=frozenset())
    owner: str = "the peer"

    @classmethod
    def of(cls, subjects: Iterable[str | x509.Name] = (),
           certificates: Iterable[x509.Certificate] = (), *, owner: str = "the peer"
           ) -> SignerPin:
        names = frozenset(s if isinstance(s, x509.Name) else parse_subject(s) for s in subjects)
        return cls(names, frozenset(c.fingerprint(hashes.SHA256()) for c in certificates),
                   owner)

    def __bool__(self) -> bool:
        return bool(self.subjects or self.certificates)

    def check(self, cert: x509.Certificate) -> None:
        if not self or cert.subject in self.subjects or \
                cert.fingerprint(hashes.SHA256()) in self.certificates:
            return
        raise UntrustedCertificate(f"{cert.subject.rfc4514_string()!r} is not a signer "
                                   f"configured for {self.owner}")


def peer_pin(peer, resolve: Callable[[str], Path]) -> SignerPin | None:
    """The pin configured for a peer (`[[peers]] signer_subjects / signer_certificates`),
    certificate paths resolved with `resolve` (Settings.path); None when nothing is pinned."""
    from adapter.crypto.keys import load_certificates

    certs = [c for p in peer.signer_certificates for c in load_certificates(resolve(p))]
    pin = SignerPin.of(peer.signer_subjects, certs, owner=f"peer {peer.name}")
    return pin or None


def parse_subject(text: str) -> x509.Name:
    """An RFC 4514 distinguished name ("CN=...,O=...,C=VN"); ValueError if malformed."""
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise ValueError(f"not an RFC 4514 name: {text!r} ({exc})") from None
    if not len(name):
        raise ValueError(f"empty distinguished name: {text!r}")
    return name


def verify_signer(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                  anchors: verification.Store | Iterable[x509.Certificate], purpose: Purpose,
                  *, pin: SignerPin | None = None, at: dt.datetime | None = None,
                  revocation: RevocationCheck | None = None) -> list[x509.Certificate]:
    """The one check for every certificate that signs or serves: chain and purpose, the
    pin, if any, then revocation (for REVOCATION_PURPOSES; `revocation`, default the
    process's checker). Returns the validated chain; raises UntrustedCertificate
    (revocation.CertificateRevoked for a revoked certificate)."""
    chain = validate_chain(leaf, intermediates, anchors, purpose, at=at)
    if pin is not None:
        pin.check(leaf)
    check = revocation if revocation is not None else _revocation
    if check is not None and purpose in REVOCATION_PURPOSES:
        check.check(chain, at=at)
    return chain
