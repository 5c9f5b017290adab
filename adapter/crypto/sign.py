"""Enveloped XML-DSig over the packet root, referenced by its Id.

Signing the element that carries `Id` makes signxml write `URI="#Id"`, so the signature
still verifies once the packet sits inside a SOAP envelope (`URI=""` would then mean the
whole envelope). Text is normalised to NFC first: the same Vietnamese name in NFD has other
bytes, hence another digest, and a receiver that normalises would see a broken signature.
"""

from __future__ import annotations

import unicodedata

from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from signxml import XMLSigner, methods

from adapter.crypto.constants import PROFILE_C14N, PROFILE_DIGEST, PROFILE_SIGNATURE_METHODS
from adapter.crypto.keys import SigningIdentity
from adapter.errors import PacketError


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


class PacketSigner:
    """One per process; holds the loaded key (see keys.py) and the profile."""

    def __init__(self, identity: SigningIdentity, algorithm: str = "rsa-sha256") -> None:
        self.identity = identity
        self._signer = XMLSigner(method=methods.enveloped,
                                 signature_algorithm=PROFILE_SIGNATURE_METHODS[algorithm],
                                 digest_algorithm=PROFILE_DIGEST, c14n_algorithm=PROFILE_C14N)
        self._certs = [identity.cert_pem] + [
            c.public_bytes(Encoding.PEM).decode() for c in identity.chain]

    def sign(self, root: etree._Element, *, packet: str | None = None) -> etree._Element:
        """Return a signed copy of `root`; the signature is the root's last child."""
        if not root.get("Id"):
            raise PacketError("packet root has no Id attribute to reference", packet=packet)
        normalize_nfc(root)
        return self._signer.sign(root, key=self.identity.key, cert=self._certs)
