"""The Vietnamese catalogue is complete and in step with the source: every message the CLI
marks is in it and translated, placeholders survive, the text is NFC, the shipped .mo is the
compiled .po. A message added to the CLI without its translation fails here, naming it."""

from __future__ import annotations

import gettext
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest

from adapter import i18n

PO = i18n.po_path("vi")


@pytest.fixture(scope="module")
def catalogue():
    return i18n.read_po(PO)


@pytest.fixture(scope="module")
def extracted():
    return i18n.extract()


def test_the_source_marks_messages_only_with_literals(extracted):
    assert extracted.problems == []
    # the CLI's own messages and argparse's are both there
    ids = {k[0] for k in extracted.messages}
    assert {"configuration error: {error}", "usage: ", "{file}: INVALID ({summary})"} <= ids


def test_every_message_of_the_cli_is_in_the_catalogue_and_nothing_else(extracted, catalogue):
    _, entries = catalogue
    assert sorted(extracted.messages.keys() - entries.keys()) == [], \
        "run `python -m adapter.i18n update`, then translate the new messages"
    assert sorted(entries.keys() - extracted.messages.keys()) == [], \
        "messages the source no longer has: run `python -m adapter.i18n update`"


def test_every_message_is_translated(catalogue):
    header, entries = catalogue
    assert "Language: vi" in header and "Plural-Forms: nplurals=1; plural=0;" in header
    untranslated = [m.msgid for m in entries.values() if not m.translated]
    assert untranslated == []
    assert all(s.strip() for m in entries.values() for s in m.strs)


def test_placeholders_match(catalogue):
    _, entries = catalogue
    differ = [(m.msgid, s) for m in entries.values() for s in m.strs
              if i18n.placeholders(s) != i18n.placeholders(m.msgid)]
    assert differ == []
    # the check sees what it must: a dropped or renamed placeholder, either style
    assert i18n.placeholders("{file}: {error}") != i18n.placeholders("{file}: lỗi")
    assert i18n.placeholders("{file}: {error}") != i18n.placeholders("{file}: {loi}")
    assert i18n.placeholders("%(prog)s: error: %(message)s\n") == ["%(message)s", "%(prog)s"]
    assert i18n.placeholders("100%% of %s") == ["%s"]


def test_translations_are_nfc_and_say_it_in_the_ministrys_terms(catalogue):
    _, entries = catalogue
    texts = [s for m in entries.values() for s in m.strs]
    assert all(unicodedata.is_normalized("NFC", s) for s in texts)
    joined = "\n".join(texts)
    for term in ("thi hành án dân sự", "gói tin", "chữ ký số", "chứng thư số",
                 "chứng thư gốc tin cậy", "cơ sở dữ liệu trạng thái", "lỗi cấu hình"):
        assert term in joined, term


def test_names_users_type_are_not_translated(catalogue):
    """Options, commands, file names and verdict words appear in the translation as in the
    English message (a translator who translates `--force` breaks the hint)."""
    import re

    _, entries = catalogue
    token = re.compile(r"--[a-z][a-z-]*|`[^`]+`|\$[A-Z_]+|\b(?:INTACT|BROKEN|INVALID|UNTRUSTED"
                       r"|REJECTED)\b|\b[\w.-]+\.(?:toml|pem|zip|sh)\b")
    changed = [(m.msgid, s) for m in entries.values() for s in m.strs
               if sorted(token.findall(m.msgid)) != sorted(token.findall(s))]
    assert changed == []


def test_the_shipped_mo_is_the_compiled_po(catalogue):
    header, entries = catalogue
    mo = PO.with_suffix(".mo")
    assert mo.read_bytes() == i18n.compile_mo(header, entries), \
        "run `python -m adapter.i18n compile`"
    t = gettext.GNUTranslations(mo.open("rb"))
    assert t.gettext("configuration error: {error}") == "lỗi cấu hình: {error}"
    assert t.pgettext("edXML document", "subject") == "trích yếu"
    assert t.pgettext("certificate", "subject") == "chủ thể"


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext not installed")
def test_gnu_msgfmt_accepts_the_catalogue(tmp_path):
    """The reference tool reads our .po the same way (format flags checked too)."""
    out = tmp_path / "gnu.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(out), str(PO)], check=True)
    ours = gettext.GNUTranslations(PO.with_suffix(".mo").open("rb"))
    gnu = gettext.GNUTranslations(out.open("rb"))
    _, entries = i18n.read_po(PO)
    for msgid, _plural, context in entries:
        if context:
            assert ours.pgettext(context, msgid) == gnu.pgettext(context, msgid)
        else:
            assert ours.gettext(msgid) == gnu.gettext(msgid)


def test_the_tooling_round_trips_and_merges(tmp_path, catalogue):
    header, entries = catalogue
    assert i18n.format_po(header, entries) == PO.read_text(encoding="utf-8")
    # a new message arrives untranslated, a removed one leaves, translations are kept
    template = dict(list(entries.items())[1:])
    new = i18n.Message("a new message {x}", refs=["adapter/cli/x.py:1"])
    template[(new.msgid, None, None)] = new
    merged = i18n.merge(template, entries)
    assert next(iter(entries)) not in merged
    assert not merged[(new.msgid, None, None)].translated
    kept = list(entries)[1]
    assert merged[kept].strs == entries[kept].strs
    f = tmp_path / "x.po"
    f.write_text(i18n.format_po(header, merged), encoding="utf-8")
    assert i18n.read_po(f) == (header, merged)


def test_the_extractor_finds_what_the_cli_will_mark(tmp_path):
    """Run on a module written like the files other sessions are editing (exchanges.py,
    running.py): `_()`, `ngettext()`, `pgettext()`, `N_()`; an f-string is reported."""
    pkg = tmp_path / "adapter"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "cli" / "exchanges.py").write_text(
        'from adapter.i18n import N_, _, ngettext, pgettext\n'
        'HEAD = N_("last error")\n'
        'def f(n, e):\n'
        '    print(_("no exchange {id}").format(id=e))\n'
        '    print(ngettext("{n} exchange", "{n} exchanges", n).format(n=n))\n'
        '    print(pgettext("exchange state", "failed"))\n'
        '    print(_(HEAD))\n'
        '    print(_(f"bad {e}"))\n', encoding="utf-8")
    ex = i18n.extract(pkg, ("cli/*.py",))
    assert list(ex.messages) == [("last error", None, None), ("no exchange {id}", None, None),
                                 ("{n} exchange", "{n} exchanges", None),
                                 ("failed", None, "exchange state")]
    assert ex.messages[("no exchange {id}", None, None)].refs == ["adapter/cli/exchanges.py:4"]
    assert ex.problems == ["adapter/cli/exchanges.py:8: _() needs string literals (use "
                           ".format() after the call, never an f-string)"]


def test_the_check_command_says_complete(capsys):
    assert i18n.main(["check"]) == 0
    assert capsys.readouterr().out.strip().endswith("vi: complete")


def test_a_catalogue_with_a_gap_is_reported(tmp_path, monkeypatch, catalogue):
    """`check` names an untranslated message, a broken placeholder and a stale .mo."""
    header, entries = catalogue
    broken = {k: i18n.Message(m.msgid, m.plural, m.context, list(m.strs), m.refs)
              for k, m in entries.items()}
    broken[("configuration error: {error}", None, None)].strs = ["lỗi cấu hình: {loi}"]
    broken[("error: {error}", None, None)].strs = [""]
    root = tmp_path / "locale" / "vi" / "LC_MESSAGES"
    root.mkdir(parents=True)
    (root / f"{i18n.DOMAIN}.po").write_text(i18n.format_po(header, broken), encoding="utf-8")
    (root / f"{i18n.DOMAIN}.mo").write_bytes(PO.with_suffix(".mo").read_bytes())
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path / "locale")
    problems = "\n".join(i18n.check("vi"))
    assert "not translated: 'error: {error}'" in problems
    assert "placeholders differ: 'configuration error: {error}'" in problems
    assert "is not the compiled .po" in problems


def test_the_catalogue_ships_with_the_package():
    """pyproject's package-data names the catalogues, so `pip install` (not only an
    editable install) carries them."""
    import tomllib

    root = Path(__file__).resolve().parents[3]
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = data["tool"]["setuptools"]["package-data"]["adapter"]
    rel = PO.with_suffix(".mo").relative_to(root / "adapter")
    assert any(rel.match(p) for p in patterns)
