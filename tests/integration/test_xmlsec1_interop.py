"""Interop with the reference C implementation, both ways, with the real xmlsec1 binary."""

import shutil
import subprocess

import pytest

from adapter.crypto import PacketSigner, PacketVerifier, load_certificates, load_identity
from adapter.errors import SignatureError
from adapter.xml.safe import serialize
from tests.helpers import NS, build_packet

XMLSEC1 = shutil.which("xmlsec1")
pytestmark = pytest.mark.xmlsec1


@pytest.fixture(autouse=True)
def _need_xmlsec1():
    assert XMLSEC1, "xmlsec1 is required (make test installs it)"


def xmlsec_verify(path, ca, root="Case"):
    return subprocess.run([XMLSEC1, "--verify", "--id-attr:Id", f"{NS}:{root}",
                           "--trusted-pem", str(ca), str(path)], capture_output=True, text=True)


TEMPLATE = """<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
<ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
<ds:Reference URI="#{id}">
<ds:Transforms>
<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
</ds:Transforms>
<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
<ds:DigestValue/>
</ds:Reference>
</ds:SignedInfo>
<ds:SignatureValue/>
<ds:KeyInfo><ds:X509Data/></ds:KeyInfo>
</ds:Signature>"""


@pytest.mark.parametrize("kind", ["case", "receipt", "judgment"])
def test_adapter_signature_passes_xmlsec1(tmp_path, pki, kind):
    signer = PacketSigner(load_identity(pki / "adapter.key", pki / "adapter.crt"))
    packet = tmp_path / "signed.xml"
    packet.write_bytes(serialize(signer.sign(build_packet(kind))))
    root = kind.capitalize()
    ok = xmlsec_verify(packet, pki / "ca.crt", root)
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout + ok.stderr
    # one character changed: xmlsec1 refuses it too
    packet.write_bytes(packet.read_bytes().replace(b"000.00.00.G22", b"000.00.00.G23", 1))
    bad = xmlsec_verify(packet, pki / "ca.crt", root)
    assert bad.returncode != 0


def test_ecdsa_signature_passes_xmlsec1(tmp_path, pki):
    signer = PacketSigner(load_identity(pki / "adapter-ec.key", pki / "adapter-ec.crt"),
                          "ecdsa-sha256")
    packet = tmp_path / "signed.xml"
    packet.write_bytes(signer.sign_bytes(build_packet("receipt")))
    ok = xmlsec_verify(packet, pki / "ca.crt", "Receipt")
    assert ok.returncode == 0, ok.stderr
    packet.write_bytes(packet.read_bytes().replace(b"000.00.00.G22", b"000.00.00.G23", 1))
    assert xmlsec_verify(packet, pki / "ca.crt", "Receipt").returncode != 0


@pytest.mark.parametrize("tail", ["", "\n"])
def test_xmlsec1_signature_passes_the_adapter_verifier(tmp_path, pki, tail):
    """Also with whitespace after the Signature: the enveloped transform keeps it."""
    root = build_packet("case")
    tmpl = serialize(root).decode().replace(
        "</Case>", TEMPLATE.format(id=root.get("Id")) + tail + "</Case>")
    (tmp_path / "tmpl.xml").write_text(tmpl, encoding="utf-8")
    out = tmp_path / "signed.xml"
    r = subprocess.run([XMLSEC1, "--sign", "--privkey-pem",
                        f"{pki / 'adapter.key'},{pki / 'adapter.crt'}", "--id-attr:Id",
                        f"{NS}:Case", "--output", str(out), str(tmp_path / "tmpl.xml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    verifier = PacketVerifier(load_certificates(pki / "ca.crt"))
    result = verifier.verify(out.read_bytes())
    assert result.root.get("Id") == root.get("Id")
    tampered = out.read_bytes().replace(b"000.00.00.G22", b"000.00.00.G23", 1)
    with pytest.raises(SignatureError):
        verifier.verify(tampered)


def test_cli_verify_accepts_xmlsec1_output_and_refuses_a_change(tmp_path, pki, config_file):
    from adapter.cli.main import main
    root = build_packet("receipt")
    tmpl = serialize(root).decode().replace(
        "</Receipt>", TEMPLATE.format(id=root.get("Id")) + "</Receipt>")
    (tmp_path / "t.xml").write_text(tmpl, encoding="utf-8")
    out = tmp_path / "s.xml"
    subprocess.run([XMLSEC1, "--sign", "--privkey-pem",
                    f"{pki / 'adapter.key'},{pki / 'adapter.crt'}", "--id-attr:Id",
                    f"{NS}:Receipt", "--output", str(out), str(tmp_path / "t.xml")], check=True)
    assert main(["--config", str(config_file), "packet", "verify", str(out)]) == 0
    out.write_bytes(out.read_bytes().replace(b"C1-10/NS", b"C1-11/NS", 1))
    assert main(["--config", str(config_file), "packet", "verify", str(out)]) == 1
