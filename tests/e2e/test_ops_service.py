"""`thads-adapter run` as an operator's systemd would run it, in real processes: the notify
protocol, JSON logs, refusals at start that leave nothing behind, a clean process tree,
and a revoked certificate of our own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from adapter.config import load_settings
from adapter.dbutil import make_engine
from adapter.store.models import Exchange
from tests.conftest import free_port, write_config
from tests.integration.test_notify import FakeSystemd

pytestmark = pytest.mark.slow


def cli(cfg, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adapter", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def start(cfg, *args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "adapter", "--config", str(cfg), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc."""
    parents: dict[int, int] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            parents[int(p.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = set(), [pid]
    while todo:
        cur = todo.pop()
        kids = {c for c, pp in parents.items() if pp == cur}
        todo.extend(kids - found)
        found |= kids
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped (init reaps orphans in its own time)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def demo(tmp_path, pki):
    """An embedded-simulator demo with its metrics endpoint, both on free ports."""
    sim_port, metrics_port = free_port(), free_port()
    cfg = write_config(tmp_path, pki, sim_port=sim_port, sim_embedded=True, sign_workers=1,
                       extra=f'[metrics]\naddress = "127.0.0.1:{metrics_port}"\n'
                             "totals_seconds = 0\n")
    init = cli(cfg, "init", "--demo", "--cases", "40")
    assert init.returncode == 0, init.stderr
    return cfg, sim_port, metrics_port


def one_line_refusal(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


# ---- systemd ------------------------------------------------------------------------------

def test_ready_status_watchdog_then_stopping_on_sigterm(demo, tmp_path):
    cfg, _sim_port, metrics_port = demo
    systemd = FakeSystemd(str(tmp_path / "notify.sock"))
    try:
        proc = start(cfg, "run", env={"NOTIFY_SOCKET": systemd.address,
                                      "WATCHDOG_USEC": "400000"})
        try:
            assert systemd.receive(lambda m: True) == {"STATUS": "starting"}
            ready = systemd.receive(lambda m: m.get("READY") == "1")
            assert ready["STATUS"]
            # the demo's rounds show in STATUS=; WATCHDOG=1 keeps coming from the scheduler
            systemd.receive(lambda m: "delivered" in m.get("STATUS", "")
                            and m.get("WATCHDOG") == "1")
            r = requests.get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5)
            assert r.status_code == 200, r.text
            proc.send_signal(signal.SIGTERM)
            stopping = systemd.receive(lambda m: m.get("STOPPING") == "1")
            assert stopping["STATUS"] == "stopping"
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert proc.returncode == 0, err[-2000:]
        assert "SIGTERM received" in err
    finally:
        systemd.close()


def test_the_unit_file_is_type_notify_with_a_watchdog_and_verifies():
    root = Path(__file__).resolve().parents[2]
    unit = (root / "config" / "thads-adapter.service").read_text()
    keys = dict(line.split("=", 1) for line in unit.splitlines()
                if "=" in line and not line.startswith("#"))
    assert keys["Type"] == "notify" and keys["NotifyAccess"] == "main"
    assert int(keys["WatchdogSec"]) > 0 and keys["Restart"] == "on-failure"
    assert keys["KillMode"] == "mixed" and keys["RestartPreventExitStatus"] == "2"
    analyze = "/usr/bin/systemd-analyze"
    if not Path(analyze).exists():
        return  # the keys above are what can be checked without systemd
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        copy = Path(d) / "thads-adapter.service"  # ExecStart must exist to verify
        copy.write_text(unit.replace("/opt/thads-adapter/.venv/bin/thads-adapter",
                                     str(Path(sys.executable).with_name("thads-adapter"))))
        r = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                           cwd=d, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "thads-adapter.service" not in r.stderr, r.stderr  # no warning about our unit


def test_json_logs_one_object_per_line(tmp_path, pki):
    cfg = write_config(tmp_path, pki, sim_port=free_port(),
                       extra='[logging]\nformat = "json"\n')
    assert cli(cfg, "init", "--demo", "--cases", "5").returncode == 0
    r = cli(cfg, "run", "--once", "--no-simulator")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines, r.stderr
    records = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "pid", "thread"} <= set(rec)
               for rec in records)
    assert any(rec["logger"] == "adapter.service" and "prepared" in rec["message"]
               for rec in records)
    assert {rec["level"] for rec in records} <= {"DEBUG", "INFO", "WARNING", "ERROR"}


def test_json_and_text_lines_mask_citizen_ids_in_messages_and_tracebacks():
    import logging

    from adapter.service.log_format import JsonFormatter, MaskedTextFormatter

    try:
        raise ValueError("party 079203001234 refused")
    except ValueError:
        record = logging.LogRecord("adapter.x", logging.ERROR, __file__, 1,
                                   "debtor %s has no conditions", ("001099012345",),
                                   sys.exc_info())
    as_json = json.loads(JsonFormatter().format(record))
    assert as_json["message"] == "debtor 001*******45 has no conditions"
    assert "079*******34" in as_json["exception"] and "079203001234" not in as_json["exception"]
    line = MaskedTextFormatter().format(record)
    assert "001099012345" not in line and "079203001234" not in line
    assert "001*******45" in line


# ---- refusals at start ---------------------------------------------------------------------

def test_refusals_are_one_line_exit_2_and_leave_nothing_running(demo, tmp_path):
    cfg, sim_port, metrics_port = demo
    # the metrics port is held by someone else
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", metrics_port))
        holder.listen()
        line = one_line_refusal(cli(cfg, "run", "--until-idle"))
    assert f"port {metrics_port} on 127.0.0.1 is already in use" in line
    assert port_free(sim_port)  # the simulator was never started
    # an unparseable address
    line = one_line_refusal(cli(cfg, "run", env={"THADS__METRICS__ADDRESS": '"nowhere"'}))
    assert "metrics.address" in line and "is not host:port" in line
    # a notify socket nobody listens on
    line = one_line_refusal(cli(cfg, "run", env={"NOTIFY_SOCKET": str(tmp_path / "none")}))
    assert line.startswith(f"error: NOTIFY_SOCKET={tmp_path / 'none'}: cannot write to it")
    assert port_free(sim_port) and port_free(metrics_port)
    with make_engine(load_settings(cfg).url(load_settings(cfg).adapter.state_db)).connect() \
            as c:
        assert c.execute(select(func.count()).select_from(Exchange)).scalar() == 0


def test_the_simulator_port_held_by_another_process_is_refused_naming_it(demo):
    cfg, sim_port, _ = demo
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", sim_port))
        holder.listen()
        line = one_line_refusal(cli(cfg, "run", "--until-idle"))
    assert f"port {sim_port} on 127.0.0.1 is already held by pid {os.getpid()}" in line
    assert "embedded simulator" in line


# ---- a clean process tree ------------------------------------------------------------------

def test_sigkill_leaves_no_child_behind(demo):
    cfg, sim_port, metrics_port = demo
    proc = start(cfg, "run")
    try:
        for _ in range(600):  # until ready: the sign worker and the simulator both run
            try:
                if requests.get(f"http://127.0.0.1:{metrics_port}/readyz",
                                timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            time.sleep(0.1)
        children = descendants(proc.pid)
        assert len(children) >= 2  # the simulator and the sign worker at least
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in children):
        time.sleep(0.1)
    assert not [p for p in children if alive(p)], \
        [Path(f"/proc/{p}/cmdline").read_text() for p in children if alive(p)]
    assert port_free(sim_port)  # the next demo cannot talk to an old simulator


def test_a_simulator_started_by_a_test_or_benchmark_dies_when_its_starter_is_killed(
        tmp_path, pki):
    """`start_child` is how benchmarks start the simulator: a benchmark killed (or crashed
    in its own start-up) left the simulator running and holding its port."""
    sim_port = free_port()
    cfg = write_config(tmp_path, pki, sim_port=sim_port)
    starter = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from adapter.config import load_settings\n"
        "from adapter.sim.server import start_child\n"
        f"sim = start_child(load_settings({str(cfg)!r}), config_file={str(cfg)!r})\n"
        "print(sim.pid, flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert starter.stdout is not None
        sim_pid = int(starter.stdout.readline())
        assert alive(sim_pid) and not port_free(sim_port)
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
    # the leader shows as a zombie while its other threads still exit and close the socket
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (alive(sim_pid) or not port_free(sim_port)):
        time.sleep(0.1)
    assert not alive(sim_pid)
    assert port_free(sim_port)


# ---- our own certificate revoked -----------------------------------------------------------

def test_our_revoked_certificate_stops_signing_and_says_so(tmp_path, pki):
    from adapter.crypto import devpki

    metrics_port = free_port()
    cfg = write_config(tmp_path, pki, sim_port=free_port(), extra=f"""
[metrics]
address = "127.0.0.1:{metrics_port}"

[revocation]
[[revocation.anchors]]
anchor = "{pki}/ca.crt"
crl_files = ["{pki}/dev-ca.crl"]
""")
    assert cli(cfg, "init", "--demo", "--cases", "10").returncode == 0
    devpki.revoke(pki, "adapter", reason="keyCompromise")
    proc = start(cfg, "run", "--no-simulator")
    try:
        found = None
        for _ in range(600):
            try:
                body = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
                if "thads_signing_stopped 1.0" in body:
                    found = body
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            time.sleep(0.1)
        assert found, "thads_signing_stopped never became 1"
        ready = requests.get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5)
        assert ready.status_code == 503
        assert "was revoked on" in ready.json()["problems"]["signing_key"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-2000:]  # it could not do its job
    stopped = [ln for ln in err.splitlines() if "signing stopped" in ln]
    assert len(stopped) == 1 and "ERROR" in stopped[0] and "(keyCompromise)" in stopped[0]
    assert "Traceback" not in err
    s = load_settings(cfg)
    with make_engine(s.url(s.adapter.state_db)).connect() as c:
        assert c.execute(select(func.count()).select_from(Exchange)).scalar() == 0
    status = cli(cfg, "status", "--json")
    data = json.loads(status.stdout)
    assert data["signing"]["ok"] is False
    assert data["signing"]["reason"].startswith("signing stopped: our certificate")
    assert [st["kind"] for st in data["revocation"]] == ["crl-file"]
    assert data["revocation"][0]["reachable"] is True
    text = cli(cfg, "status").stdout
    assert "STOPPED: signing stopped: our certificate" in text
