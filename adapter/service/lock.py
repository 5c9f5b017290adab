"""One service per SQLite state database.

SQLite has no SKIP LOCKED, and two services on one file would contend for every write; a
second instance is refused with a clear message instead. On PostgreSQL several instances
share the work through row claims, so no lock is taken.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from adapter.errors import AdapterError


class InstanceLocked(AdapterError):
    pass


class InstanceLock:
    def __init__(self, state_db_url: str) -> None:
        u = make_url(state_db_url)
        self.path: Path | None = None
        if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
            self.path = Path(u.database + ".lock")
        self._fd: int | None = None

    @property
    def exclusive(self) -> bool:
        """True when this process is the only one allowed to use the state database."""
        return self.path is not None and self._fd is not None

    def acquire(self) -> InstanceLock:
        if self.path is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 100, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise InstanceLocked(
                f"another adapter service ({holder}) is already running on "
                f"{self.path.with_suffix('')}; with SQLite only one instance may run "
                "(use PostgreSQL for several)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
