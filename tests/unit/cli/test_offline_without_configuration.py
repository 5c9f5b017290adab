"""Offline tools work in a fresh checkout before `init`: no certs/dev, no var/, maybe no
configuration file at all. Without trust anchors a signature is untrusted (exit 1, one clear
line), never a configuration error."""

import shutil
from pathlib import Path

import pytest

from adapter.cli.main import main
from adapter.crypto.keys import load_identity
from adapter.edxml import build_document, sign_edxml
from adapter.xml.safe import serialize
from tests.unit.edxml.test_build_and_sign import document

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "schemas" / "thads" / "examples"
STATUS = ROOT / "tests" / "fixtures" / "edxml" / "vpcp-samples" / "status_finish_06.edxml"


@pytest.fixture(params=["fresh clone", "no configuration"])
def fresh(request, tmp_path, monkeypatch) -> Path:
    """A working directory as a fresh clone has it (the shipped config/adapter.toml, whose
    dev PKI does not exist yet), or one with no configuration file at all."""
    if request.param == "fresh clone":
        (tmp_path / "config").mkdir()
        shutil.copy(ROOT / "config" / "adapter.toml", tmp_path / "config" / "adapter.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("THADS_ADAPTER_CONFIG", raising=False)
    return tmp_path


@pytest.fixture
def signed_edxml(pki, tmp_path_factory) -> Path:
    ident = load_identity(pki / "adapter.key", pki / "adapter.crt")
    f = tmp_path_factory.mktemp("edxml") / "signed.edxml"
    f.write_bytes(serialize(sign_edxml(build_document(document()), ident)))
    return f


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    assert "configuration error" not in out.err and "Traceback" not in out.err
    return code, out.out


def test_packet_validate(fresh, capsys):
    code, out = _run(capsys, "packet", "validate", str(EXAMPLES / "case.xml"))
    assert code == 0 and "valid (Case" in out


def test_packet_verify_without_anchors_says_untrusted(fresh, capsys):
    code, out = _run(capsys, "packet", "verify", str(EXAMPLES / "case.signed.xml"))
    assert code == 1
    (line,) = out.splitlines()
    assert "UNTRUSTED" in line and "the signature matches the packet" in line
    assert "no trust anchor" in line and "--ca CA.pem" in line


def test_packet_verify_without_anchors_still_finds_tampering(fresh, tmp_path, capsys):
    bad = tmp_path / "tampered.xml"
    bad.write_bytes((EXAMPLES / "case.signed.xml").read_bytes().replace(
        b"<Officer>", b"<Officer>Z", 1))
    code, out = _run(capsys, "packet", "verify", str(bad))
    assert code == 1 and "INVALID" in out and "UNTRUSTED" not in out


@pytest.mark.parametrize("option", ["--ca", "--trust"])
def test_packet_verify_with_a_given_anchor(fresh, option, capsys):
    code, out = _run(capsys, "packet", "verify", option, str(EXAMPLES / "dev-ca.pem"),
                     str(EXAMPLES / "case.signed.xml"))
    assert code == 0 and "signature valid" in out


def test_edxml_inspect_without_anchors_says_untrusted(fresh, signed_edxml, capsys):
    code, out = _run(capsys, "edxml", "inspect", str(signed_edxml))
    assert code == 1
    assert "structure:       valid edoc" in out
    sig = " ".join(out.split("signature:", 1)[1].split("signer:", 1)[0].split())
    assert sig.startswith("untrusted: ") and "--ca CA.pem" in sig


def test_edxml_inspect_with_a_given_anchor(fresh, signed_edxml, pki, capsys):
    code, out = _run(capsys, "edxml", "inspect", "--trust", str(pki / "ca.crt"),
                     str(signed_edxml))
    assert code == 0 and "signature:       valid" in out


def test_edxml_inspect_an_unsigned_status(fresh, capsys):
    code, out = _run(capsys, "edxml", "inspect", str(STATUS))
    assert code == 0 and "status:          06" in out


def test_nothing_is_created_in_the_checkout(fresh, signed_edxml, capsys):
    before = sorted(p.relative_to(fresh) for p in fresh.rglob("*"))
    main(["packet", "verify", str(EXAMPLES / "case.signed.xml")])
    main(["edxml", "inspect", str(signed_edxml)])
    main(["packet", "validate", str(EXAMPLES / "case.xml")])
    assert sorted(p.relative_to(fresh) for p in fresh.rglob("*")) == before


def test_the_service_verifier_still_requires_an_anchor():
    from adapter.crypto.verify import PacketVerifier

    with pytest.raises(ValueError, match="at least one trust anchor"):
        PacketVerifier([])
