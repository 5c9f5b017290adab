"""State database migrations, on SQLite and on the real PostgreSQL server: head equals the
models, a database of release 0.1.0 (tests/fixtures/state-db) upgrades with its exchanges,
evidence chain and checkpoints intact, and a database that is behind is refused in one line."""

from __future__ import annotations

import datetime as dt
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
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    column,
    func,
    insert,
    inspect,
    select,
    table,
    update,
)
from sqlalchemy.engine import make_url

from adapter.cli.main import main
from adapter.dbutil import make_engine
from adapter.store import schema_version as sv
from adapter.store.evidence import EvidenceEntry, EvidenceHead
from adapter.store.repository import ExchangeStore, NewExchange
from tests.conftest import ROOT, _pg_bin, free_port, write_config

FIXTURES = ROOT / "tests" / "fixtures" / "state-db"
CERTS = FIXTURES / "certs"
#: what release 0.1.0 kept; its rows must come through an upgrade unchanged
KEPT = ("exchanges", "packets", "attempts", "operator_actions", "cursors", "breakers",
        "status_reports", "evidence", "evidence_head", "evidence_archives", "checkpoints")


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
        rekeyed = "packet_id" not in {col["name"] for col in inspect(c).get_columns("packets")}
        for name, cols in columns.items():
            t = table(name, *map(column, cols))
            q = select(t).order_by(*t.c)
            if name == "packets" and rekeyed:  # 0004: keyed by exchange id, same rows
                x = table("exchanges", column("id"), column("packet_id"))
                p = table("packets", column("exchange_id"), column("sha256"), column("payload"))
                q = select(x.c.packet_id, p.c.sha256, p.c.payload).join(
                    x, x.c.id == p.c.exchange_id).order_by(x.c.packet_id, p.c.sha256,
                                                           p.c.payload)
            rows = c.execute(q).all()
            out[name] = (len(rows), hashlib.sha256(repr([tuple(r) for r in rows]).encode())
                         .hexdigest())
    return out


def release_columns(engine, tables=KEPT) -> dict[str, list[str]]:
    with engine.connect() as c:
        ins = inspect(c)
        return {t: [col["name"] for col in ins.get_columns(t)] for t in tables}


def evidence_blobs(engine) -> dict[str, bytes]:
    with engine.connect() as c:
        return {sha: bytes(content) for sha, content in c.execute(select(
            table("evidence_blobs", column("sha256"), column("content"))))}


def packet_bytes(engine) -> dict[str, set[bytes]]:
    out: dict[str, set[bytes]] = {}
    with engine.connect() as c:
        for sha, payload in c.execute(select(table("packets", column("sha256"),
                                                   column("payload")))):
            out.setdefault(sha, set()).add(bytes(payload))
    return out


def has_table(engine, name: str) -> bool:
    with engine.connect() as c:
        return inspect(c).has_table(name)


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
    blobs = evidence_blobs(engine)
    assert len(blobs) == 30

    result = sv.upgrade_to_head(engine)

    assert result.adopted and result.created == [] and result.after == sv.head_revision()
    assert "release 0.1.0" in result.describe() and "stamped" in result.describe()
    assert sv.current_revision(engine) == sv.head_revision()
    sv.require_current(engine)
    assert fingerprint(engine, cols) == before
    assert schema_differences(engine, sv.state_metadata()) == []
    # the second copy of the packet bytes is gone, the one left holds every blob's bytes
    assert not has_table(engine, "evidence_blobs")
    kept = packet_bytes(engine)
    assert all(kept.get(sha) == {content} for sha, content in blobs.items())
    with engine.connect() as c:  # no document was sent: no recipients; archives: none
        assert c.execute(select(func.count()).select_from(
            table("exchange_recipients"))).scalar() == 0

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
    assert store.add_exchanges("cases-to-lgsp", [new], None) == {new.packet_id}
    with engine.connect() as c:
        assert c.execute(select(func.max(table("exchanges", column("id")).c.id))).scalar() \
            == top + 1
        head = c.execute(select(EvidenceHead.seq)).scalar()
        assert c.execute(select(func.count()).select_from(EvidenceEntry)).scalar() == head > 75


# ---- revision 0002: recipients as rows, packet bytes stored once -----------------------------

SENDER = "000.00.00.G15"
FIVE = ["000.00.00.G22", "000.00.00.H41", "000.00.00.A01", "000.00.00.B02", "000.00.00.C03"]


def at_baseline(url: str):
    """A database at revision 0001 (release 0.1.0's schema, revision recorded)."""
    from alembic import command

    engine = make_engine(url)
    with engine.begin() as c:
        command.upgrade(sv._config(c), sv.BASELINE)
    return engine


def sent_document(recipients: list[str]) -> bytes:
    """An edXML document to `recipients`, as the adapter builds it (unsigned: the
    migration reads its addressees only)."""
    from adapter.edxml import build_document
    from adapter.edxml.model import EdocDocument, Organization
    from adapter.xml.safe import serialize

    return serialize(build_document(EdocDocument(
        sender=Organization(SENDER, "Bộ Tư pháp", "", "58-60 Trần Phú, Hà Nội"),
        recipients=[Organization(o, o, "", "Hà Nội") for o in recipients],
        document_id=f"{SENDER},2026/11/20,125/QĐ-CTHADS", code_number="125",
        code_notation="QĐ-CTHADS", place="Hà Nội", promulgation_date="2026/11/20",
        doc_type="1", type_detail="", type_name="Quyết định", subject="Quyết định số 125",
        content="Thi hành bản án", signer_competence="KT. CỤC TRƯỞNG",
        signer_position="Phó Cục trưởng", signer_name="Nguyễn Văn An", due_date="",
        priority="1", steering_type="", trace=[(SENDER, "2026/11/20 09:00:00")])))


T0 = dt.datetime(2026, 11, 20, 9, 0, 0)


def add_exchange(c, ex_id: int, *, kind: str = "edoc", direction: str = "out",
                 peer: str | None = None, payload: bytes | None = None) -> None:
    """An exchange as release 0.1.0 wrote it: recipients comma-joined, cut at 40."""
    pid = f"00000000-0000-4000-8000-{ex_id:012d}"
    c.execute(insert(table(
        "exchanges", *map(column, (
            "id", "packet_id", "kind", "route", "direction", "peer", "source_key",
            "source_version", "state", "attempts", "created_at", "updated_at",
            "attempts_at_replay")))).values(
        id=ex_id, packet_id=pid, kind=kind, route=f"{kind}-{direction}", direction=direction,
        peer=peer, source_key=f"K{ex_id}", source_version=1, state="sent", attempts=1,
        created_at=T0, updated_at=T0, attempts_at_replay=0))
    if payload is not None:
        c.execute(insert(table("packets", column("packet_id"), column("sha256"),
                               column("payload"))).values(
            packet_id=pid, sha256=hashlib.sha256(payload).hexdigest(), payload=payload))


def add_reports(c, ex_id: int, reports: list[tuple[str, str]]) -> None:
    t = table("status_reports", *map(column, ("exchange_id", "organ_id", "code",
                                                "received_at")))
    for minute, (organ, code) in enumerate(reports):
        c.execute(insert(t).values(exchange_id=ex_id, organ_id=organ, code=code,
                                   received_at=T0 + dt.timedelta(minutes=minute + 1)))


def recipient_rows(engine) -> dict[tuple[int, str], tuple]:
    t = table("exchange_recipients", column("exchange_id"), column("organ_id"),
              column("status"), column("status_at", DateTime), column("settled"))
    with engine.connect() as c:
        return {(r.exchange_id, r.organ_id): (r.status, r.status_at, r.settled)
                for r in c.execute(select(t))}


def test_a_document_sent_to_five_recipients_gets_five_recipient_rows(db_url):
    """0.1.0 kept "G22,H41,A0" of five addressees (peer cut at 40 characters): the rows
    come from the packet sent, each with its latest report and the first that settled it,
    as adapter.store.recipients would have written them."""
    engine = at_baseline(db_url)
    peer = ",".join(FIVE)[:40]
    assert peer.endswith(",000.00.00.A0")  # what release 0.1.0 stored
    with engine.begin() as c:
        add_exchange(c, 1, peer=peer, payload=sent_document(FIVE))
        add_exchange(c, 2, peer="000.00.00.G22,000.00.00.H41")  # not cut: peer suffices
        add_exchange(c, 3, peer="000.00.00.G22", direction="in")  # received: no rows
        add_exchange(c, 4, kind="case", peer="000.00.00.G22")
        add_reports(c, 1, [
            (FIVE[0], "01"), (FIVE[1], "01"), (FIVE[2], "01"),
            (FIVE[0], "03"),                      # accepted
            (FIVE[1], "02"), (FIVE[1], "05"),     # refused; a later 05 does not hide it
            (FIVE[2], "04"),                      # 04 settles as accepted, implying 03
            (FIVE[3], "03"), (FIVE[3], "06"),     # settled by 03, latest 06
            ("000.00.00.Z99", "03"),              # not addressed: no row
        ])                                        # FIVE[4]: no answer yet
        add_reports(c, 2, [("000.00.00.H41", "01")])

    result = sv.upgrade_to_head(engine)

    at = {n: T0 + dt.timedelta(minutes=n) for n in range(1, 11)}
    assert recipient_rows(engine) == {
        (1, FIVE[0]): ("03", at[4], "03"),
        (1, FIVE[1]): ("05", at[6], "02"),
        (1, FIVE[2]): ("04", at[7], "04"),
        (1, FIVE[3]): ("06", at[9], "03"),
        (1, FIVE[4]): (None, None, None),
        (2, "000.00.00.G22"): (None, None, None),
        (2, "000.00.00.H41"): ("01", at[1], None),
    }
    notes = " | ".join(result.notes)
    assert "7 recipients of 2 documents sent" in notes
    assert "1 documents had their recipients cut at 40 characters" in notes
    assert "1 ('000.00.00.A0')" in notes  # the fragment dropped, and where
    assert schema_differences(engine, sv.state_metadata()) == []


def test_a_cut_recipient_list_without_its_packet_keeps_the_complete_ids_and_says_so(db_url):
    engine = at_baseline(db_url)
    with engine.begin() as c:
        add_exchange(c, 1, peer=",".join(FIVE)[:40])  # no packet row to read the rest from
    result = sv.upgrade_to_head(engine)
    assert set(recipient_rows(engine)) == {(1, FIVE[0]), (1, FIVE[1])}
    assert any("packet is unreadable" in n and "dropped '000.00.00.A0'" in n
               for n in result.notes)


def database_picture(engine, url: str, tmp_path) -> tuple:
    """Everything an upgrade could change: the schema and every row of every table."""
    with engine.connect() as c:
        names = sorted(inspect(c).get_table_names())
    rows = fingerprint(engine, release_columns(engine, names))
    if url.startswith("sqlite"):
        return rows, sqlite_schema(make_url(url).database)
    return rows, pg_schema(url)


def test_an_evidence_blob_without_its_packet_stops_the_upgrade_and_changes_nothing(
        db_url, tmp_path):
    load_release(db_url)
    engine = make_engine(db_url)
    blobs_t = table("evidence_blobs", column("sha256"), column("content"))
    orphan, altered = "ab" * 32, sorted(evidence_blobs(engine))[0]
    with engine.begin() as c:
        c.execute(insert(blobs_t).values(sha256=orphan, content=b"<only here/>"))
        c.execute(update(blobs_t).where(blobs_t.c.sha256 == altered)
                  .values(content=b"<not the packet's bytes/>"))
    before = database_picture(engine, db_url, tmp_path)

    with pytest.raises(sv.SchemaVersionError) as err:
        sv.upgrade_to_head(engine)

    msg = str(err.value)
    assert "\n" not in msg and "nothing was changed" in msg
    assert "2 evidence blobs have no packet with the same SHA-256 and bytes" in msg
    assert orphan in msg and altered in msg
    assert database_picture(engine, db_url, tmp_path) == before  # not even stamped
    assert sv.current_revision(engine) is None


def test_downgrade_to_the_baseline_gives_back_the_release_database(db_url):
    """Downgrade is honest: 0.1.0's schema, and evidence_blobs refilled from packets with
    the bytes the log names (what 0.1.0 reads when it verifies)."""
    from alembic import command

    load_release(db_url)
    engine = make_engine(db_url)
    cols = release_columns(engine, (*KEPT, "evidence_blobs"))
    before = fingerprint(engine, cols)
    sv.upgrade_to_head(engine)
    with engine.begin() as c:
        command.downgrade(sv._config(c), sv.BASELINE)
    assert fingerprint(engine, cols) == before
    with engine.connect() as c:
        assert not inspect(c).has_table("exchange_recipients")
        assert "ix_packets_sha256" not in {i["name"] for i in inspect(c).get_indexes("packets")}
    assert sv.current_revision(engine) == sv.BASELINE
    assert sv.upgrade_to_head(engine).after == sv.head_revision()  # and up again


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
    assert re.search(r"^0001  Baseline", out, re.M) and re.search(rf"^{old_head}  ", out, re.M)
    assert "9001 (head)" in out

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
    with pytest.raises(sv.SchemaVersionError, match="does not exist yet.*`thads-adapter init`"):
        sv.require_current(make_engine(url))
    assert not (tmp_path / "var" / "state.db").exists()  # looking did not create it
    sqlite3.connect(tmp_path / "var" / "state.db").close()
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


# ---- who upgrades, who refuses: init, run, status ---------------------------------------------

def thads(cfg, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adapter", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=300)


def test_init_upgrades_to_head_and_says_what_it_did(db_url, tmp_path, capsys):
    cfg = write_config(tmp_path, CERTS, state_db=db_url)
    code, out, err = cli("--config", str(cfg), "init", capsys=capsys)
    assert code == 0, err
    assert f"created at revision {sv.head_revision()}" in out
    code, out, _ = cli("--config", str(cfg), "init", capsys=capsys)
    assert code == 0 and f"already at revision {sv.head_revision()} (head)" in out


def test_init_on_a_release_database_adopts_and_upgrades_it(db_url, tmp_path, capsys):
    load_release(db_url)
    cfg = write_config(tmp_path, CERTS, state_db=db_url)
    code, out, err = cli("--config", str(cfg), "init", capsys=capsys)
    assert code == 0, err
    assert "recognised a state database of release 0.1.0" in out
    assert f"then upgraded to {sv.head_revision()}" in out
    sv.require_current(make_engine(db_url))


def test_the_service_refuses_a_database_that_is_behind_before_anything_starts(db_url,
                                                                             tmp_path):
    """One line naming the command, exit 2, no traceback; the embedded simulator is not
    started (its log line would be a second line) and the database is left as it was."""
    load_release(db_url)
    engine = make_engine(db_url)
    cols = release_columns(engine, (*KEPT, "evidence_blobs"))
    before = fingerprint(engine, cols)
    cfg = write_config(tmp_path, CERTS, state_db=db_url, sim_port=free_port(),
                       sim_embedded=True)
    r = thads(cfg, "run", "--once")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "was created by release 0.1.0 and has no revision" in line
    assert line.endswith("run `thads-adapter db upgrade`")
    assert sv.current_revision(engine) is None and fingerprint(engine, cols) == before
    assert not has_table(engine, "exchange_recipients")


def test_the_service_refuses_a_missing_database_and_does_not_create_it(tmp_path):
    cfg = write_config(tmp_path, CERTS)
    r = thads(cfg, "run", "--once")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "does not exist yet" in line and "run `thads-adapter init`" in line
    assert not (tmp_path / "var" / "state.db").exists()


def test_status_reads_only_and_refuses_a_database_that_is_behind(db_url, tmp_path):
    load_release(db_url)
    engine = make_engine(db_url)
    cfg = write_config(tmp_path, CERTS, state_db=db_url, sim_port=free_port())
    r = thads(cfg, "status")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().endswith("run `thads-adapter db upgrade`")
    with engine.connect() as c:  # status created no table (it used to, with create_all)
        assert not {"alembic_version", "exchange_recipients"} & set(inspect(c).get_table_names())

    assert thads(cfg, "db", "upgrade").returncode == 0
    r = thads(cfg, "status", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["evidence"] == dict(
        entries=75, last_checkpoint=75, last_checkpoint_at="2026-12-01T00:18:44+00:00",
        unstamped=0)


# ---- revision 0004: packet bytes keyed by exchange id --------------------------------------

def test_0004_keys_packets_by_exchange_and_keeps_every_byte(db_url):
    """Packets written under 0003 (keyed by packet id) are found by their exchange after the
    upgrade, bytes and digest unchanged, and the two random-position indexes are gone."""
    from alembic import command

    engine = make_engine(db_url)
    with engine.begin() as c:
        command.upgrade(sv._config(c), "0003")
        for ex_id in (7, 3, 11):  # inserted out of order: the copy goes in exchange order
            add_exchange(c, ex_id, kind="case", payload=f"<p n='{ex_id}'/>".encode())
        add_exchange(c, 5, kind="case")  # an exchange without bytes (inbound, not yet fetched)
    sv.upgrade_to_head(engine)
    with engine.connect() as c:
        rows = c.execute(select(table("packets", column("exchange_id"), column("sha256"),
                                      column("payload")))).all()
        indexes = {ix["name"] for t in ("packets", "evidence")
                   for ix in inspect(c).get_indexes(t)}
    assert sorted((r[0], bytes(r[2])) for r in rows) == [
        (n, f"<p n='{n}'/>".encode()) for n in (3, 7, 11)]
    assert all(r[1] == hashlib.sha256(bytes(r[2])).hexdigest() for r in rows)
    assert not {"ix_packets_sha256", "ix_evidence_packet_id"} & indexes
    assert schema_differences(engine, sv.state_metadata()) == []


def test_0004_carries_the_packet_grants_over_to_the_rebuilt_table(pg_url):
    """PostgreSQL: the operator role's column grant on the old table (docs/operator-guide.md)
    holds on the new one, `packet_id` becoming `exchange_id`; the bytes stay out of reach."""
    import uuid

    from alembic import command

    role = f"op_{uuid.uuid4().hex[:10]}"
    engine = make_engine(pg_url)
    with engine.begin() as c:
        command.upgrade(sv._config(c), "0003")
        c.exec_driver_sql(f"CREATE ROLE {role}")
        c.exec_driver_sql(f"GRANT SELECT (packet_id, sha256) ON packets TO {role}")
    sv.upgrade_to_head(engine)
    with engine.connect() as c:
        def may(col: str) -> bool:
            return c.exec_driver_sql(
                f"SELECT has_column_privilege('{role}', 'packets', '{col}', 'SELECT')").scalar()

        assert (may("exchange_id"), may("sha256"), may("payload")) == (True, True, False)
        names = {r[0] for r in c.exec_driver_sql(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'packets'::regclass")}
    assert names == {"packets_pkey", "packets_exchange_id_fkey"}
