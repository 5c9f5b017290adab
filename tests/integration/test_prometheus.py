"""A real Prometheus server scrapes the adapter during a demo run; the shipped alert rules
pass promtool and fire on the series they are written for."""

from __future__ import annotations

import shutil
import signal
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

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus" / "alerts.yml"

pytestmark = pytest.mark.slow


def tool(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                   else None)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install the Debian package prometheus "
                                "(make test does)")
    return found


def test_the_alert_rules_pass_promtool():
    r = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 14 rules found" in r.stdout
    r = subprocess.run([tool("promtool"), "check", "config",
                        str(RULES.with_name("prometheus.yml"))], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


#: (alert, when, labels, summary) each alert of the issue must give for INPUT below
EXPECTED = [
    ("ThadsPlatformUnreachable", "6m", {"endpoint": "lgsp", "severity": "critical"},
     "lgsp unreachable from a for 5 minutes"),
    ("ThadsOldestPendingTooOld", "15m", {"route": "cases", "severity": "warning"},
     "Route cases: an exchange has waited 1h 6m 40s"),
    ("ThadsCertificateExpiresSoon", "1m",
     {"role": "our signing certificate", "subject": "CN=x", "severity": "warning"},
     "Certificate CN=x (our signing certificate) expires in 20 days"),
    ("ThadsCheckpointsUnstamped", "65m", {"severity": "warning"},
     "2 evidence checkpoints have waited over an hour for a timestamp"),
    ("ThadsBacklogGrowing", "65m", {"route": "cases", "severity": "warning"},
     "Backlog of route cases grew by 300 in 30 minutes"),
    ("ThadsQuarantineRate", "65m", {"route": "judgments", "severity": "warning"},
     "Route judgments quarantines 10% of what it receives"),
]
INPUT = [
    ('thads_circuit_breaker_state{instance="a",endpoint="lgsp",state="open"}', "1x10"),
    ('thads_oldest_pending_age_seconds{instance="a",route="cases"}', "4000x20"),
    ('thads_certificate_expiry_days{instance="a",role="our signing certificate",'
     'subject="CN=x"}', "20x5"),
    ('thads_checkpoints_unstamped{instance="a"}', "2x70"),
    ('thads_exchanges{instance="a",route="cases",state="pending"}', "0+10x70"),
    ('thads_inbound_received_total{instance="a",route="judgments"}', "0+100x70"),
    ('thads_inbound_quarantined_total{instance="a",route="judgments"}', "0+10x70"),
]


def test_the_alerts_fire_on_the_series_they_are_written_for(tmp_path):
    """promtool's rule tests: each alert of the issue, fed the series that should fire it
    (and the 7-day alert not yet at 20 days)."""
    import yaml

    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    descriptions = {r["alert"]: r["annotations"].get("description") for r in rules}
    cases = []
    for name, when, labels, summary in EXPECTED:
        annotations = {"summary": summary}
        if descriptions[name]:
            annotations["description"] = descriptions[name].replace(
                "{{ $labels.route }}", labels.get("route", ""))
        cases.append({"eval_time": when, "alertname": name, "exp_alerts": [
            {"exp_labels": {"instance": "a", **labels}, "exp_annotations": annotations}]})
    cases.append({"eval_time": "1m", "alertname": "ThadsCertificateExpiresVerySoon",
                  "exp_alerts": []})
    shutil.copy(RULES, tmp_path / "alerts.yml")
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump({
        "rule_files": ["alerts.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m",
                   "input_series": [{"series": k, "values": v} for k, v in INPUT],
                   "alert_rule_test": cases}]}))
    r = subprocess.run([tool("promtool"), "test", "rules", "alerts_test.yml"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def prometheus(tmp_path):
    """Start a Prometheus server on a free port; yields (its URL, the adapter's metrics port
    it scrapes every second)."""
    port, target = free_port(), free_port()
    d = tmp_path / "prometheus"
    d.mkdir()
    (d / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: thads-adapter
    static_configs:
      - targets: ["127.0.0.1:{target}"]
""")
    proc = subprocess.Popen([tool("prometheus"), f"--config.file={d / 'prometheus.yml'}",
                             f"--storage.tsdb.path={d / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(d / "log", "wb"))  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert proc.poll() is None, (d / "log").read_text()[-3000:]
            try:
                if requests.get(url + "/-/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        yield url, target
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def query(url: str, promql: str) -> list:
    r = requests.get(url + "/api/v1/query", params={"query": promql}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]


def test_prometheus_scrapes_a_demo_run_and_counts_what_the_state_database_holds(
        prometheus, tmp_path, pki):
    prom, metrics_port = prometheus
    cfg = write_config(tmp_path, pki, sim_port=free_port(), sim_embedded=True, sign_workers=1,
                       extra=f'[metrics]\naddress = "127.0.0.1:{metrics_port}"\n'
                             "totals_seconds = 0\n")
    init = subprocess.run([sys.executable, "-m", "adapter", "--config", str(cfg), "init",
                           "--demo", "--cases", "300"], capture_output=True, text=True,
                          timeout=300)
    assert init.returncode == 0, init.stderr
    s = load_settings(cfg)
    engine = make_engine(s.url(s.adapter.state_db))
    service = subprocess.Popen([sys.executable, "-m", "adapter", "--config", str(cfg), "run"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen_during_run = False
        delivered = 0
        for _ in range(1200):  # until the service has delivered everything
            assert service.poll() is None, service.communicate()[1][-3000:]
            with engine.connect() as c:
                total, delivered = c.execute(select(func.count(), func.count().filter(
                    Exchange.state == "delivered"))).one()
            if not seen_during_run and query(prom, 'up{job="thads-adapter"} == 1'):
                seen_during_run = True
            if total and total == delivered and seen_during_run:
                break
            time.sleep(0.1)
        assert seen_during_run and delivered > 300
        result: list = []
        for _ in range(600):  # the next scrapes carry the final figure
            result = query(prom, 'sum(thads_exchanges{state="delivered"})')
            if result and float(result[0]["value"][1]) == delivered:
                break
            time.sleep(0.1)
        assert result and float(result[0]["value"][1]) == delivered
        by_route = {r["metric"]["route"]: float(r["value"][1]) for r in query(
            prom, 'thads_exchanges{state="delivered"}')}
        with engine.connect() as c:
            assert by_route == {r: float(n) for r, n in c.execute(
                select(Exchange.route, func.count()).where(Exchange.state == "delivered")
                .group_by(Exchange.route))}
        assert query(prom, "sum(thads_delivery_latency_seconds_count)")
        assert not query(prom, 'ALERTS{alertstate="firing"}')  # a healthy demo alarms nobody
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            service.kill()
            service.communicate(timeout=10)
        engine.dispose()
    assert service.returncode == 0
