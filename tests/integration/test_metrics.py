"""The service's metrics endpoint: figures equal to the state database's, health checks,
bad addresses refused at start, and per-scrape queries that never scan the history."""

from __future__ import annotations

import socket
import threading

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text

from adapter.config import load_settings
from adapter.dbutil import make_engine
from adapter.errors import ConfigError
from adapter.service.endpoint import Endpoint, MetricsAddressError
from adapter.sources.synth import generate
from adapter.store import metrics_queries as mq
from adapter.store.models import Attempt, Exchange
from tests.conftest import free_port, write_config


def samples(body: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels) -> float:
    return found[(name, tuple(sorted(labels.items())))]


# ---- the address ---------------------------------------------------------------------------

@pytest.mark.parametrize("address, reason", [
    ("localhost", "is not host:port"),
    ("127.0.0.1:99999", "port '99999' is not a number from 0 to 65535"),
    ("127.0.0.1:http", "port 'http' is not a number"),
    ("::1:9741", "write an IPv6 address in brackets"),
    ("[::1:9741", "an IPv6 address goes in brackets"),
    ("[nonsense]:9741", "is not an IPv6 address"),
])
def test_an_unparseable_address_fails_at_load_naming_the_key(tmp_path, pki, address, reason):
    cfg = write_config(tmp_path, pki, extra=f'[metrics]\naddress = "{address}"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert err.value.key == "metrics.address"
    assert reason in err.value.reason and "\n" not in str(err.value)


def test_a_port_in_use_is_one_line_naming_the_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(MetricsAddressError) as err:
            Endpoint(f"127.0.0.1:{port}")
    assert str(err.value) == (f"metrics address 127.0.0.1:{port}: port {port} on 127.0.0.1 is "
                              "already in use by another process; choose another [metrics] "
                              "address")


def test_an_address_not_of_this_machine_is_refused():
    with pytest.raises(MetricsAddressError, match="192.0.2.1 is not an address of this machine"):
        Endpoint(f"192.0.2.1:{free_port()}")  # TEST-NET-1: never local; nothing is sent


# ---- the figures -------------------------------------------------------------------------

@pytest.fixture
def config_file(tmp_path, pki):
    return write_config(tmp_path, pki, sim_port=free_port(),
                        extra=f'[metrics]\naddress = "127.0.0.1:{free_port()}"\n'
                              "totals_seconds = 0\n")


def test_metrics_and_health_of_a_run_equal_the_state_database(settings, sim):
    from adapter.service import runner

    generate(make_engine(settings.url(settings.source.url)), cases=40)
    engine = make_engine(settings.url(settings.adapter.state_db))
    from adapter.store.schema_version import upgrade_to_head
    upgrade_to_head(engine)
    endpoint = Endpoint(settings.metrics.address)
    url = endpoint.url
    try:
        result = runner.run_service(settings, until_idle=True, endpoint=endpoint)
        assert result.code == 0
        # the endpoint lives as long as the CLI keeps it: read what the run left
        body = endpoint.render()[0].decode()
    finally:
        endpoint.close()
    found = samples(body)
    with engine.connect() as c:
        by_route = dict(c.execute(select(Exchange.route, func.count())
                                  .where(Exchange.state == "delivered")
                                  .group_by(Exchange.route)).all())
        attempts = dict(c.execute(select(Attempt.outcome, func.count())
                                  .group_by(Attempt.outcome)).all())
    assert by_route and all(n > 0 for n in by_route.values())
    for route, n in by_route.items():
        assert value(found, "thads_exchanges", route=route, state="delivered") == n
        assert value(found, "thads_exchanges", route=route, state="pending") == 0
        assert value(found, "thads_oldest_pending_age_seconds", route=route) == 0
        assert value(found, "thads_delivery_latency_seconds_count", route=route) == n
        assert value(found, "thads_route_last_success_timestamp_seconds", route=route,
                     job="deliver") > 0
    counted = sum(v for (name, _), v in found.items() if name == "thads_attempts_total")
    assert counted == sum(attempts.values())
    assert value(found, "thads_state_db_up") == 1
    assert value(found, "thads_circuit_breaker_state", endpoint="lgsp", state="closed") == 1
    assert value(found, "thads_signing_stopped") == 0
    assert value(found, "thads_evidence_entries_since_checkpoint") == 0  # the run ends signed
    ours = [v for (name, labels), v in found.items() if name == "thads_certificate_expiry_days"
            and ("role", "our signing certificate") in labels]
    assert ours and ours[0] > 700
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/healthz", timeout=2)  # closed with the run: nothing left


def test_readyz_names_what_is_not_ready(settings, sim):
    """Healthz while alive; readyz 503 until the scheduler dispatches, then 200."""
    from adapter.engine.context import Context
    from adapter.service.metrics import ServiceMetrics
    from adapter.service.runner import Service, _readiness

    ctx = Context(settings)
    ctx.store.create_schema()
    service = Service(settings, ctx)
    endpoint = Endpoint(settings.metrics.address)
    endpoint.render = ServiceMetrics(settings, ctx).render
    endpoint.health.checks.update(_readiness(service))
    endpoint.start()
    thread = threading.Thread(target=service.run, daemon=True)
    try:
        assert requests.get(endpoint.url + "/healthz", timeout=5).status_code == 200
        r = requests.get(endpoint.url + "/readyz", timeout=5)
        assert r.status_code == 503
        assert r.json()["problems"] == {"scheduler": "the scheduler is not running",
                                        "signing_key": "the signing key is not loaded yet"}
        ctx.warm_up()
        thread.start()
        for _ in range(600):
            r = requests.get(endpoint.url + "/readyz", timeout=5)
            if r.status_code == 200:
                break
            threading.Event().wait(0.05)
        assert r.status_code == 200 and r.json() == {"ready": True, "problems": {}}
        assert requests.get(endpoint.url + "/nothing", timeout=5).status_code == 404
    finally:
        ctx.stopping.set()
        if thread.is_alive():
            thread.join(30)
        endpoint.close()
        ctx.close()


def test_a_state_database_that_cannot_be_read_is_a_figure_not_a_failed_scrape(settings):
    from adapter.engine.context import Context
    from adapter.service.metrics import ServiceMetrics

    ctx = Context(settings)  # no tables: every query fails
    try:
        found = samples(ServiceMetrics(settings, ctx).render()[0].decode())
    finally:
        ctx.close()
    assert value(found, "thads_state_db_up") == 0
    assert value(found, "thads_signing_stopped") == 0


# ---- what a scrape costs --------------------------------------------------------------------

def test_per_scrape_queries_search_an_index_and_never_scan_the_table(state_store):
    """EXPLAIN QUERY PLAN on SQLite: each per-scrape statement is an index search on
    (route, state), reading only that state's entries, never a scan of the exchanges."""
    engine = state_store.engine
    statements = [mq.count_statement("cases", "pending"), mq.min_id_statement("cases", "sent")]
    with engine.connect() as c:
        for stmt in statements:
            sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
            plan = " | ".join(r[-1] for r in c.execute(text("EXPLAIN QUERY PLAN " + sql)))
            assert "SEARCH exchanges USING COVERING INDEX" in plan, plan
            assert "(route=? AND state=?)" in plan, plan
            assert "SCAN exchanges" not in plan, plan
