"""Keys, certificates, XML-DSig signing and verification with pinned trust."""

from adapter.crypto.keys import SigningIdentity, load_certificates, load_identity
from adapter.crypto.sign import PacketSigner
from adapter.crypto.trust import Purpose, SignerPin, UntrustedCertificate, verify_signer
from adapter.crypto.verify import PacketVerifier, VerifiedPacket

__all__ = ["PacketSigner", "PacketVerifier", "Purpose", "SignerPin", "SigningIdentity",
           "UntrustedCertificate", "VerifiedPacket", "load_certificates", "load_identity",
           "verify_signer"]
