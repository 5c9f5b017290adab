"""The sd_notify protocol, written out: one datagram per state change to $NOTIFY_SOCKET.

systemd (`Type=notify`) learns from these that the service is ready (READY=1, after the
workers are warm), what it is doing (STATUS=), that its scheduler still turns (WATCHDOG=1;
no ping for WatchdogSec gets the service restarted) and that it is stopping (STOPPING=1).
A path starting with '@' names a socket in the abstract namespace.

Without $NOTIFY_SOCKET (started by hand, by a test, or `Type=simple`) every call does
nothing. With it, the socket is tried once at start: a socket that cannot be written stops
the start with one line (exit 2), rather than a service systemd would kill as never ready.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading

from adapter.errors import AdapterError

log = logging.getLogger("adapter.service")


class NotifySocketError(AdapterError):
    """$NOTIFY_SOCKET is set but cannot be written to; names the socket and the reason."""


class Notifier:
    """A connected datagram socket to the service manager, or nothing."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        #: seconds between WATCHDOG=1 pings systemd expects at least (None: no watchdog)
        self.watchdog_seconds = watchdog_usec / 1e6 if watchdog_usec else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        if self.address is None:
            return
        if not self.address.startswith(("/", "@")):
            raise NotifySocketError(f"NOTIFY_SOCKET={self.address}: not a socket path "
                                    "(expected /path or @abstract-name)")
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(target)
        except OSError as exc:
            sock.close()
            raise NotifySocketError(f"NOTIFY_SOCKET={self.address}: cannot write to it "
                                    f"({exc.strerror or exc})") from None
        self._sock = sock

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None, *,
                     unset: bool = True) -> Notifier:
        """The notifier $NOTIFY_SOCKET names. `unset` removes the variables from our
        environment, so child processes (simulator, sign workers) never speak for us."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET")
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if unset and environ is None:
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(name, None)
        watchdog = int(usec) if usec.isdigit() and int(usec) > 0 else None
        if pid and pid.isdigit() and int(pid) != os.getpid():
            watchdog = None  # the watchdog is meant for another process
        notifier = cls(address, watchdog_usec=watchdog)
        notifier.check()
        return notifier

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def check(self) -> None:
        """Send a first STATUS: the one write that must work, at start."""
        if self._sock is None:
            return
        try:
            self._sock.send(b"STATUS=starting")
        except OSError as exc:
            self.close()
            raise NotifySocketError(f"NOTIFY_SOCKET={self.address}: cannot write to it "
                                    f"({exc.strerror or exc})") from None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` lines as one datagram; False (and a log line) if it failed.
        Once running, a lost message is reported, never fatal."""
        if self._sock is None:
            return False
        data = "\n".join(f.replace("\n", " ") if f.startswith("STATUS=") else f
                         for f in fields).encode()
        with self._lock:
            try:
                self._sock.send(data)
                return True
            except OSError as exc:
                log.warning("could not notify the service manager (%s): %s",
                            self.address, exc.strerror or exc)
                return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
