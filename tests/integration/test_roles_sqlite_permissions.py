"""What the operator guide says about who can read an SQLite state database, run for real:
the CLI as another user, with and without the operators' group.

Needs root, to run the CLI as `nobody` (setpriv); CI runs as root."""

import grp
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from adapter.cli.main import main
from adapter.dbutil import make_engine
from tests.conftest import free_port, write_config

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="running the CLI as another user needs root")


@pytest.fixture(autouse=True, scope="module")
def _checkout_traversable_by_others():
    """`nobody` runs this checkout's CLI, so it must reach it. A clone made in a private
    directory (`mktemp -d` is 0700) is unreachable: for the length of these tests, each
    directory above the checkout that others cannot traverse gets o+x (traverse, not list),
    and is put back after."""
    repo = Path(__file__).resolve().parents[2]
    opened: list[tuple[Path, int]] = []
    for d in (repo, *repo.parents):
        mode = stat.S_IMODE(d.stat().st_mode)
        if not mode & stat.S_IXOTH:
            d.chmod(mode | stat.S_IXOTH)
            opened.append((d, mode))
    try:
        yield
    finally:
        for d, mode in opened:
            d.chmod(mode)


def _operators_gid() -> int:
    """A group standing in for `thads-operators` (tests do not create groups)."""
    try:
        return grp.getgrnam("users").gr_gid
    except KeyError:
        return next(g.gr_gid for g in grp.getgrall() if g.gr_gid not in (0, NOBODY))


@pytest.fixture
def install(pki):
    """A world-traversable install: config and dev PKI readable, var/ as the guide says."""
    base = Path(tempfile.mkdtemp(prefix="thads-perm-"))
    base.chmod(0o755)
    certs = base / "pki"
    shutil.copytree(pki, certs)
    for f in certs.iterdir():
        f.chmod(0o644)
    certs.chmod(0o755)
    cfg = write_config(base, certs, sim_port=free_port())
    cfg.parent.chmod(0o755)
    cfg.chmod(0o644)
    yield base, cfg
    shutil.rmtree(base, ignore_errors=True)


def _as(uid: int, groups: list[int], *argv: str) -> subprocess.CompletedProcess:
    opts = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", opts, "--", sys.executable, *argv],
        capture_output=True, text=True, cwd="/", timeout=120)


def _cli(uid: int, groups: list[int], cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return _as(uid, groups, "-m", "adapter", "--config", str(cfg), *args)


def _init_as_service(cfg: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        assert main(["--config", str(cfg), "init"]) == 0
    finally:
        os.umask(old)


def test_the_old_advice_0640_gives_operators_one_line_not_a_traceback(install, capsys):
    """0640 owned by the service user and another group: an operator outside that group
    (or inside it, for SQLite must write its -shm file) gets one line naming the file."""
    base, cfg = install
    var = base / "var"
    var.mkdir(mode=0o755)
    _init_as_service(cfg, 0o022)
    db = var / "state.db"
    os.chown(db, 0, grp.getgrnam("adm").gr_gid if _has_group("adm") else 0)
    db.chmod(0o640)
    for groups in ([], [db.stat().st_gid]):
        r = _cli(NOBODY, groups, cfg, "exchanges", "list")
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert str(db) in r.stderr and "permission denied" in r.stderr
        assert "needs read and write permission" in r.stderr


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def test_the_guides_layout_lets_operators_work_and_read_every_packet(install, capsys):
    """The guide's layout: var/ 2770 service:thads-operators, the database 0660 (the
    service's umask 0007). Operators in the group run the CLI while the service holds the
    database open; they can read every packet directly too (auditors in effect, as the
    guide says); anyone else gets one line."""
    base, cfg = install
    operators = _operators_gid()
    var = base / "var"
    var.mkdir()
    os.chown(var, 0, operators)
    var.chmod(0o2770)
    _init_as_service(cfg, 0o007)
    db = var / "state.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o660 and db.stat().st_gid == operators
    with sqlite3.connect(db) as c:  # a packet, as the service would have stored it
        c.execute("INSERT INTO exchanges (packet_id, kind, route, direction, source_key, "
                  "source_version, state, attempts, created_at, updated_at, "
                  "attempts_at_replay) VALUES ('p-1', 'case', 'cases', 'out', 'K-1', 1, "
                  "'pending', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 0)")
        c.execute("INSERT INTO packets (exchange_id, sha256, payload) VALUES "
                  "(1, 'x', CAST('<Case><CitizenId>079203001234</CitizenId></Case>' "
                  "AS BLOB))")
    service = make_engine(f"sqlite:///{db}")
    held = service.connect()  # the running service: -wal and -shm exist, made by it
    try:
        held.exec_driver_sql("SELECT count(*) FROM exchanges").all()
        held.commit()  # no lock held, the connection (and its -wal, -shm) stays
        for side in ("state.db-wal", "state.db-shm"):
            st = (var / side).stat()
            assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == operators, side
        r = _cli(NOBODY, [operators], cfg, "exchanges", "list")
        assert r.returncode == 0, r.stderr
        assert "K-1" in r.stdout and "079203001234" not in r.stdout
        r = _as(NOBODY, [operators], "-c", (
            "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("
            "'SELECT payload FROM packets').fetchone()[0].decode())"), str(db))
        assert r.returncode == 0 and "079203001234" in r.stdout, r.stderr
        r = _cli(NOBODY, [], cfg, "exchanges", "list")
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "permission denied" in r.stderr and str(var) in r.stderr
    finally:
        held.close()
        service.dispose()
