"""The one algorithm table: every XML-DSig URI the adapter writes or accepts, named once.

Signers, verifiers (THADS packets through signxml, edXML by hand) and the tests take names,
URIs and hash functions from here, so a profile is changed in one place and an algorithm
cannot be accepted by one path and refused by another by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives import hashes
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"

# ---- canonicalization and transforms -------------------------------------------------------
C14N_EXCLUSIVE = "http://www.w3.org/2001/10/xml-exc-c14n#"
C14N_INCLUSIVE = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
#: seen in real edXML packets: a misspelt exclusive c14n URI, read as exclusive c14n.
C14N_EXCLUSIVE_MISSPELT = "http://www.w3.org/TR/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"


@dataclass(frozen=True)
class C14n:
    uri: str
    exclusive: bool
    with_comments: bool = False

    def lxml_args(self) -> dict[str, bool]:
        """Keyword arguments of `etree.tostring(..., method="c14n")`."""
        return dict(exclusive=self.exclusive, with_comments=self.with_comments)


#: canonicalizations understood (comments are never signed: no #WithComments variant).
C14N = {c.uri: c for c in (C14n(C14N_INCLUSIVE, False), C14n(C14N_EXCLUSIVE, True),
                           C14n(C14N_EXCLUSIVE_MISSPELT, True))}

# ---- digests ---------------------------------------------------------------------------------
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
#: digest URI -> hashlib name
DIGESTS = {SHA256: "sha256", SHA1: "sha1"}

# ---- signatures ------------------------------------------------------------------------------
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"


@dataclass(frozen=True)
class SignatureAlgorithm:
    name: str
    uri: str
    key: Literal["rsa", "ec"]
    hash_name: str  # hashlib / cryptography name

    def hash(self) -> hashes.HashAlgorithm:
        return {"sha256": hashes.SHA256, "sha1": hashes.SHA1}[self.hash_name]()


SIGNATURES = {a.uri: a for a in (SignatureAlgorithm("rsa-sha256", RSA_SHA256, "rsa", "sha256"),
                                 SignatureAlgorithm("ecdsa-sha256", ECDSA_SHA256, "ec", "sha256"),
                                 SignatureAlgorithm("rsa-sha1", RSA_SHA1, "rsa", "sha1"))}
#: configuration name (`[signing] algorithm`) -> algorithm
BY_NAME = {a.name: a for a in SIGNATURES.values()}

# ---- profiles --------------------------------------------------------------------------------
#: THADS packets: RSA-SHA256 (or ECDSA P-256), SHA-256, exclusive c14n, nothing else.
THADS_SIGNATURES = (RSA_SHA256, ECDSA_SHA256)
THADS_DIGEST = SHA256
THADS_C14N = C14N_EXCLUSIVE


@dataclass(frozen=True)
class EdxmlProfile:
    """What an edXML signature under this profile is written with and may be read with."""

    c14n: str
    signature: str
    digest: str
    accepted_signatures: frozenset[str]
    accepted_digests: frozenset[str]


#: edXML: the default writes and accepts RSA-SHA256 with exclusive c14n; legacy (only for
#: peers configured for it) writes RSA-SHA1 with inclusive c14n and accepts both.
EDXML_PROFILES = {
    "default": EdxmlProfile(C14N_EXCLUSIVE, RSA_SHA256, SHA256,
                            frozenset({RSA_SHA256}), frozenset({SHA256})),
    "legacy": EdxmlProfile(C14N_INCLUSIVE, RSA_SHA1, SHA1,
                           frozenset({RSA_SHA256, RSA_SHA1}), frozenset({SHA256, SHA1})),
}

# ---- the same, as signxml's enums (signxml takes its own types) -------------------------------
PROFILE_SIGNATURE_METHODS = {SIGNATURES[u].name: SignatureMethod(u) for u in THADS_SIGNATURES}
PROFILE_DIGEST = DigestAlgorithm(THADS_DIGEST)
PROFILE_C14N = CanonicalizationMethod(THADS_C14N)
#: what inbound THADS verification accepts; SHA-1 is never here.
ACCEPTED_SIGNATURE_METHODS = frozenset(PROFILE_SIGNATURE_METHODS.values())
ACCEPTED_DIGESTS = frozenset({PROFILE_DIGEST})
