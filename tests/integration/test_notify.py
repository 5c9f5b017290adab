"""sd_notify against a real Unix datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import pytest

from adapter.service.notify import Notifier, NotifySocketError


class FakeSystemd:
    """A datagram socket bound where $NOTIFY_SOCKET points; collects every message."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []

    def receive(self, until, deadline: float = 60.0) -> dict[str, str]:
        """Messages until one satisfies `until`; fails after `deadline` seconds."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            msg = dict(line.split("=", 1) for line in data.splitlines())
            self.messages.append(msg)
            if until(msg):
                return msg
        raise AssertionError(f"no such message; got {self.messages[-5:]}")

    def drain(self) -> list[dict[str, str]]:
        out = []
        self.sock.settimeout(0)
        try:
            while True:
                data = self.sock.recv(4096).decode()
                out.append(dict(line.split("=", 1) for line in data.splitlines()))
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(0.2)
        return out

    def close(self) -> None:
        self.sock.close()
        if not self.address.startswith("@"):
            os.unlink(self.address)


@pytest.fixture
def systemd(tmp_path):
    fake = FakeSystemd(str(tmp_path / "notify.sock"))
    yield fake
    fake.close()


def test_a_path_socket_gets_status_at_start_and_each_message(systemd):
    n = Notifier.from_environ({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "4000000"})
    assert systemd.receive(lambda m: True) == {"STATUS": "starting"}
    assert n.watchdog_seconds == 4.0
    n.ready("all\nwell")
    assert systemd.receive(lambda m: True) == {"READY": "1", "STATUS": "all well"}
    n.watchdog()
    assert systemd.receive(lambda m: True) == {"WATCHDOG": "1"}
    n.stopping()
    assert systemd.receive(lambda m: True) == {"STOPPING": "1", "STATUS": "stopping"}
    n.close()


def test_an_abstract_socket_is_reached_through_its_at_name():
    fake = FakeSystemd(f"@thads-test-{uuid.uuid4().hex}")
    try:
        n = Notifier.from_environ({"NOTIFY_SOCKET": fake.address})
        assert fake.receive(lambda m: True) == {"STATUS": "starting"}
        n.ready()
        assert fake.receive(lambda m: True) == {"READY": "1"}
    finally:
        fake.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails():
    n = Notifier.from_environ({})
    assert not n.enabled and n.watchdog_seconds is None
    assert n.ready() is False and n.watchdog() is False


@pytest.mark.parametrize("address, reason", [
    ("{tmp}/nobody-listens.sock", "No such file or directory"),
    ("relative.sock", "not a socket path"),
    ("@thads-nobody-{uuid}", "Connection refused"),
])
def test_a_socket_that_cannot_be_written_is_one_line_naming_it(tmp_path, address, reason):
    address = address.format(tmp=tmp_path, uuid=uuid.uuid4().hex)
    with pytest.raises(NotifySocketError) as err:
        Notifier.from_environ({"NOTIFY_SOCKET": address})
    msg = str(err.value)
    assert msg.startswith(f"NOTIFY_SOCKET={address}: ") and reason in msg and "\n" not in msg


def test_a_watchdog_meant_for_another_pid_is_ignored(systemd):
    n = Notifier.from_environ({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "1000000",
                               "WATCHDOG_PID": str(os.getpid() + 1)})
    assert n.watchdog_seconds is None


# ---- the service's heartbeat ---------------------------------------------------------------

def test_ready_after_start_watchdog_from_the_scheduler_and_silence_when_it_hangs(
        systemd, tmp_path, pki):
    from adapter.config import load_settings
    from adapter.engine.context import Context
    from adapter.service.runner import Service
    from tests.conftest import free_port, write_config

    s = load_settings(write_config(tmp_path, pki, sim_port=free_port()))
    notifier = Notifier(systemd.address, watchdog_usec=100_000)  # a ping every 0.05 s
    ctx = Context(s)
    ctx.store.create_schema()
    service = Service(s, ctx, notifier=notifier)
    service.routes = []  # no platform in this test: only the scheduler and its heartbeat
    service.progress = {}
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        ready = systemd.receive(lambda m: m.get("READY") == "1")
        assert "STATUS" in ready
        systemd.receive(lambda m: m.get("WATCHDOG") == "1")
        systemd.receive(lambda m: m.get("WATCHDOG") == "1")  # and again: it is periodic
        assert service.scheduler_problem() is None
        # a scheduler that no longer dispatches: the pings stop, systemd would restart us
        assert service.scheduler is not None
        service.scheduler.pause()
        time.sleep(0.2)  # a round still running may finish and ping once more
        systemd.drain()
        time.sleep(0.5)  # ten heartbeat intervals
        assert not [m for m in systemd.drain() if "WATCHDOG" in m]
        service.scheduler.resume()
        systemd.receive(lambda m: m.get("WATCHDOG") == "1")
    finally:
        ctx.stopping.set()
        thread.join(30)
        ctx.close()
    assert not thread.is_alive()
