"""The auditor role: decided by a root-owned system file and the process's real groups."""

import grp
import os

import pytest

from adapter.errors import AdapterError
from adapter.roles import Roles


def _my_group() -> str:
    return grp.getgrgid(os.getgid()).gr_name


def _a_group_i_am_not_in() -> str:
    mine = {os.getgid(), *os.getgroups()}
    for g in grp.getgrall():
        if g.gr_gid not in mine:
            return g.gr_name
    pytest.fail("every group on this machine is one of the test process's groups")


def _roles(tmp_path, group: str, *, mode: int = 0o644, dir_mode: int = 0o755) -> Roles:
    d = tmp_path / "etc"
    d.mkdir(exist_ok=True)
    f = d / "roles.toml"
    f.write_text(f'auditor_group = "{group}"\n', encoding="utf-8")
    f.chmod(mode)
    d.chmod(dir_mode)
    return Roles(f, owner=os.getuid())


def test_a_member_of_the_group_the_system_file_names_is_an_auditor(tmp_path):
    d = _roles(tmp_path, _my_group()).decide()
    assert d.auditor, d.reason
    _roles(tmp_path, _my_group()).require_auditor()


def test_a_group_the_process_is_not_in_is_refused_even_for_root(tmp_path):
    group = _a_group_i_am_not_in()
    roles = _roles(tmp_path, group)
    assert not roles.decide().auditor
    with pytest.raises(AdapterError, match=f"not a member of group '{group}'"):
        roles.require_auditor()


def test_without_the_system_file_nobody_is_an_auditor(tmp_path):
    d = Roles(tmp_path / "missing.toml", owner=os.getuid()).decide()
    assert not d.auditor
    assert d.reason.startswith("nobody is an auditor:") and "does not exist" in d.reason


@pytest.mark.parametrize(("mode", "dir_mode", "why"), [
    (0o664, 0o755, "writable by its group"),
    (0o646, 0o755, "writable by others"),
    (0o644, 0o775, "its directory is writable by its group"),
    (0o644, 0o757, "its directory is writable by others"),
])
def test_a_roles_file_others_could_rewrite_is_refused(tmp_path, mode, dir_mode, why):
    d = _roles(tmp_path, _my_group(), mode=mode, dir_mode=dir_mode).decide()
    assert not d.auditor and why in d.reason and "refused" in d.reason


def test_a_roles_file_not_owned_by_the_install_owner_is_refused(tmp_path):
    f = _roles(tmp_path, _my_group()).path
    other = os.getuid() + 4242
    d = Roles(f, owner=other).decide()
    assert not d.auditor and f"owned by uid {os.getuid()}, not {other}" in d.reason


def test_a_symlink_in_place_of_the_roles_file_is_refused(tmp_path):
    real = _roles(tmp_path, _my_group()).path
    link = tmp_path / "etc" / "link.toml"
    link.symlink_to(real)
    d = Roles(link, owner=os.getuid()).decide()
    assert not d.auditor and "cannot be read" in d.reason


def test_a_group_that_does_not_exist_makes_nobody_an_auditor(tmp_path):
    d = _roles(tmp_path, "thads-no-such-group-x").decide()
    assert not d.auditor and "does not exist" in d.reason


def test_the_default_is_the_system_file_and_root_as_owner():
    roles = Roles()
    assert str(roles.path) == "/etc/thads-adapter/roles.toml" and roles.owner == 0
