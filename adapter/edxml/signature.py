"""Verify the enveloped signature of an edXML packet and say what it is worth.

edXML signatures cover the whole document (`Reference URI=""`), sit in edXMLHeader rather
than under the root, and are sometimes written without the XML-DSig namespace, so the
generic verifier (which pins the signature under the root and references it by Id) does
not fit them. This module implements exactly that one shape, nothing more: one Reference,
`URI=""`, the enveloped transform plus at most one canonicalization, RSA with SHA-256 (or
SHA-1 under the legacy profile, only for peers configured for it). The outcome is recorded
for the auditor and acted on by the peer's policy: valid, invalid, absent or untrusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from adapter.crypto.constants import C14N, C14N_INCLUSIVE, DSIG_NS, EDXML_PROFILES, ENVELOPED
from adapter.crypto.constants import DIGESTS as _DIGESTS
from adapter.crypto.constants import SIGNATURES as _SIGNATURES
from adapter.crypto.trust import Purpose, SignerPin, UntrustedCertificate, verify_signer
from adapter.edxml.model import EDXML_NS, SignatureOutcome

__all__ = ["ENVELOPED", "verify_edxml_signature"]


def _find_signature(root: etree._Element) -> tuple[etree._Element | None, bool]:
    header = root.find(f"{{{EDXML_NS}}}edXMLEnvelope/{{{EDXML_NS}}}edXMLHeader")
    if header is None:
        return None, True
    for ns in (DSIG_NS, EDXML_NS):
        sig = header.find(f"{{{ns}}}Signature")
        if sig is not None:
            return sig, ns == DSIG_NS
    return None, True


def _c14n(el: etree._Element, method: str) -> bytes:
    return etree.tostring(el, method="c14n", **C14N[method].lxml_args())


def _enveloped(root: etree._Element, sig: etree._Element, method: str) -> bytes:
    """The enveloped-signature transform, then c14n: the document without the Signature
    element and its descendants, every text node kept. lxml's remove() takes the element's
    tail (the whitespace after it) with it, so a template signer's output (xmlsec1 writes
    the Signature where the template put it, newline after) would read as a digest mismatch;
    the tail is handed to the node before it instead. The tree is restored afterwards, not
    copied: an axis document may carry megabytes of attachments."""
    parent = sig.getparent()
    index, tail, prev = parent.index(sig), sig.tail, sig.getprevious()
    before = prev.tail if prev is not None else parent.text
    if tail:
        if prev is not None:
            prev.tail = (before or "") + tail
        else:
            parent.text = (before or "") + tail
    parent.remove(sig)
    try:
        return _c14n(root, method)
    finally:
        if prev is not None:
            prev.tail = before
        else:
            parent.text = before
        parent.insert(index, sig)
        sig.tail = tail


def verify_edxml_signature(root: etree._Element, trust_anchors: list[x509.Certificate], *,
                           profile: str = "default",
                           pin: SignerPin | None = None) -> SignatureOutcome:
    """The signature's outcome; the signer is held to the edXML signer policy (trust.py)
    and, with `pin`, must be one the peer is configured to sign with."""
    sig, in_dsig = _find_signature(root)
    if sig is None:
        return SignatureOutcome("absent", "no Signature in edXMLHeader")
    ns = f"{{{DSIG_NS if in_dsig else EDXML_NS}}}"
    out = SignatureOutcome("invalid", in_dsig_namespace=in_dsig)
    allowed = EDXML_PROFILES[profile]
    others = [s for s in root.iter(f"{{{DSIG_NS}}}Signature", f"{{{EDXML_NS}}}Signature")
              if s is not sig]
    if others:
        out.detail = "more than one Signature element (refused)"
        return out
    si = sig.find(ns + "SignedInfo")
    refs = si.findall(ns + "Reference") if si is not None else []
    if si is None or len(refs) != 1 or refs[0].get("URI") != "":
        out.detail = "expected one Reference with URI=\"\" (the whole packet)"
        return out
    ref = refs[0]
    c14n_alg = (si.find(ns + "CanonicalizationMethod").get("Algorithm")
                if si.find(ns + "CanonicalizationMethod") is not None else "")
    sig_alg = (si.find(ns + "SignatureMethod").get("Algorithm")
               if si.find(ns + "SignatureMethod") is not None else "")
    out.algorithm = sig_alg
    transforms = [t.get("Algorithm") for t in ref.iterfind(f"{ns}Transforms/{ns}Transform")]
    digest_alg = ref.find(ns + "DigestMethod").get("Algorithm") \
        if ref.find(ns + "DigestMethod") is not None else ""
    if c14n_alg not in C14N:
        out.detail = f"canonicalization {c14n_alg!r} not supported"
        return out
    if sig_alg not in allowed.accepted_signatures or digest_alg not in allowed.accepted_digests:
        out.detail = (f"algorithms {sig_alg.rsplit('#', 1)[-1]}/{digest_alg.rsplit('#', 1)[-1]}"
                      f" are not allowed under the {profile!r} profile")
        return out
    if not transforms or transforms[0] != ENVELOPED or len(transforms) > 2 or \
            any(t not in C14N for t in transforms[1:]):
        out.detail = f"unexpected transforms {transforms}"
        return out
    ref_c14n = transforms[1] if len(transforms) == 2 else C14N_INCLUSIVE
    try:
        cert_b64 = sig.findtext(f"{ns}KeyInfo/{ns}X509Data/{ns}X509Certificate") or ""
        cert = x509.load_der_x509_certificate(base64.b64decode("".join(cert_b64.split())))
        value = base64.b64decode("".join((sig.findtext(ns + "SignatureValue") or "").split()))
        expected = base64.b64decode("".join((ref.findtext(ns + "DigestValue") or "").split()))
    except (ValueError, binascii.Error) as exc:
        out.detail = f"unreadable certificate or signature value: {exc}"
        return out
    out.signer = cert.subject.rfc4514_string()
    digest = hashlib.new(_DIGESTS[digest_alg], _enveloped(root, sig, ref_c14n)).digest()
    if digest != expected:
        out.detail = "digest mismatch: the packet is not what was signed (copied signature?)"
        return out
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        out.detail = "only RSA signatures are supported for edXML"
        return out
    try:
        key.verify(value, _c14n(si, c14n_alg), padding.PKCS1v15(), _SIGNATURES[sig_alg].hash())
    except InvalidSignature:
        out.detail = "signature value does not match SignedInfo"
        return out
    try:
        verify_signer(cert, [], trust_anchors, Purpose.EDXML, pin=pin)
    except UntrustedCertificate as exc:
        return SignatureOutcome("untrusted", f"signer {exc}", sig_alg, out.signer, in_dsig)
    return SignatureOutcome("valid", "", sig_alg, out.signer, in_dsig)
