"""Full-packet export through the CLI: only auditors, whatever the caller's settings say."""

import grp
import os

import pytest

import adapter.roles
from adapter.cli.main import main
from tests.helpers import install_roles_file


def _a_group_i_am_not_in() -> str:
    mine = {os.getgid(), *os.getgroups()}
    for g in grp.getgrall():
        if g.gr_gid not in mine:
            return g.gr_name
    pytest.fail("every group on this machine is one of the test process's groups")


@pytest.fixture
def state(config_file):
    assert main(["--config", str(config_file), "init"]) == 0
    return config_file


def _export(config_file, out) -> int:
    return main(["--config", str(config_file), "audit", "export", "--out", str(out)])


def test_a_member_of_the_installed_auditor_group_exports(state, tmp_path, monkeypatch, capsys):
    install_roles_file(monkeypatch, tmp_path)
    out = tmp_path / "evidence.zip"
    assert _export(state, out) == 0 and out.is_file()


def test_an_environment_override_no_longer_unlocks_export(state, tmp_path, monkeypatch,
                                                           capsys):
    install_roles_file(monkeypatch, tmp_path, _a_group_i_am_not_in())
    monkeypatch.setenv("THADS__AUDIT__AUDITOR_GROUP", '""')
    out = tmp_path / "evidence.zip"
    assert _export(state, out) == 2
    err = capsys.readouterr().err
    assert not out.exists()
    assert err.count("\n") == 1 and "full packets are for auditors" in err


def test_the_callers_own_config_no_longer_unlocks_export(state, tmp_path, monkeypatch, capsys):
    """`--config own.toml` naming the caller's own group, or none: refused all the same."""
    install_roles_file(monkeypatch, tmp_path, _a_group_i_am_not_in())
    text = state.read_text(encoding="utf-8")
    mine = grp.getgrgid(os.getgid()).gr_name
    for extra in ("", f'auditor_group = "{mine}"\n'):
        own = tmp_path / "own.toml"
        own.write_text(text.replace("[audit]\n", "[audit]\n" + extra), encoding="utf-8")
        out = tmp_path / "evidence.zip"
        assert _export(own, out) == 2, extra
        assert not out.exists()
        assert "full packets are for auditors" in capsys.readouterr().err


def test_an_auditor_group_in_the_configuration_is_refused_naming_where_it_belongs(
        state, tmp_path, monkeypatch, capsys):
    install_roles_file(monkeypatch, tmp_path)
    monkeypatch.setenv("THADS__AUDIT__AUDITOR_GROUP", '""')
    assert main(["--config", str(state), "status"]) == 2
    err = capsys.readouterr().err
    assert "auditor_group" in err and "/etc/thads-adapter/roles.toml" in err


def test_a_group_writable_roles_file_is_refused(state, tmp_path, monkeypatch, capsys):
    install_roles_file(monkeypatch, tmp_path, mode=0o664)
    out = tmp_path / "evidence.zip"
    assert _export(state, out) == 2 and not out.exists()
    assert "writable by its group" in capsys.readouterr().err


def test_without_the_system_file_nobody_exports_or_archives(state, tmp_path, monkeypatch,
                                                            capsys):
    monkeypatch.setattr(adapter.roles, "SYSTEM_ROLES_FILE", tmp_path / "absent.toml")
    out = tmp_path / "evidence.zip"
    assert _export(state, out) == 2 and not out.exists()
    assert "nobody is an auditor" in capsys.readouterr().err
    assert main(["--config", str(state), "audit", "archive", "--before", "1",
                 "--out", str(out)]) == 2
    assert "nobody is an auditor" in capsys.readouterr().err and not out.exists()
