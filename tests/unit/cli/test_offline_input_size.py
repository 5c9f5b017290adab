"""Offline tools look at a file's size before reading it: a 200 MB file is refused with one
line naming the limit (exit 2), without the 200 MB ever being read into memory."""

import tracemalloc

import pytest

from adapter.cli.main import build_parser, main
from adapter.xml.safe import MAX_PACKET_BYTES

COMMANDS = [["packet", "validate"], ["packet", "verify"], ["packet", "sign"],
            ["edxml", "inspect"]]


@pytest.fixture
def huge(tmp_path, monkeypatch):
    """A sparse 200 MB file in a directory with no configuration."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("THADS_ADAPTER_CONFIG", raising=False)
    f = tmp_path / "huge.xml"
    with open(f, "wb") as out:
        out.write(b"<a>")
        out.truncate(200 * 1024 * 1024)
    return f


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_200_mb_file_is_refused_before_it_is_read(command, huge, capsys):
    build_parser()  # imports every command's module: only the run itself is traced
    tracemalloc.start()
    try:
        code = main([*command, str(huge)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"error: {huge}: 209715200 bytes exceed the limit of {MAX_PACKET_BYTES} "
                   "bytes (64 MiB) for one packet"]
    assert peak < 16 * 1024 * 1024  # the file was stat'ed, not read


def test_standard_input_is_bounded_too(monkeypatch, capsys):
    import io
    import sys

    class Stdin:
        buffer = io.BytesIO(b"<a/>" + b" " * MAX_PACKET_BYTES)

    monkeypatch.setattr(sys, "stdin", Stdin)
    assert main(["packet", "validate", "-"]) == 2
    assert "standard input: more than the limit" in capsys.readouterr().err
