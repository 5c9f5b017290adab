"""A partner checks our packets with the real xmlsec1 and nothing of ours.

The command lines are read from docs/partner-guide.md and run as written, from the kit
folder, so the guide cannot drift from what works.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from tests.fixtures.make_partner_examples import CA_FILE, EXAMPLES, KINDS, file_name

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "partner-guide.md"
XMLSEC1 = shutil.which("xmlsec1")
pytestmark = pytest.mark.xmlsec1


@pytest.fixture(autouse=True)
def _need_xmlsec1():
    assert XMLSEC1, "xmlsec1 is required (make test installs it)"


def guide_commands(program: str) -> list[list[str]]:
    """Every line of the guide's shell blocks that runs `program` on a signed example."""
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    lines = [ln.strip() for b in blocks for ln in b.splitlines()]
    return [shlex.split(ln) for ln in lines
            if ln.startswith(f"{program} ") and ".signed.xml" in ln]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)


def one_char_changed(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    m = re.search(rb"<Amount>(\d)", data)
    assert m
    dst.write_bytes(data[:m.start(1)] + (b"2" if m.group(1) == b"1" else b"1") + data[m.end(1):])


def xmlsec1_verify(packet: Path, ca: Path, *extra: str) -> subprocess.CompletedProcess:
    root = etree.QName(etree.parse(str(packet)).getroot()).localname
    return run([XMLSEC1, "--verify", *extra, "--id-attr:Id",
                f"urn:thads-adapter:exchange:1:{root}", "--trusted-pem", str(ca), str(packet)],
               cwd=packet.parent)


def test_the_guide_shows_one_check_per_signed_example_and_never_insecure():
    cmds = guide_commands("xmlsec1")
    assert sorted(c[-1] for c in cmds) == sorted(file_name(k, True) for k in KINDS)
    cli = guide_commands("thads-adapter")
    assert sorted(Path(c[-1]).name for c in cli) == sorted(file_name(k, True) for k in KINDS)
    for c in cmds:
        assert c[:2] == ["xmlsec1", "--verify"] and "--trusted-pem" in c, c
    assert "--insecure" not in " ".join(" ".join(c) for c in cmds)


@pytest.mark.parametrize("cmd", guide_commands("xmlsec1"), ids=lambda c: c[-1])
def test_guide_xmlsec1_command_verifies_and_refuses_a_one_character_change(tmp_path, cmd):
    ok = run(cmd, cwd=EXAMPLES)
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"^OK$", ok.stdout + ok.stderr, re.M)
    # the same command line on a copy with one character changed
    shutil.copy(EXAMPLES / CA_FILE, tmp_path / CA_FILE)
    one_char_changed(EXAMPLES / cmd[-1], tmp_path / cmd[-1])
    bad = run(cmd, cwd=tmp_path)
    assert bad.returncode != 0
    assert "data and digest do not match" in bad.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_another_ca_is_not_trusted(pki, kind):
    r = xmlsec1_verify(EXAMPLES / file_name(kind, True), pki / "ca.crt")
    assert r.returncode != 0
    assert "unable to get local issuer certificate" in r.stderr


@pytest.mark.parametrize("when", ["2025-01-02 00:00:00", "2026-11-02 09:30:00",
                                  "2049-12-01 00:00:00"])
def test_the_check_does_not_depend_on_todays_date_until_2049(when):
    for kind in KINDS:
        r = xmlsec1_verify(EXAMPLES / file_name(kind, True), EXAMPLES / CA_FILE,
                           "--verification-time", when)
        assert r.returncode == 0, (kind, when, r.stderr)


def test_after_the_documented_end_the_certificates_have_expired():
    r = xmlsec1_verify(EXAMPLES / file_name("case", True), EXAMPLES / CA_FILE,
                       "--verification-time", "2050-01-01 00:00:00")
    assert r.returncode != 0
    assert "certificate has expired" in r.stderr


@pytest.mark.parametrize("cmd", guide_commands("thads-adapter"), ids=lambda c: c[-1])
def test_guide_cli_command_verifies_with_only_the_kit_ca(tmp_path, cmd):
    """`packet verify --ca` as the guide writes it, run as a separate process."""
    env = {k: v for k, v in os.environ.items() if k != "THADS_ADAPTER_CONFIG"}
    ok = subprocess.run([sys.executable, "-m", "adapter", *cmd[1:]], cwd=ROOT,
                        capture_output=True, text=True, timeout=60, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "signature valid" in ok.stdout
    bad_file = tmp_path / "changed.xml"
    one_char_changed(ROOT / cmd[-1], bad_file)
    bad = subprocess.run([sys.executable, "-m", "adapter", *cmd[1:-1], str(bad_file)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 1
    assert "digest mismatch" in bad.stdout


def test_regenerating_the_kit_gives_the_same_unsigned_examples_and_fresh_valid_signatures(
        tmp_path):
    r = subprocess.run([sys.executable, "-m", "tests.fixtures.make_partner_examples",
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        sorted(p.name for p in EXAMPLES.glob("*") if p.suffix in (".xml", ".pem"))
    for kind in KINDS:
        assert (tmp_path / file_name(kind, False)).read_bytes() == \
            (EXAMPLES / file_name(kind, False)).read_bytes()
        fresh = xmlsec1_verify(tmp_path / file_name(kind, True), tmp_path / CA_FILE)
        assert fresh.returncode == 0, fresh.stderr
        # new keys: the committed CA does not vouch for the regenerated signatures
        old_ca = xmlsec1_verify(tmp_path / file_name(kind, True), EXAMPLES / CA_FILE)
        assert old_ca.returncode != 0
    assert b"PRIVATE KEY" not in b"".join(p.read_bytes() for p in tmp_path.iterdir())
