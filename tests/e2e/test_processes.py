"""The real command line in real processes: the demo, SIGKILL at random moments, SIGTERM,
and the single-instance rule on SQLite."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import requests
from sqlalchemy import func, select

from adapter.config import load_settings
from adapter.dbutil import make_engine
from adapter.store.models import Attempt, Exchange
from tests.conftest import free_port, write_config

pytestmark = pytest.mark.slow


def cli(cfg, *args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adapter", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=kw.pop("timeout", 300), **kw)


def start(cfg, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "adapter", "--config", str(cfg), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def sim_process(tmp_path, pki):
    port = free_port()
    cfg = write_config(tmp_path, pki, sim_port=port, sign_workers=1)
    proc = start(cfg, "sim")
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            requests.get(url + "/health", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.05)
    yield cfg, url
    proc.terminate()
    proc.wait(10)


def test_the_demo_command_delivers_everything_once(tmp_path, pki):
    cfg = write_config(tmp_path, pki, sim_port=free_port(), sim_embedded=True,
                       sign_workers=1)
    init = cli(cfg, "init", "--demo", "--cases", "150")
    assert init.returncode == 0, init.stderr
    assert "150 cases" in init.stdout
    run = cli(cfg, "run", "--until-idle")
    assert run.returncode == 0, run.stderr
    s = load_settings(cfg)
    with make_engine(s.url(s.adapter.state_db)).connect() as c:
        total, delivered = c.execute(select(func.count(), func.count().filter(
            Exchange.state == "delivered"))).one()
    assert total == delivered > 150
    assert f"simulator holds {total} packets" in run.stdout
    assert f"{total} submissions, 0 packets submitted more than once" in run.stdout
    # idempotent: a second init changes nothing, a second run sends nothing
    assert "already filled" in cli(cfg, "init", "--demo").stdout


def test_sigkill_at_random_moments_loses_nothing_and_duplicates_nothing(sim_process, pki):
    cfg, url = sim_process
    s = load_settings(cfg)
    assert cli(cfg, "init", "--demo", "--cases", "5030").returncode == 0  # ~10,000 packets
    requests.post(url + "/control", json={"lost_response_rate": 0.05, "latency_ms": 2},
                  timeout=5).raise_for_status()
    rng = random.Random(20261123)
    kills = 0
    for _ in range(12):
        proc = start(cfg, "run", "--no-simulator")
        time.sleep(rng.uniform(1.5, 4.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(10)
    assert kills >= 10
    requests.post(url + "/control", json={"lost_response_rate": 0}, timeout=5)
    final = cli(cfg, "run", "--until-idle", "--no-simulator")
    assert final.returncode == 0, final.stderr[-2000:]
    report = requests.get(url + "/report", timeout=10).json()
    with make_engine(s.url(s.adapter.state_db)).connect() as c:
        rows = c.execute(select(Exchange.packet_id, Exchange.state)).all()
    assert {st for _, st in rows} == {"delivered"}
    assert set(report["packets"]) == {pid for pid, _ in rows}  # the two stores agree
    assert report["accepted"] == len(rows) >= 10_000  # exactly one stored copy of each


def test_sigterm_stops_gracefully_with_nothing_left_sending(sim_process, pki):
    cfg, url = sim_process
    s = load_settings(cfg)
    assert cli(cfg, "init", "--demo", "--cases", "300").returncode == 0
    requests.post(url + "/control", json={"latency_ms": 20}, timeout=5)
    proc = start(cfg, "run", "--no-simulator")
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "SIGTERM received" in err
    with make_engine(s.url(s.adapter.state_db)).connect() as c:
        sending = c.execute(select(func.count()).where(Exchange.state == "sending")).scalar()
    assert sending == 0


def test_a_second_instance_on_sqlite_is_refused(sim_process, pki):
    cfg, _ = sim_process
    s = load_settings(cfg)
    assert cli(cfg, "init", "--demo", "--cases", "20").returncode == 0
    first = start(cfg, "run", "--no-simulator")
    lock = s.path(s.adapter.data_dir) / "state.db.lock"
    try:
        for _ in range(300):  # until the first instance holds the lock
            if lock.exists() and lock.read_text().strip() == f"pid {first.pid}":
                break
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.05)
        second = cli(cfg, "run", "--once", "--no-simulator", timeout=60)
        assert second.returncode == 2
        assert "another adapter service" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert "only one instance" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)
    assert first.returncode == 0


def test_status_reports_counts_and_platform_health(sim_process, pki):
    cfg, _ = sim_process
    assert cli(cfg, "init", "--demo", "--cases", "20").returncode == 0
    assert cli(cfg, "run", "--until-idle", "--no-simulator").returncode == 0
    out = cli(cfg, "status", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["platform"]["reachable"] is True
    assert {e["state"] for e in data["exchanges"]} == {"delivered"}
    ours = next(e for e in data["certificate_expiry"] if "our signing certificate" in e["role"])
    assert ours["days"] > 700 and ours["level"] == "ok"
    assert data["signing"] == {"ok": True, "reason": None}
    text = cli(cfg, "status").stdout
    assert "delivered" in text and "reachable" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_bad_configuration_exits_2_naming_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[adapter]\norganisation_id = "000.00.00.G15"\n[lgsp]\nendpiont = "x"\n')
    r = cli(bad, "status")
    assert r.returncode == 2
    assert str(bad) in r.stderr and "lgsp.endpiont" in r.stderr and "unknown key" in r.stderr


def test_python_m_adapter_and_console_script_agree(tmp_path):
    import shutil
    exe = shutil.which("thads-adapter", path=os.path.dirname(sys.executable))
    assert exe, "console script thads-adapter is installed with the package"
    r = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "packet" in r.stdout


@pytest.mark.postgres
def test_two_instances_on_postgresql_never_send_a_packet_twice(tmp_path, pki, pg_url):
    port = free_port()
    cfg = write_config(tmp_path, pki, sim_port=port, state_db=pg_url, sign_workers=1)
    sim = start(cfg, "sim")
    try:
        for _ in range(200):
            try:
                requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.05)
        assert cli(cfg, "init", "--demo", "--cases", "600").returncode == 0
        requests.post(f"http://127.0.0.1:{port}/control", json={"latency_ms": 3},
                      timeout=5).raise_for_status()
        first = start(cfg, "run", "--until-idle", "--no-simulator")
        second = start(cfg, "run", "--until-idle", "--no-simulator")
        out = [p.communicate(timeout=300) for p in (first, second)]
        assert first.returncode == 0, out[0][1][-2000:]
        assert second.returncode == 0, out[1][1][-2000:]
        report = requests.get(f"http://127.0.0.1:{port}/report", timeout=10).json()
    finally:
        sim.terminate()
        sim.wait(10)
    s = load_settings(cfg)
    with make_engine(s.url(s.adapter.state_db)).connect() as c:
        rows = c.execute(select(Exchange.packet_id, Exchange.state)).all()
        by_instance = dict(c.execute(
            select(Attempt.instance, func.count()).group_by(Attempt.instance)).all())
    assert {st for _, st in rows} == {"delivered"}
    assert report["accepted"] == len(rows) > 1000
    assert set(report["packets"].values()) == {1}  # no packet submitted twice
    assert len(by_instance) == 2, by_instance  # both instances really worked
