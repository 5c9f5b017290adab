"""Algorithms and namespaces, named once (the signxml habit)."""

from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"

#: the outbound profile: RSA-SHA256 (or ECDSA P-256), SHA-256 digests, exclusive c14n.
PROFILE_SIGNATURE_METHODS = {
    "rsa-sha256": SignatureMethod.RSA_SHA256,
    "ecdsa-sha256": SignatureMethod.ECDSA_SHA256,
}
PROFILE_DIGEST = DigestAlgorithm.SHA256
PROFILE_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0

#: what inbound verification accepts under the default policy; SHA-1 is never here.
ACCEPTED_SIGNATURE_METHODS = frozenset(PROFILE_SIGNATURE_METHODS.values())
ACCEPTED_DIGESTS = frozenset({DigestAlgorithm.SHA256})
