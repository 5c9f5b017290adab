"""The state database file: created private, and refused in one line when it is not one."""

import os
import stat

import pytest

from adapter.cli.main import main


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_state_database_is_created_without_access_for_others(config_file, umask_022,
                                                                   capsys):
    assert main(["--config", str(config_file), "init"]) == 0
    var = config_file.parent.parent / "var"
    db = var / "state.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o640
    for f in var.glob("state.db*"):  # -wal and -shm, while they exist, too
        assert stat.S_IMODE(f.stat().st_mode) & 0o007 == 0, f


def test_the_state_database_under_a_strict_umask_is_owner_only(config_file, capsys):
    old = os.umask(0o077)
    try:
        assert main(["--config", str(config_file), "init"]) == 0
    finally:
        os.umask(old)
    db = config_file.parent.parent / "var" / "state.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


@pytest.mark.parametrize("command", [["status"], ["exchanges", "list"]])
def test_a_state_db_that_is_a_text_file_is_one_line_and_exit_2(config_file, command, capsys):
    db = config_file.parent.parent / "var" / "state.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_text("these are my notes, not a database\n" * 50, encoding="utf-8")
    assert main(["--config", str(config_file), *command]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert str(db) in err and "not an SQLite database" in err
    assert "Traceback" not in err


def test_a_state_db_that_is_a_directory_is_one_line_and_exit_2(config_file, capsys):
    db = config_file.parent.parent / "var" / "state.db"
    db.mkdir(parents=True)
    assert main(["--config", str(config_file), "status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(db) in err
