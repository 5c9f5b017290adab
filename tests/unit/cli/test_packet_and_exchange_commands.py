"""CLI contract: exit codes 0/1/2, messages naming file, line and reason, masked output."""

import json

import pytest
from lxml import etree

from adapter.cli.main import main
from adapter.dbutil import make_engine
from adapter.store.repository import ExchangeStore, NewExchange
from adapter.xml.safe import serialize
from tests.helpers import N, build_packet


@pytest.fixture
def packet_file(tmp_path):
    p = tmp_path / "case.xml"
    p.write_bytes(serialize(build_packet("case")))
    return p


def test_validate_valid_and_invalid(config_file, packet_file, capsys):
    assert main(["--config", str(config_file), "packet", "validate", str(packet_file)]) == 0
    assert "valid (Case" in capsys.readouterr().out
    root = etree.fromstring(packet_file.read_bytes())
    root.find(f"{N}OfficeCode").text = "28.22.H17"
    bad = packet_file.with_name("bad.xml")
    bad.write_bytes(etree.tostring(root, pretty_print=True))
    assert main(["--config", str(config_file), "packet", "validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "line" in out and "OfficeCode" in out and "28.22.H17" in out


def test_validate_refuses_unsafe_xml_with_exit_1(config_file, tmp_path, capsys):
    evil = tmp_path / "evil.xml"
    evil.write_bytes(b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>')
    assert main(["--config", str(config_file), "packet", "validate", str(evil)]) == 1
    assert "DOCTYPE" in capsys.readouterr().out


def test_sign_then_verify_then_tamper(config_file, packet_file, tmp_path, capsys):
    out = tmp_path / "signed.xml"
    cfg = ["--config", str(config_file)]
    assert main([*cfg, "packet", "sign", str(packet_file), "-o", str(out)]) == 0
    assert main([*cfg, "packet", "verify", str(out)]) == 0
    text = capsys.readouterr().out
    assert "signature valid" in text and "THADS exchange adapter" in text
    out.write_bytes(out.read_bytes().replace(b"<Officer>", b"<Officer>Z", 1))
    assert main([*cfg, "packet", "verify", str(out)]) == 1
    assert "INVALID" in capsys.readouterr().out


def test_sign_refuses_a_schema_invalid_packet(config_file, tmp_path, capsys):
    root = build_packet("case")
    root.remove(root.find(f"{N}Officer"))
    p = tmp_path / "p.xml"
    p.write_bytes(serialize(root))
    assert main(["--config", str(config_file), "packet", "sign", str(p)]) == 1
    assert "not signed" in capsys.readouterr().err


def test_missing_file_is_an_io_error_exit_2(config_file, capsys):
    assert main(["--config", str(config_file), "packet", "validate", "/nonexistent.xml"]) == 2


def test_usage_error_is_exit_2(capsys):
    assert main(["packet", "frobnicate"]) == 2


def test_certs_check_and_dev_pki(config_file, tmp_path, capsys):
    assert main(["--config", str(config_file), "certs", "check"]) == 0
    out = capsys.readouterr().out
    assert "signing" in out and "ok" in out
    d = tmp_path / "newpki"
    assert main(["certs", "dev-pki", "--out", str(d)]) == 0
    assert (d / "ca.crt").exists() and oct((d / "adapter.key").stat().st_mode)[-3:] == "600"
    assert main(["certs", "dev-pki", "--out", str(d)]) == 0
    assert "already present" in capsys.readouterr().out


def test_exchanges_list_and_show_mask_personal_ids(settings, config_file, capsys):
    store = ExchangeStore(make_engine(settings.url(settings.adapter.state_db)))
    store.create_schema()
    payload = serialize(build_packet("case"))
    cid = etree.fromstring(payload).findtext(f"{N}Parties/{N}Party/{N}CitizenId")
    store.add_exchanges("cases", [
        NewExchange("00000000-0000-0000-0000-000000000001", "case", "THA-1", 1, "x",
                    payload=payload),
        NewExchange("00000000-0000-0000-0000-000000000002", "case", "THA-2", 1, "x",
                    error="packet case THA-2: field parties[0].citizen_id: citizen id opens "
                          "with 099, got 099123456789")], None)
    cfg = ["--config", str(config_file)]
    assert main([*cfg, "exchanges", "list", "--state", "failed"]) == 0
    out = capsys.readouterr().out
    assert "THA-2" in out and "THA-1" not in out
    assert "099123456789" not in out
    assert all(len(line) <= 80 for line in out.splitlines())
    assert main([*cfg, "exchanges", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["source_key"] for r in rows} == {"THA-1", "THA-2"}
    assert main([*cfg, "exchanges", "show", "00000000-0000-0000-0000-000000000001",
                 "--xml"]) == 0
    out = capsys.readouterr().out
    assert cid not in out and f"{cid[:3]}*******{cid[-2:]}" in out
    assert main([*cfg, "exchanges", "show", "999"]) == 1
