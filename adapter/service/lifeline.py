"""Children that die with the service, even when it is killed with SIGKILL.

Linux's parent-death signal (prctl PR_SET_PDEATHSIG) is asked for by each child itself:
the sign workers in their initializer, the embedded simulator when it starts. The kernel
sends it when the *thread* that started the child ends, so children are started from the
service's main thread (warm-up starts every sign worker; `run` starts the simulator before
the scheduler), which lives as long as the process. A parent that died before the child
asked is caught by comparing getppid() with the pid the parent gave.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import sys
from pathlib import Path

from adapter.errors import AdapterError

PR_SET_PDEATHSIG = 1
#: set by `run` for the embedded simulator: the pid it must die with.
PARENT_ENV = "THADS_ADAPTER_PARENT_PID"


def die_with_parent(parent_pid: int | None, sig: int = signal.SIGTERM) -> bool:
    """Ask for `sig` when our parent dies; exit at once if it already has. Returns False
    where the platform has no such signal (not Linux): the child then outlives a kill."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(0)  # the parent died before we asked: nobody would send the signal
    return True


def die_with_multiprocessing_parent(sig: int = signal.SIGKILL) -> bool:
    """For a worker of a multiprocessing pool (spawned): die with the process that owns it."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    return die_with_parent(parent.pid if parent is not None else None, sig)


def die_with_parent_from_environ(sig: int = signal.SIGTERM) -> bool:
    """In a child `run` started (the simulator): die with it if it said so."""
    pid = os.environ.pop(PARENT_ENV, "")
    if not pid.isdigit():
        return False
    return die_with_parent(int(pid), sig)


class PortTaken(AdapterError):
    """A port we must listen on is held by another process."""


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Refuse to start `what` on a port another process listens on, naming the port and,
    when /proc tells, the process (else the old simulator would answer in its place)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no holder
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise PortTaken(f"cannot start {what} on {host}:{port}: "
                                f"{exc.strerror or exc}") from None
            holder = port_holder(port)
            raise PortTaken(
                f"cannot start {what}: port {port} on {host} is already held by "
                f"{holder or 'another process'}; stop it, or set another port in "
                "[simulator] port (and the endpoints that point at it)") from None


def port_holder(port: int) -> str | None:
    """"pid N (name)" of a process listening on TCP `port`, if /proc lets us see it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    name = (proc / "comm").read_text().strip()
                    return f"pid {proc.name} ({name})"
        except OSError:
            continue
    return None
