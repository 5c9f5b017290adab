"""The CLI speaks the operator's language: Vietnamese with LANG=vi_VN.UTF-8 (or LC_ALL,
LC_MESSAGES, LANGUAGE, as gettext decides), English otherwise. Names that users type and
scripts parse (commands, options, JSON, exit codes, INTACT/INVALID) are the same in both."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

from adapter.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "schemas" / "thads" / "examples"
LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def speak(monkeypatch, **env: str) -> None:
    """Exactly these locale variables, as a shell would have them."""
    for var in LOCALE_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)


VI = {"LANG": "vi_VN.UTF-8"}
EN = {"LANG": "C"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    for text in (out.out, out.err):
        assert unicodedata.is_normalized("NFC", text)
        assert "Traceback" not in text
    return code, out.out, out.err


@pytest.fixture
def invalid_packet(tmp_path) -> Path:
    """The partner kit's case packet with an element the schema does not allow."""
    text = (EXAMPLES / "case.xml").read_text(encoding="utf-8")
    head, sep, tail = text.rpartition("</")
    f = tmp_path / "bad-case.xml"
    f.write_text(head + "<Unexpected>x</Unexpected>" + sep + tail, encoding="utf-8")
    return f


@pytest.fixture
def state_with_evidence(config_file) -> list[str]:
    """An initialised state database whose evidence log holds a few entries and a signed
    checkpoint: `audit verify` finds it intact."""
    from adapter.audit.checkpoint import make_checkpoint
    from adapter.config import load_settings
    from adapter.crypto.keys import load_identity
    from adapter.dbutil import make_engine
    from adapter.store.evidence import Event, append

    cfg = ["--config", str(config_file)]
    assert main([*cfg, "init"]) == 0
    s = load_settings(str(config_file))
    engine = make_engine(s.url(s.adapter.state_db))
    with engine.begin() as c:
        append(c, [Event("operator", detail={"n": n}) for n in range(3)])
    assert make_checkpoint(engine, load_identity(s.path(s.signing.key),
                                                 s.path(s.signing.cert))) is not None
    engine.dispose()
    return cfg


def test_packet_validate_of_an_invalid_packet(invalid_packet, monkeypatch, capsys):
    speak(monkeypatch, **VI)
    code, vi, _ = run(capsys, "packet", "validate", str(invalid_packet))
    speak(monkeypatch, **EN)
    en_code, en, _ = run(capsys, "packet", "validate", str(invalid_packet))
    assert code == en_code == 1
    assert f"{invalid_packet}: INVALID (không hợp lệ; " in vi
    assert f"{invalid_packet}: INVALID (" in en and "không hợp lệ" not in en
    # the schema's findings (line, path, reason) are the same lines in both languages
    assert vi.splitlines()[1:] == en.splitlines()[1:] and "Unexpected" in en


def test_packet_validate_of_a_valid_packet(monkeypatch, capsys):
    speak(monkeypatch, **VI)
    assert run(capsys, "packet", "validate", str(EXAMPLES / "case.xml"))[1] == (
        f"{EXAMPLES / 'case.xml'}: hợp lệ (Case thuộc urn:thads-adapter:exchange:1)\n")
    speak(monkeypatch, **EN)
    assert run(capsys, "packet", "validate", str(EXAMPLES / "case.xml"))[1] == (
        f"{EXAMPLES / 'case.xml'}: valid (Case in urn:thads-adapter:exchange:1)\n")


def test_audit_verify_on_an_intact_log(state_with_evidence, monkeypatch, capsys):
    speak(monkeypatch, **VI)
    code, vi, _ = run(capsys, *state_with_evidence, "audit", "verify")
    assert code == 0
    assert "số mục:          3\n" in vi
    assert "điểm chốt:       1 (điểm chốt cuối ở mục 3)" in vi
    assert "kết quả:         INTACT (toàn vẹn): chuỗi băm, nội dung gói tin" in vi
    assert "lưu lại:         --expect-checkpoint 1:" in vi
    speak(monkeypatch, **EN)
    code, en, _ = run(capsys, *state_with_evidence, "audit", "verify")
    assert code == 0
    assert "entries:         3\n" in en and "checkpoints:     1 (last at entry 3)" in en
    assert "result:          INTACT: chain, packet bytes, head and checkpoints verify" in en
    # what is copied into the next command is the same in both
    keep = [line.split("--expect-checkpoint ")[1] for line in (vi + en).splitlines()
            if "--expect-checkpoint" in line]
    assert len(keep) == 2 and keep[0] == keep[1]


def test_audit_verify_json_is_never_translated(state_with_evidence, monkeypatch, capsys):
    speak(monkeypatch, **VI)
    vi = json.loads(run(capsys, *state_with_evidence, "audit", "verify", "--json")[1])
    speak(monkeypatch, **EN)
    en = json.loads(run(capsys, *state_with_evidence, "audit", "verify", "--json")[1])
    assert vi == en and vi["intact"] is True and vi["entries"] == 3


def test_top_level_help(monkeypatch, capsys):
    speak(monkeypatch, **VI)
    code, vi, _ = run(capsys, "--help")
    speak(monkeypatch, **EN)
    en_code, en, _ = run(capsys, "--help")
    assert code == en_code == 0
    assert vi.startswith("cách dùng: thads-adapter [-h] [--config CONFIG] COMMAND ...")
    assert "Bộ kết nối trao đổi dữ liệu thi hành án dân sự THADS" in vi
    assert "tùy chọn:" in vi and "hiển thị trợ giúp này rồi thoát" in vi
    assert "công cụ xử lý gói tin ngoại tuyến" in vi  # `packet`'s help
    assert en.startswith("usage: thads-adapter [-h] [--config CONFIG] COMMAND ...")
    assert "THADS exchange adapter (LGSP SOAP, document axis)" in en
    assert "options:" in en and "offline packet tools" in en
    for name in ("packet", "audit", "certs", "edxml", "db", "--config"):  # typed: unchanged
        assert name in vi and name in en


def test_usage_errors_from_argparse(monkeypatch, capsys):
    speak(monkeypatch, **VI)
    code, _, vi = run(capsys, "packet", "validaet")
    assert code == 2
    assert vi.splitlines()[-1] == ("thads-adapter packet: lỗi: đối số ACTION: lựa chọn không "
                                   "hợp lệ: 'validaet' (chọn một trong 'validate', 'sign', "
                                   "'verify')")
    speak(monkeypatch, **EN)
    code, _, en = run(capsys, "packet", "validate")
    assert code == 2
    assert en.splitlines()[-1] == ("thads-adapter packet validate: error: the following "
                                   "arguments are required: file")


def test_db_current(config_file, monkeypatch, capsys):
    cfg = ["--config", str(config_file)]
    speak(monkeypatch, **VI)
    code, vi, _ = run(capsys, *cfg, "db", "current")
    assert code == 0
    assert vi.startswith("CSDL trạng thái: sqlite:")
    assert "\nphiên bản:       chưa có (tệp chưa tồn tại)\n" in vi
    assert re.search(r"\ncần làm:         \w+: chạy lệnh `thads-adapter init`\n$", vi)
    speak(monkeypatch, **EN)
    assert main([*cfg, "init"]) == 0
    capsys.readouterr()
    code, en, _ = run(capsys, *cfg, "db", "current")
    assert code == 0 and en.startswith("state database:  sqlite:")
    assert "revision:" in en and "(this release's)" in en
    speak(monkeypatch, **VI)
    assert "(của bản phát hành này)" in run(capsys, *cfg, "db", "current")[1]


def test_a_configuration_error(config_file, monkeypatch, capsys):
    cfg = config_file
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("connect_timeout", "conect_timeout"),
                   encoding="utf-8")
    speak(monkeypatch, **VI)
    code, _, vi = run(capsys, "--config", str(cfg), "status")
    speak(monkeypatch, **EN)
    en_code, _, en = run(capsys, "--config", str(cfg), "status")
    assert code == en_code == 2
    assert vi.startswith("lỗi cấu hình: ") and en.startswith("configuration error: ")
    # the framing is translated; what the configuration loader found is the same text
    assert vi.removeprefix("lỗi cấu hình: ") == en.removeprefix("configuration error: ")
    assert "lgsp.conect_timeout: unknown key" in en and vi.count("\n") == 1


@pytest.mark.parametrize("env", [{"LC_ALL": "vi_VN.UTF-8", "LANG": "C"},
                                 {"LC_MESSAGES": "vi_VN.UTF-8"},
                                 {"LANGUAGE": "vi", "LANG": "en_US.UTF-8"},
                                 {"LANGUAGE": "fr:vi"}])
def test_the_language_is_chosen_as_gettext_chooses_it(env, monkeypatch, capsys):
    speak(monkeypatch, **env)
    assert run(capsys, "packet", "validate", str(EXAMPLES / "case.xml"))[1].endswith(
        "hợp lệ (Case thuộc urn:thads-adapter:exchange:1)\n")


@pytest.mark.parametrize("env", [{"LANG": "C.UTF-8"}, {"LANG": "en_US.UTF-8"}, {},
                                 {"LANGUAGE": "en", "LANG": "vi_VN.UTF-8"},
                                 {"LC_ALL": "C", "LANG": "vi_VN.UTF-8"},
                                 {"LANG": "fr_FR.UTF-8"}])  # no French catalogue: English
def test_english_otherwise(env, monkeypatch, capsys):
    speak(monkeypatch, **env)
    assert run(capsys, "packet", "validate", str(EXAMPLES / "case.xml"))[1].endswith(
        "valid (Case in urn:thads-adapter:exchange:1)\n")


def test_a_command_leaves_no_language_behind(monkeypatch, capsys):
    """main() installs the language for one command: code called after it (a test, a
    library user) speaks English again, and argparse's own messages too."""
    import argparse

    from adapter.i18n import _

    speak(monkeypatch, **VI)
    run(capsys, "--help")
    assert _("configuration error: {error}") == "configuration error: {error}"
    assert argparse.ArgumentParser(prog="x").format_usage() == "usage: x [-h]\n"
