"""State database migrations, on SQLite and on the real PostgreSQL server: head equals the
models, a database of release 0.1.0 (tests/fixtures/state-db) upgrades with its exchanges,
evidence chain and checkpoints intact, and a database that is behind is refused in one line."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Index, MetaData, String, column, func, inspect, select, table
from sqlalchemy.engine import make_url

from adapter.cli.main import main
from adapter.dbutil import make_engine
from adapter.store import schema_version as sv
from adapter.store.evidence import EvidenceEntry, EvidenceHead
from adapter.store.repository import ExchangeStore, NewExchange
from tests.conftest import ROOT, _pg_bin, write_config

FIXTURES = ROOT / "tests" / "fixtures" / "state-db"
CERTS = FIXTURES / "certs"
#: what release 0.1.0 kept; its rows must come through an upgrade unchanged
KEPT = ("exchanges", "packets", "attempts", "operator_actions", "cursors", "breakers",
        "status_reports", "evidence", "evidence_blobs", "evidence_head", "evidence_archives",
        "checkpoints")


def plain(url: str) -> str:
    return url.replace("postgresql+psycopg", "postgresql")


def load_release(url: str) -> None:
    """Restore the release 0.1.0 dump of this dialect, as an operator would."""
    if url.startswith("sqlite"):
        with sqlite3.connect(make_url(url).database) as c:
            c.executescript((FIXTURES / "release-0.1.0.sqlite.sql").read_text("utf-8"))
        return
    subprocess.run([_pg_bin("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", plain(url), "-f",
                    str(FIXTURES / "release-0.1.0.postgres.sql")],
                   check=True, capture_output=True, text=True)


def fingerprint(engine, columns: dict[str, list[str]]) -> dict[str, tuple[int, str]]:
    """Row count and a hash of every row of each kept table, over release 0.1.0's columns."""
    out = {}
    with engine.connect() as c:
        for name, cols in columns.items():
            t = table(name, *map(column, cols))
            rows = c.execute(select(t).order_by(*t.c)).all()
            out[name] = (len(rows), hashlib.sha256(repr([tuple(r) for r in rows]).encode())
                         .hexdigest())
    return out


def release_columns(engine) -> dict[str, list[str]]:
    with engine.connect() as c:
        ins = inspect(c)
        return {t: [col["name"] for col in ins.get_columns(t)] for t in KEPT}


def cli(*args: str, capsys) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ---- head is the models --------------------------------------------------------------------

def schema_differences(engine, metadata: MetaData) -> list:
    with engine.connect() as c:
        ctx = MigrationContext.configure(c, opts={"compare_type": True,
                                                  "compare_server_default": True})
        return compare_metadata(ctx, metadata)


def test_upgrade_head_on_an_empty_database_gives_exactly_the_models(db_url):
    engine = make_engine(db_url)
    result = sv.upgrade_to_head(engine)
    assert (result.before, result.after, result.adopted) == (None, sv.head_revision(), False)
    assert schema_differences(engine, sv.state_metadata()) == []
    assert sv.current_revision(engine) == sv.head_revision()
    sv.require_current(engine)
    again = sv.upgrade_to_head(engine)
    assert (again.before, again.after) == (sv.head_revision(), sv.head_revision())
    assert "already at revision" in again.describe()


def test_the_schema_check_notices_a_model_change_without_its_migration(db_url):
    """The comparison above is strict: a changed type, nullability, new index or column
    each shows (so a model change without its revision fails the test above)."""
    engine = make_engine(db_url)
    sv.upgrade_to_head(engine)
    changed = MetaData()
    for t in sv.state_metadata().sorted_tables:
        t.to_metadata(changed)
    ex = changed.tables["exchanges"]
    ex.c.peer.nullable = False
    ex.c.route.type = String(65)
    Index("ix_exchanges_kind", ex.c.kind)
    changed.tables["cursors"].append_column(Column("note", String(3)))
    found = {d[0] if isinstance(d, tuple) else d[0][0]
             for d in schema_differences(engine, changed)}
    assert found == {"modify_nullable", "modify_type", "add_index", "add_column"}


# ---- the baseline is release 0.1.0 ---------------------------------------------------------

def sqlite_schema(path: str) -> list[tuple]:
    with sqlite3.connect(path) as c:
        return sorted(c.execute("SELECT type, name, sql FROM sqlite_master "
                                "WHERE tbl_name <> 'alembic_version'"))


def another_pg_database(server: str) -> str:
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(plain(server) + "/postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def pg_schema(url: str) -> list[str]:
    dump = subprocess.run([_pg_bin("pg_dump"), "--schema-only", "--no-owner",
                           "--exclude-table=alembic_version", plain(url)],
                          check=True, capture_output=True, text=True).stdout
    return [line for line in dump.splitlines()
            if line and not line.startswith(("--", "\\restrict", "\\unrestrict"))]


def test_the_baseline_revision_is_the_schema_release_0_1_0_created(db_url, request, tmp_path):
    release = db_url
    baseline = (f"sqlite:///{tmp_path}/baseline.db" if db_url.startswith("sqlite")
                else another_pg_database(request.getfixturevalue("pg_server")))
    load_release(release)
    with make_engine(baseline).begin() as c:
        from alembic import command

        command.upgrade(sv._config(c), sv.BASELINE)
    if db_url.startswith("sqlite"):
        assert sqlite_schema(make_url(baseline).database) == \
            sqlite_schema(make_url(release).database)
    else:  # every table, column, default, sequence, constraint and index, as pg_dump sees it
        assert pg_schema(baseline) == pg_schema(release)


# ---- a database of release 0.1.0 upgrades intact -------------------------------------------

def test_a_release_0_1_0_database_upgrades_with_exchanges_evidence_and_checkpoints_intact(
        db_url, tmp_path, capsys):
    load_release(db_url)
    engine = make_engine(db_url)
    assert sv.current_revision(engine) is None
    cols = release_columns(engine)
    before = fingerprint(engine, cols)
    assert before["exchanges"][0] == 30 and before["evidence"][0] == 75
    assert before["checkpoints"][0] == 3

    result = sv.upgrade_to_head(engine)

    assert result.adopted and result.created == [] and result.after == sv.head_revision()
    assert "release 0.1.0" in result.describe() and "stamped" in result.describe()
    assert sv.current_revision(engine) == sv.head_revision()
    sv.require_current(engine)
    assert fingerprint(engine, cols) == before
    assert schema_differences(engine, sv.state_metadata()) == []

    cfg = write_config(tmp_path, CERTS, state_db=db_url)
    code, out, err = cli("--config", str(cfg), "audit", "verify", "--json", capsys=capsys)
    report = json.loads(out)
    assert code == 0, err
    assert report["intact"] and report["problems"] == []
    assert (report["entries"], report["checkpoints"], report["unstamped"]) == (75, 3, 0)
    assert report["signatures_verified"] == 30
    assert not [n for n in report["notes"] if "not checked" in n]  # timestamps verified
    code, out, _ = cli("--config", str(cfg), "audit", "verify", capsys=capsys)
    assert code == 0 and "INTACT" in out


def test_the_upgraded_release_database_takes_new_exchanges_and_evidence(db_url):
    """Sequences and the chain go on where 0.1.0 left them (PostgreSQL: a serial left
    behind would collide with the restored ids)."""
    load_release(db_url)
    engine = make_engine(db_url)
    sv.upgrade_to_head(engine)
    with engine.connect() as c:
        top = c.execute(select(func.max(table("exchanges", column("id")).c.id))).scalar()
    store = ExchangeStore(engine)
    new = NewExchange(packet_id="00000000-0000-4000-8000-00000000beef", kind="case",
                      source_key="THA-MIGRATED", source_version=1, peer="000.00.00.G22",
                      payload=b"<p/>")
    assert store.add_exchanges("cases-to-lgsp", [new], None) == 1
    with engine.connect() as c:
        assert c.execute(select(func.max(table("exchanges", column("id")).c.id))).scalar() \
            == top + 1
        head = c.execute(select(EvidenceHead.seq)).scalar()
        assert c.execute(select(func.count()).select_from(EvidenceEntry)).scalar() == head > 75


# ---- adoption is never silent, and never wrong ----------------------------------------------

def test_a_release_database_without_its_checkpoints_table_is_adopted_and_completed(db_url):
    """0.1.0 created checkpoints only at the first checkpoint: `init` then an upgrade."""
    load_release(db_url)
    engine = make_engine(db_url)
    with engine.begin() as c:
        c.exec_driver_sql("DROP TABLE checkpoints")
    result = sv.upgrade_to_head(engine)
    assert result.adopted and result.created == ["checkpoints"]
    assert "created its missing tables: checkpoints" in result.describe()
    assert schema_differences(engine, sv.state_metadata()) == []


def test_a_database_unlike_release_0_1_0_is_refused_and_left_alone(db_url):
    load_release(db_url)
    engine = make_engine(db_url)
    with engine.begin() as c:
        c.exec_driver_sql("ALTER TABLE exchanges ADD COLUMN shipped_by_hand VARCHAR(5)")
        c.exec_driver_sql("DROP INDEX ix_exchanges_claim")
    with pytest.raises(sv.SchemaVersionError) as err:
        sv.upgrade_to_head(engine)
    msg = str(err.value)
    assert "\n" not in msg and "not those of release 0.1.0" in msg
    assert "exchanges: column shipped_by_hand not in release 0.1.0" in msg
    assert "ix_exchanges_claim" in msg
    assert sv.current_revision(engine) is None  # nothing stamped
    with engine.connect() as c:
        assert not inspect(c).has_table("alembic_version")


# ---- behind, ahead, unreachable --------------------------------------------------------------

def test_a_release_database_not_yet_upgraded_is_refused_in_one_line(db_url, tmp_path, capsys):
    load_release(db_url)
    engine = make_engine(db_url)
    with pytest.raises(sv.SchemaVersionError) as err:
        sv.require_current(engine)
    assert re.fullmatch(r"state database .* was created by release 0\.1\.0 and has no revision, "
                        r"this release needs \d+: run `thads-adapter db upgrade`", str(err.value))
    cfg = write_config(tmp_path, CERTS, state_db=db_url)
    code, out, _ = cli("--config", str(cfg), "db", "current", capsys=capsys)
    assert code == 0 and re.search(r"revision:\s+none", out)
    assert cli("--config", str(cfg), "db", "current", "--check", capsys=capsys)[0] == 1
    code, out, err = cli("--config", str(cfg), "db", "upgrade", capsys=capsys)
    assert code == 0, err
    assert "recognised a state database of release 0.1.0" in out
    code, out, _ = cli("--config", str(cfg), "db", "current", "--check", capsys=capsys)
    assert code == 0 and re.search(rf"revision:\s+{sv.head_revision()} \(this release's\)", out)


NEXT_REVISION = '''"""A test revision after the baseline: a column on exchanges, table copied."""
import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "{head}"
branch_labels = None
depends_on = None


def recreate() -> str:  # SQLite: copy the table, as a type or constraint change would
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    with op.batch_alter_table("exchanges", recreate=recreate()) as b:
        b.add_column(sa.Column("test_note", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exchanges", recreate=recreate()) as b:
        b.drop_column("test_note")
'''


@pytest.fixture
def add_revision(tmp_path, monkeypatch):
    """Makes this release's migrations plus one more revision the ones in force: a database
    at today's head is then one revision behind (and exchanges, referenced by four tables,
    is copied on SQLite). Returns today's head."""
    import shutil

    def add() -> str:
        old_head = sv.head_revision()
        migrations = tmp_path / "migrations"
        shutil.copytree(sv.MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
        (migrations / "versions" / "9001_test.py").write_text(
            NEXT_REVISION.format(head=old_head), encoding="utf-8")
        monkeypatch.setattr(sv, "MIGRATIONS", migrations)
        assert sv.head_revision() == "9001"
        return old_head

    return add


def test_a_database_one_revision_behind_is_refused_then_upgraded(db_url, tmp_path, capsys,
                                                                  add_revision):
    load_release(db_url)
    engine = make_engine(db_url)
    sv.upgrade_to_head(engine)
    cols = release_columns(engine)
    before = fingerprint(engine, cols)
    old_head = add_revision()
    with pytest.raises(sv.SchemaVersionError) as err:
        sv.require_current(engine)
    assert str(err.value) == (f"state database is at revision {old_head}, this release needs "
                              "9001: run `thads-adapter db upgrade`")
    cfg = write_config(tmp_path, CERTS, state_db=db_url)
    code, out, _ = cli("--config", str(cfg), "db", "current", capsys=capsys)
    assert code == 0 and re.search(rf"revision:\s+{old_head}\n", out)
    assert "this release needs 9001" in out
    code, out, _ = cli("--config", str(cfg), "db", "history", capsys=capsys)
    assert re.search(rf"^{old_head}  Baseline", out, re.M) and "9001 (head)" in out

    code, out, err = cli("--config", str(cfg), "db", "upgrade", capsys=capsys)
    assert code == 0, err
    assert f"upgraded from revision {old_head} to 9001" in out
    sv.require_current(engine)
    assert fingerprint(engine, cols) == before
    with engine.connect() as c:
        assert "test_note" in {col["name"] for col in inspect(c).get_columns("exchanges")}
    code, out, _ = cli("--config", str(cfg), "audit", "verify", capsys=capsys)
    assert code == 0 and "INTACT" in out


def test_a_database_upgraded_by_a_newer_release_is_refused(db_url):
    engine = make_engine(db_url)
    sv.upgrade_to_head(engine)
    with engine.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    for call in (sv.require_current, sv.upgrade_to_head):
        with pytest.raises(sv.SchemaVersionError, match="revision 9999, which this release "
                                                        "does not know"):
            call(engine)


def test_an_empty_database_is_refused_at_start_and_created_by_db_upgrade(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/var/state.db"
    with pytest.raises(sv.SchemaVersionError, match="has no tables yet.*`thads-adapter init`"):
        sv.require_current(make_engine(url))
    cfg = write_config(tmp_path, CERTS, state_db=url)
    code, out, _ = cli("--config", str(cfg), "db", "upgrade", capsys=capsys)
    assert code == 0 and f"created at revision {sv.head_revision()}" in out


def test_db_commands_on_an_unreachable_database_exit_2_with_one_line(tmp_path):
    cfg = write_config(tmp_path, CERTS, state_db="postgresql://adapter:secret@127.0.0.1:1/x")
    for action in ("upgrade", "current"):
        r = subprocess.run([sys.executable, "-m", "adapter", "--config", str(cfg), "db",
                            action], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert "state database postgresql://adapter:***@127.0.0.1:1/x" in r.stderr
        assert "secret" not in r.stderr + r.stdout


def test_the_migrations_ship_inside_the_package():
    """An installed adapter upgrades its database without the source tree."""
    files = {p.relative_to(sv.MIGRATIONS).as_posix() for p in Path(sv.MIGRATIONS).rglob("*")
             if "__pycache__" not in p.parts}
    assert {"env.py", "script.py.mako", "versions/0001_baseline.py"} <= files
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    assert '"adapter.store.migrations" = ["script.py.mako"' in pyproject


def test_a_draft_of_the_next_revision_has_the_models_changes(tmp_path, monkeypatch):
    import shutil

    migrations = tmp_path / "migrations"
    shutil.copytree(sv.MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(sv, "MIGRATIONS", migrations)
    head = sv.head_revision()
    number = int(head) + 1
    changed = MetaData()
    for t in sv.state_metadata().sorted_tables:
        t.to_metadata(changed)
    changed.tables["cursors"].append_column(Column("draft_note", String(30), nullable=True))
    monkeypatch.setattr(sv, "state_metadata", lambda: changed)
    path = sv.draft_revision("cursor notes")
    assert path.name == f"{number:04d}_cursor_notes.py" and path.parent.name == "versions"
    text = path.read_text("utf-8")
    assert f"down_revision = {head!r}" in text
    assert "batch_op.add_column(sa.Column('draft_note', sa.String(length=30)" in text
    assert sv.head_revision() == f"{number:04d}"
