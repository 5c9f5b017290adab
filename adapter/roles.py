"""Who is an auditor: decided by what the caller cannot change.

Full packets (personal data) are for auditors. The caller controls the configuration file
(`--config`), the environment (`THADS__…`) and anything in their home directory, so none of
those may say who an auditor is. Two things they cannot change decide it instead:

- the group of auditors, fixed at install in a system file owned by root and writable by
  root only (`/etc/thads-adapter/roles.toml`, one key: `auditor_group = "thads-auditors"`);
- the process's real groups (`getgid()` and the supplementary groups), given by the kernel.

Missing, unreadable or unsafe (not root's, or writable by others), the file names nobody:
then nobody is an auditor. Root is not an auditor by being root, only by being in the group
(root can read the state database anyway; the CLI does not pretend otherwise).
"""

from __future__ import annotations

import grp
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from adapter.errors import AdapterError

#: where the install puts the roles file. A build-time constant: deliberately not a setting,
#: nor an environment variable, nor a command-line option (tests pass `Roles(path=...)`).
SYSTEM_ROLES_FILE = Path("/etc/thads-adapter/roles.toml")
#: the only owner a roles file (and its directory) may have.
ROOT_UID = 0


@dataclass(frozen=True)
class RoleDecision:
    """Whether this process is an auditor, and one line saying why (for the refusal)."""

    auditor: bool
    reason: str


class Roles:
    """Reads the system roles file and the process's groups.

    `path` and `owner` exist for tests only (a temporary file owned by the test user);
    the command line always uses the defaults."""

    def __init__(self, path: Path | None = None, *, owner: int | None = None) -> None:
        self.path = Path(path) if path is not None else SYSTEM_ROLES_FILE
        self.owner = ROOT_UID if owner is None else owner

    def auditor_group(self) -> tuple[str | None, str]:
        """The group the roles file names, or None and why it names nobody."""
        where = str(self.path)
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None, f"{where} does not exist (root installs it: see the auditor guide)"
        except OSError as exc:
            return None, f"{where} cannot be read ({exc.strerror})"
        try:
            unsafe = _unsafe(os.fstat(fd), self.owner) or \
                _unsafe(os.stat(self.path.parent), self.owner, directory=True)
            if unsafe:
                return None, f"{where} is refused: {unsafe}"
            with os.fdopen(os.dup(fd), "rb") as f:
                raw = f.read(64 * 1024)
        finally:
            os.close(fd)
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            return None, f"{where} is refused: not valid TOML ({exc})"
        group = data.get("auditor_group")
        if not isinstance(group, str) or not group:
            return None, f"{where} names no auditor_group"
        return group, where

    def decide(self) -> RoleDecision:
        group, why = self.auditor_group()
        if group is None:
            return RoleDecision(False, f"nobody is an auditor: {why}")
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            return RoleDecision(False, f"nobody is an auditor: group {group!r} named in "
                                       f"{why} does not exist")
        if gid == os.getgid() or gid in os.getgroups():
            return RoleDecision(True, f"member of group {group!r} ({why})")
        return RoleDecision(False, f"you (uid {os.getuid()}) are not a member of group "
                                   f"{group!r} ({why})")

    def require_auditor(self) -> None:
        """Raise (one line, exit 2) unless this process is an auditor."""
        d = self.decide()
        if not d.auditor:
            raise AdapterError(f"full packets are for auditors: {d.reason}")


def _unsafe(st: os.stat_result, owner: int, *, directory: bool = False) -> str | None:
    """Why a roles file (or its directory) could have been written by someone else."""
    what = "its directory" if directory else "it"
    if not directory and not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != owner:
        return f"{what} is owned by uid {st.st_uid}, not {'root' if owner == 0 else owner}"
    if st.st_mode & stat.S_IWGRP:
        return f"{what} is writable by its group (mode {stat.S_IMODE(st.st_mode):04o})"
    if st.st_mode & stat.S_IWOTH:
        return f"{what} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None
