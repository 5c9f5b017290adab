"""Verify the enveloped signature of an edXML packet and say what it is worth.

edXML signatures cover the whole document (`Reference URI=""`), sit in edXMLHeader rather
than under the root, and are sometimes written without the XML-DSig namespace, so the
generic verifier (which pins the signature under the root and references it by Id) does
not fit them. This module implements exactly that one shape, nothing more: one Reference,
`URI=""`, the enveloped transform plus at most one canonicalization, RSA with SHA-256 (or
SHA-1 under the legacy profile, only for peers configured for it). The outcome is recorded
for the auditor and acted on by the peer's policy: valid, invalid, absent or untrusted.

Fields are read from what was signed, never from the tree that was handed in: comments lie
outside the digest (c14n without comments), so `<Subject>… hủy<!----> bỏ</Subject>` keeps
a valid signature while the parse tree's `.text` reads "… hủy". `verify_edxml` therefore
returns, with the outcome, the tree rebuilt from the very octets whose digest matched
(as signxml's VerifyResult.signed_xml does for THADS packets).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from adapter.crypto.constants import C14N, C14N_INCLUSIVE, DSIG_NS, EDXML_PROFILES, ENVELOPED
from adapter.crypto.constants import DIGESTS as _DIGESTS
from adapter.crypto.constants import SIGNATURES as _SIGNATURES
from adapter.crypto.trust import Purpose, SignerPin, UntrustedCertificate, verify_signer
from adapter.edxml.model import EDXML_NS, SignatureOutcome
from adapter.errors import PacketError
from adapter.xml.safe import parse_untrusted

__all__ = ["ENVELOPED", "EdxmlVerification", "unverified_edxml", "verify_edxml",
           "verify_edxml_signature"]


@dataclass(frozen=True)
class EdxmlVerification:
    """The signature's outcome and the one tree a reader may take fields from."""

    outcome: SignatureOutcome
    #: with `signed`: rebuilt from the canonical octets the digest covers (Signature and
    #: comments gone, line numbers of the packet as received); otherwise the received tree
    #: without comments, for packets whose signature is absent, invalid or not checked.
    tree: etree._Element
    #: True when `tree` is the signed content (outcome valid or untrusted).
    signed: bool = False


def without_comments(root: etree._Element) -> etree._Element:
    """A copy of `root` with every comment removed and the text around it joined."""
    tree = copy.deepcopy(root)
    etree.strip_tags(tree, etree.Comment)
    return tree


def unverified_edxml(root: etree._Element, outcome: SignatureOutcome) -> EdxmlVerification:
    """For a packet whose signature was not (or could not be) checked."""
    return EdxmlVerification(outcome, without_comments(root))


#: lxml stores a line number it is given in 16 bits; beyond, the signed tree keeps its own
#: (c14n keeps every newline of the text, so it is off only by the lines it removed).
_MAX_SETTABLE_LINE = 65535


def _elements_outside(root: etree._Element, sig: etree._Element):
    """The elements of `root` in document order, the Signature subtree left out."""
    it = root.iter(etree.Element)
    for el in it:
        if el is sig:
            for _ in range(sum(1 for _ in sig.iter(etree.Element)) - 1):
                next(it)
            continue
        yield el


def _signed_tree(canonical: bytes, root: etree._Element,
                 sig: etree._Element) -> etree._Element | None:
    """Parse the signed octets back into a tree; give its elements the line numbers of the
    packet as received (operators read errors against the file they have). None when the
    two trees do not have the same elements, which c14n cannot produce."""
    try:
        signed = parse_untrusted(canonical, name="<signed edXML>",
                                 max_bytes=max(len(canonical), 1))
    except PacketError:
        return None
    received = _elements_outside(root, sig)
    for mine in signed.iter(etree.Element):
        theirs = next(received, None)
        if theirs is None or theirs.tag != mine.tag:
            return None
        if theirs.sourceline is not None and theirs.sourceline <= _MAX_SETTABLE_LINE:
            mine.sourceline = theirs.sourceline
    return signed if next(received, None) is None else None


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
    """The outcome alone (kept for callers that only record it); read fields through
    `verify_edxml(...).tree`."""
    return verify_edxml(root, trust_anchors, profile=profile, pin=pin).outcome


def verify_edxml(root: etree._Element, trust_anchors: list[x509.Certificate], *,
                 profile: str = "default", pin: SignerPin | None = None) -> EdxmlVerification:
    """The signature's outcome and the tree to read from; the signer is held to the edXML
    signer policy (trust.py) and, with `pin`, must be one the peer is configured to sign
    with."""
    outcome, signed = _verify(root, trust_anchors, profile, pin)
    if signed is None:
        return unverified_edxml(root, outcome)
    return EdxmlVerification(outcome, signed, signed=True)


def _verify(root: etree._Element, trust_anchors: list[x509.Certificate], profile: str,
            pin: SignerPin | None) -> tuple[SignatureOutcome, etree._Element | None]:
    sig, in_dsig = _find_signature(root)
    if sig is None:
        return SignatureOutcome("absent", "no Signature in edXMLHeader"), None
    ns = f"{{{DSIG_NS if in_dsig else EDXML_NS}}}"
    out = SignatureOutcome("invalid", in_dsig_namespace=in_dsig)
    allowed = EDXML_PROFILES[profile]
    others = [s for s in root.iter(f"{{{DSIG_NS}}}Signature", f"{{{EDXML_NS}}}Signature")
              if s is not sig]
    if others:
        out.detail = "more than one Signature element (refused)"
        return out, None
    si = sig.find(ns + "SignedInfo")
    refs = si.findall(ns + "Reference") if si is not None else []
    if si is None or len(refs) != 1 or refs[0].get("URI") != "":
        out.detail = "expected one Reference with URI=\"\" (the whole packet)"
        return out, None
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
        return out, None
    if sig_alg not in allowed.accepted_signatures or digest_alg not in allowed.accepted_digests:
        out.detail = (f"algorithms {sig_alg.rsplit('#', 1)[-1]}/{digest_alg.rsplit('#', 1)[-1]}"
                      f" are not allowed under the {profile!r} profile")
        return out, None
    if not transforms or transforms[0] != ENVELOPED or len(transforms) > 2 or \
            any(t not in C14N for t in transforms[1:]):
        out.detail = f"unexpected transforms {transforms}"
        return out, None
    ref_c14n = transforms[1] if len(transforms) == 2 else C14N_INCLUSIVE
    try:
        cert_b64 = sig.findtext(f"{ns}KeyInfo/{ns}X509Data/{ns}X509Certificate") or ""
        cert = x509.load_der_x509_certificate(base64.b64decode("".join(cert_b64.split())))
        value = base64.b64decode("".join((sig.findtext(ns + "SignatureValue") or "").split()))
        expected = base64.b64decode("".join((ref.findtext(ns + "DigestValue") or "").split()))
    except (ValueError, binascii.Error) as exc:
        out.detail = f"unreadable certificate or signature value: {exc}"
        return out, None
    out.signer = cert.subject.rfc4514_string()
    canonical = _enveloped(root, sig, ref_c14n)
    digest = hashlib.new(_DIGESTS[digest_alg], canonical).digest()
    if digest != expected:
        out.detail = "digest mismatch: the packet is not what was signed (copied signature?)"
        return out, None
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        out.detail = "only RSA signatures are supported for edXML"
        return out, None
    try:
        key.verify(value, _c14n(si, c14n_alg), padding.PKCS1v15(), _SIGNATURES[sig_alg].hash())
    except InvalidSignature:
        out.detail = "signature value does not match SignedInfo"
        return out, None
    signed = _signed_tree(canonical, root, sig)
    if signed is None:
        out.detail = "the signed content does not rebuild into the packet's elements"
        return out, None
    try:
        verify_signer(cert, [], trust_anchors, Purpose.EDXML, pin=pin)
    except UntrustedCertificate as exc:
        return (SignatureOutcome("untrusted", f"signer {exc}", sig_alg, out.signer, in_dsig),
                signed)
    return SignatureOutcome("valid", "", sig_alg, out.signer, in_dsig), signed
