"""Shared fixtures: a dev PKI, configurations, a real PostgreSQL server, a real simulator."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI") == "true"
# The CLI speaks the language LANGUAGE/LC_ALL/LC_MESSAGES/LANG ask for (adapter/i18n.py); the
# suite asserts its English whatever the shell running it speaks (tests/unit/cli/test_i18n*
# set the variables they test).
os.environ["LANGUAGE"] = "en"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    from adapter.crypto.devpki import create_dev_pki

    d = tmp_path_factory.mktemp("pki")
    create_dev_pki(d)
    return d


def write_config(dir_: Path, pki: Path, *, state_db: str | None = None,
                 source_db: str | None = None, sim_port: int = 8741, extra: str = "",
                 routes: str | None = None, sim_embedded: bool = False,
                 sign_workers: int = 0) -> Path:
    """A configuration in `dir_`. `sign_workers=1` is the production default (packets
    built and signed in a spawned worker process); 0 builds inline, for quick tests."""
    cfg = dir_ / "config" / "adapter.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    var = dir_ / "var"
    routes = routes if routes is not None else """
[[routes]]
name = "cases"
kind = "case"
recipient = "000.00.00.G22"
interval_seconds = 0.5
batch_size = 100

[[routes]]
name = "receipts"
kind = "receipt"
recipient = "000.00.00.G22"
interval_seconds = 0.5
batch_size = 100
"""
    cfg.write_text(f"""
[adapter]
organisation_id = "000.00.00.G15"
data_dir = "{var}"
state_db = "{state_db or f'sqlite:///{var}/state.db'}"

[source]
url = "{source_db or f'sqlite:///{var}/enforcement.db'}"
batch_size = 100

[signing]
key = "{pki}/adapter.key"
cert = "{pki}/adapter.crt"
trust_anchors = ["{pki}/ca.crt"]

[lgsp]
wsdl = "{ROOT}/schemas/wsdl/lgsp.wsdl"
endpoint = "http://127.0.0.1:{sim_port}/lgsp"
connect_timeout = 2
operation_timeout = 5
concurrency = 4
status_poll_seconds = 0.2

[retry]
max_attempts = 30
base_delay_seconds = 0.05
max_delay_seconds = 0.5
lease_seconds = 30
breaker_open_seconds = 1

[simulator]
embedded = {str(sim_embedded).lower()}
port = {sim_port}
db = "{var}/simulator.db"
trust_anchors = ["{pki}/ca.crt"]
court_key = "{pki}/court.key"
court_cert = "{pki}/court.crt"
tsa_cert = "{pki}/tsa.crt"
tsa_key = "{pki}/tsa.key"

[service]
sign_workers = {sign_workers}
log_level = "INFO"

[audit]
tsa_url = "http://127.0.0.1:{sim_port}/tsa"
tsa_ca_file = "{pki}/ca.crt"
{extra}
{routes}
""", encoding="utf-8")
    return cfg


AXIS_BTP, AXIS_HCM = "000.00.00.G15", "000.00.79.H29"


def axis_toml(pki: Path, port: int, system_id: str = "btp") -> str:
    """[axis] for `system_id`, and the simulated axis knowing both demo systems
    (btp: the ministry, hcm: a provincial office), all with the dev PKI's shared secret."""
    clients = "".join(f"""
[[simulator.axis_clients]]
system_id = "{sid}"
organisation_id = "{org}"
secret_file = "{pki}/axis.secret"
""" for sid, org in (("btp", AXIS_BTP), ("hcm", AXIS_HCM)))
    return f"""
[axis]
endpoint = "http://127.0.0.1:{port}/axis"
system_id = "{system_id}"
secret_file = "{pki}/axis.secret"
{clients}"""


def axis_systems_toml(pki: Path, orgs) -> str:
    """The simulated axis knows each organisation in `orgs` as system `s<org>`."""
    return "".join(f"""
[[simulator.axis_clients]]
system_id = "s{org}"
organisation_id = "{org}"
secret_file = "{pki}/axis.secret"
""" for org in orgs)


def peers_toml(pki: Path, orgs, *, address: bool = False) -> str:
    """One configured peer per organisation, trusted under the dev CA."""
    return "".join(f"""
[[peers]]
name = "agency {org}"
organisation_ids = ["{org}"]
trust_anchors = ["{pki}/ca.crt"]
""" + (f'address = "Địa chỉ {org}"\n' if address else "") for org in orgs)


def provincial_office(tmp_path: Path, pki: Path, port: int):
    """Settings of the HCM office that receives documents from the ministry (BTP) over the
    simulated axis on `port`, its demo enforcement schema created as `init --demo` does."""
    from adapter.config import load_settings
    from adapter.dbutil import make_engine
    from adapter.sources.models import SourceBase

    cfg = write_config(tmp_path, pki, sim_port=port, extra=axis_toml(pki, port, "hcm") + f"""
[[peers]]
name = "Cục Quản lý THADS"
organisation_ids = ["{AXIS_BTP}"]
trust_anchors = ["{pki}/ca.crt"]
""", routes="""
[[routes]]
name = "axis-in"
kind = "edoc"
direction = "in"
channel = "axis"
""")
    cfg.write_text(cfg.read_text().replace(f'organisation_id = "{AXIS_BTP}"',
                                           f'organisation_id = "{AXIS_HCM}"', 1),
                   encoding="utf-8")
    hcm = load_settings(cfg)
    SourceBase.metadata.create_all(make_engine(hcm.url(hcm.source.url)))
    return hcm


@pytest.fixture
def config_file(tmp_path, pki) -> Path:
    return write_config(tmp_path, pki, sim_port=free_port())


@pytest.fixture
def settings(config_file):
    from adapter.config import load_settings

    return load_settings(config_file)


# ---- PostgreSQL: a real server in a temporary directory -----------------------------------

def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if found:
        return str(found[-1])
    path = shutil.which(name)
    if path:
        return path
    raise FileNotFoundError(f"PostgreSQL's {name} not found: install postgresql (make test does)")


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr or r.stdout}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Start PostgreSQL for the session; yields a URL prefix without database name.

    As root (CI), the server runs as the `postgres` user in a directory it can reach
    (pytest's own temporary directory is private to root)."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="thads-pg-"))
    data = base / "data"
    port = free_port()
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        base.chmod(0o755)
        shutil.chown(base, "postgres")
    _run([*run_as, _pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
          "-E", "UTF8", "--locale=C.UTF-8"])
    log = base / "pg.log"
    stop = [*run_as, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
    # pg_ctl detaches the server from us: a guard in its own session stops it when this
    # process is gone however it ended (its end of the pipe closes even on SIGKILL)
    guard = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; sys.stdin.read(); "
         "subprocess.run(sys.argv[1:], capture_output=True)", *stop],
        stdin=subprocess.PIPE, start_new_session=True)
    _run([*run_as, _pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
          f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
          "-c max_connections=300", "start"])
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(stop, capture_output=True)
        guard.kill()
        guard.wait(10)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the session's server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.replace("postgresql+psycopg", "postgresql") + "/postgres",
                         autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{pg_server}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    """Each test using this runs on SQLite and on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return request.getfixturevalue("pg_url")


# ---- the simulator, in process, on a real port -----------------------------------------------

class ServedApp:
    """A WSGI app on a real loopback port, in a thread."""

    def __init__(self, server, url: str) -> None:
        self.server, self.url = server, url

    def close(self) -> None:
        self.server.stop()


def serve_wsgi(app, *, settings=None, port: int = 0, path: str = "/lgsp") -> ServedApp:
    from cheroot import wsgi

    from adapter.sim.server import make_server, url_of

    if settings is not None:
        server = make_server(settings, app, "127.0.0.1", port)
    else:
        server = wsgi.Server(("127.0.0.1", port), app, numthreads=2)
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    url = url_of(settings, server) if settings is not None else \
        f"http://127.0.0.1:{server.bind_addr[1]}{path}"
    for _ in range(100):  # until the port accepts connections
        try:
            socket.create_connection(server.bind_addr[:2], timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return ServedApp(server, url)


class RunningSim:
    def __init__(self, app, served: ServedApp) -> None:
        self.app, self.served, self.url = app, served, served.url

    def report(self) -> dict:
        return requests.get(self.url.replace("/lgsp", "/report"), timeout=10).json()

    def control(self, **faults) -> dict:
        r = requests.post(self.url.replace("/lgsp", "/control"), json=faults, timeout=10)
        r.raise_for_status()
        return r.json()

    def close(self) -> None:
        self.served.close()


@pytest.fixture
def sim(settings) -> Iterator[RunningSim]:
    from adapter.sim.server import build_app

    app = build_app(settings)
    running = RunningSim(app, serve_wsgi(app, settings=settings, port=settings.simulator.port))
    yield running
    running.close()


# ---- the state database alone, for engine and store tests -------------------------------

@pytest.fixture
def state_store(tmp_path):
    """An empty state database (SQLite in a temporary file): engine and store logic run
    against it without settings, a service or a simulator."""
    from adapter.dbutil import make_engine
    from adapter.store import ExchangeStore

    store = ExchangeStore(make_engine(f"sqlite:///{tmp_path}/state.db"), instance="test")
    store.create_schema()
    yield store
    store.engine.dispose()
