"""Inbound judgments from the platform: verified, validated, imported once, acknowledged;
every kind of bad packet quarantined with its own reason and nothing partial imported."""

import copy
import datetime as dt
import hashlib
import io
import zipfile

import pytest
import requests
from lxml import etree
from sqlalchemy import func, select

from adapter.config import load_settings
from adapter.crypto import PacketSigner, load_identity
from adapter.dbutil import make_engine
from adapter.engine.context import Context
from adapter.engine.inbound import InboundEngine
from adapter.mapping import PacketHeader, packet_id
from adapter.sim.court import CourtDesk
from adapter.sources.models import JudgmentRow, PartyRow, SourceBase
from adapter.store.models import Exchange
from adapter.xml.safe import parse_untrusted, serialize
from tests.conftest import write_config
from tests.helpers import N, sample_record

COURT = "000.00.00.T01"
ME = "000.00.00.G15"


def inbound_config(tmp_path, pki, port, *, policy="reject", max_bytes=16_777_216,
                   state_db=None, source_db=None, signers=""):
    return write_config(tmp_path, pki, sim_port=port, state_db=state_db, source_db=source_db,
                        routes="""
[[routes]]
name = "judgments"
kind = "judgment"
direction = "in"
interval_seconds = 0.5
batch_size = 50
""", extra=f"""
[inbound]
max_packet_bytes = {max_bytes}

[[peers]]
name = "courts"
organisation_ids = ["{COURT}"]
trust_anchors = ["{pki}/ca.crt"]
signature_policy = "{policy}"
{signers}
""")


@pytest.fixture
def settings(tmp_path, pki):
    from tests.conftest import free_port
    return load_settings(inbound_config(tmp_path, pki, free_port()))


def demo_schema(settings) -> None:
    """The enforcement database's tables, as `init --demo` creates them: the service never
    creates tables there."""
    eng = make_engine(settings.url(settings.source.url))
    SourceBase.metadata.create_all(eng)
    eng.dispose()


@pytest.fixture
def engine(settings, sim):
    demo_schema(settings)
    ctx = Context(settings)
    ctx.store.create_schema()
    yield InboundEngine(ctx)
    ctx.close()


@pytest.fixture(scope="module")
def court(pki):
    return CourtDesk(PacketSigner(load_identity(pki / "court.key", pki / "court.crt")),
                     COURT, ME)


def drain(engine) -> None:
    route = engine.ctx.settings.route("judgments")
    for _ in range(20):
        stats = engine.pull(route)
        if not stats.received and not stats.acknowledged:
            return


def outbox(sim) -> list[dict]:
    return requests.get(sim.url.replace("/lgsp", "/outbox"), timeout=10).json()


def put_raw(sim, pid: str, data: bytes, sender: str = COURT) -> None:
    requests.post(sim.url.replace("/lgsp", "/outbox/raw"), data=data, timeout=10,
                  params={"packet_id": pid, "sender": sender, "recipient": ME}
                  ).raise_for_status()


def judgments_in_db(settings) -> int:
    engine = make_engine(settings.url(settings.source.url))
    SourceBase.metadata.create_all(engine)
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(JudgmentRow)).scalar()


def test_judgments_are_verified_imported_and_acknowledged(settings, sim, engine):
    made = requests.post(sim.url.replace("/lgsp", "/outbox/judgments"),
                         json={"count": 20, "start": 1000}, timeout=60).json()["packet_ids"]
    drain(engine)
    with make_engine(settings.url(settings.source.url)).connect() as c:
        rows = c.execute(select(JudgmentRow)).all()
        parties = c.execute(select(func.count()).select_from(PartyRow)).scalar()
    assert len(rows) == 20 and parties == 40
    for r in rows:
        j = r[0] if hasattr(r, "__getitem__") and not hasattr(r, "document") else r
        doc = j.document
        assert doc.startswith(b"%PDF-") and hashlib.sha256(doc).hexdigest() == j.document_sha256
    box = outbox(sim)
    assert {b["packet_id"] for b in box} == set(made)
    assert {b["ack_outcome"] for b in box} == {"accepted"}
    with engine.ctx.state_engine.connect() as c:
        got = c.execute(select(Exchange.state, Exchange.signature, Exchange.receipt_status,
                               Exchange.direction)).all()
    assert set(got) == {("delivered", "valid", "ack:accepted", "in")}


def test_100_judgments_delivered_twice_are_imported_once(settings, sim, engine):
    requests.post(sim.url.replace("/lgsp", "/outbox/judgments"),
                  json={"count": 100, "start": 2000}, timeout=120).raise_for_status()
    drain(engine)
    assert judgments_in_db(settings) == 100
    assert requests.post(sim.url.replace("/lgsp", "/outbox/redeliver"),
                         timeout=10).json()["redelivered"] == 100
    drain(engine)
    assert judgments_in_db(settings) == 100
    box = outbox(sim)
    assert {(b["acks"], b["fetches"]) for b in box} == {(2, 1)}  # answered, not re-imported
    with engine.ctx.state_engine.connect() as c:
        assert c.execute(select(func.count()).select_from(Exchange)).scalar() == 100


def test_a_crash_between_storing_and_importing_loses_nothing(settings, sim, engine, court):
    (pid, data), = court.judgments(1, start=3000)
    put_raw(sim, pid, data)
    engine.ctx.store.add_inbound("judgments", packet_id=pid, kind="judgment", peer=COURT,
                                 payload=data)  # stored, then the process died
    drain(engine)
    assert judgments_in_db(settings) == 1
    assert outbox(sim)[0]["ack_outcome"] == "accepted"


# ---- bad input: each refused with its own reason ---------------------------------------

def _signed(court, mutate=None, *, key="BA-TEST-1", version=1, signer=None):
    rec = sample_record("judgment")
    rec["judgment_code"] = key
    pid = packet_id("judgment", key, version)
    header = PacketHeader(pid, key, version, COURT, ME, dt.datetime.now(dt.UTC))
    root = court.mapping.to_xml(copy.deepcopy(rec), header)
    if mutate:
        mutate(root)
    return pid, serialize((signer or court.signer).sign(root))


def _xxe(court):
    return "00000000-0000-0000-0000-00000000a001", (
        b'<?xml version="1.0"?><!DOCTYPE j [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Judgment xmlns="urn:thads-adapter:exchange:1">&x;</Judgment>')


def _laughs(court):
    return "00000000-0000-0000-0000-00000000a002", (
        b'<?xml version="1.0"?><!DOCTYPE j [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        b'<Judgment xmlns="urn:thads-adapter:exchange:1">&c;</Judgment>')


def _doctype(court):
    pid, data = _signed(court, key="BA-DOCTYPE")
    return pid, data.replace(b"?>", b'?><!DOCTYPE Judgment SYSTEM "http://x/j.dtd">', 1)


def _bad_utf8(court):
    pid, data = _signed(court, key="BA-UTF8")
    return pid, data.replace("Tòa".encode(), b"T\xf2a", 1)


def _truncated(court):
    pid, data = _signed(court, key="BA-TRUNC")
    return pid, data[: len(data) // 2]


def _wrapped(court):
    pid, data = _signed(court, key="BA-WRAP")
    forged = court.mapping.to_xml(sample_record("judgment"), PacketHeader(
        pid, "BA-WRAP", 1, COURT, ME, dt.datetime(2026, 1, 1)))
    forged.append(parse_untrusted(data))
    return pid, serialize(forged)


def _same_id(court):
    pid, data = _signed(court, key="BA-SAMEID")
    root = parse_untrusted(data)
    evil = copy.deepcopy(root)
    evil.remove(evil[-1])
    root.find(f"{N}Parties").append(evil)
    return pid, serialize(root)


def _untrusted(court, pki):
    rogue = PacketSigner(load_identity(pki / "untrusted" / "signer.key",
                                       pki / "untrusted" / "signer.crt"))
    return _signed(court, key="BA-ROGUE", signer=rogue)


def _schema_invalid(court):
    return _signed(court, key="BA-SCHEMA",
                   mutate=lambda r: setattr(r.find(f"{N}CaseType"), "text", "dan_su"))


def _unsigned(court):
    rec = sample_record("judgment")
    rec["judgment_code"] = "BA-UNSIGNED"
    pid = packet_id("judgment", "BA-UNSIGNED", 1)
    root = court.mapping.to_xml(rec, PacketHeader(pid, "BA-UNSIGNED", 1, COURT, ME,
                                                  dt.datetime(2026, 1, 1)))
    return pid, serialize(root)


def _tampered(court):
    pid, data = _signed(court, key="BA-TAMPER")
    return pid, data.replace("Buộc bị đơn".encode(), "Buộc nguyên đơn".encode(), 1)


def _bad_digest(court):
    return _signed(court, key="BA-DIGEST", mutate=lambda r: setattr(
        r.find(f"{N}Document/{N}Sha256"), "text", "0" * 64))


def _zip(court):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ban-an.pdf", b"%PDF-1.4 inside a zip")
    blob = buf.getvalue()

    def put_zip(root):
        import base64
        root.find(f"{N}Document/{N}Content").text = base64.b64encode(blob).decode()
        root.find(f"{N}Document/{N}Sha256").text = hashlib.sha256(blob).hexdigest()
    return _signed(court, key="BA-ZIP", mutate=put_zip)


def _wrong_recipient(court):
    def readdress(root):
        root.find(f"{N}Header/{N}Recipient").text = "000.00.00.G22"
    return _signed(court, key="BA-ELSEWHERE", mutate=readdress)


BAD = {
    "xxe": (_xxe, "DOCTYPE declarations are refused"),
    "entity-expansion": (_laughs, "DOCTYPE declarations are refused"),
    "doctype": (_doctype, "DOCTYPE declarations are refused"),
    "invalid-utf8": (_bad_utf8, "not well-formed XML"),
    "truncated": (_truncated, "not well-formed XML"),
    "wrapping": (_wrapped, "signature wrapping refused"),
    "duplicate-id": (_same_id, "ambiguous reference"),
    "untrusted-key": (_untrusted, "is not trusted"),
    "unsigned": (_unsigned, "packet is not signed"),
    "tampered": (_tampered, "changed after signing"),
    "schema-invalid": (_schema_invalid, "schema invalid"),
    "pdf-digest": (_bad_digest, "does not match Document/Sha256"),
    "zip-not-pdf": (_zip, "is a ZIP archive"),
    "wrong-recipient": (_wrong_recipient, "not 000.00.00.G15"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_packet_is_quarantined_with_its_reason(case, settings, sim, engine, court, pki):
    make, reason = BAD[case]
    pid, data = make(court, pki) if case == "untrusted-key" else make(court)
    put_raw(sim, pid, data)
    drain(engine)
    assert judgments_in_db(settings) == 0  # nothing partial reached the enforcement DB
    with engine.ctx.state_engine.connect() as c:
        state, error = c.execute(select(Exchange.state, Exchange.last_error)
                                 .where(Exchange.packet_id == pid)).one()
    assert state == "failed"
    assert reason in error and pid in error
    (box,) = outbox(sim)
    assert box["ack_outcome"] == "rejected" and reason in box["ack_reason"]
    assert engine.ctx.store.payload_of(pid) == data  # the evidence is kept


def test_unknown_sender_is_quarantined(settings, sim, engine, court):
    pid, data = _signed(court, key="BA-WHO")
    put_raw(sim, pid, data, sender="000.00.00.X99")
    drain(engine)
    assert judgments_in_db(settings) == 0
    assert "no peer is configured for sender" in outbox(sim)[0]["ack_reason"]


def test_oversized_packet_is_refused_unfetched(tmp_path, pki, sim, court):
    s = load_settings(inbound_config(tmp_path / "small", pki, sim.app and
                                     int(sim.url.rsplit(":", 1)[1].split("/")[0]),
                                     max_bytes=4096))
    demo_schema(s)
    ctx = Context(s)
    ctx.store.create_schema()
    eng = InboundEngine(ctx)
    pid, data = _signed(court, key="BA-BIG")
    assert len(data) > 4096
    put_raw(sim, pid, data)
    drain(eng)
    (box,) = outbox(sim)
    assert box["fetches"] == 0 and box["ack_outcome"] == "rejected"
    assert "exceed the limit of 4096" in box["ack_reason"]
    ctx.close()


def test_a_judgment_signed_by_another_peer_under_the_same_ca_is_quarantined(
        tmp_path, pki, sim, court):
    """The courts name their signer: a certificate of the same CA that is not theirs (here
    the adapter's own) cannot sign a judgment in their name."""
    port = int(sim.url.rsplit(":", 1)[1].split("/")[0])
    s = load_settings(inbound_config(tmp_path / "pin", pki, port,
                                     signers=f'signer_certificates = ["{pki}/court.crt"]'))
    demo_schema(s)
    ctx = Context(s)
    ctx.store.create_schema()
    other = PacketSigner(load_identity(pki / "adapter.key", pki / "adapter.crt"))
    forged_pid, forged = _signed(court, key="BA-OTHER-SIGNER", signer=other)
    good_pid, good = _signed(court, key="BA-COURT-SIGNER")
    put_raw(sim, forged_pid, forged)
    put_raw(sim, good_pid, good)
    try:
        drain(InboundEngine(ctx))
        with make_engine(s.url(s.source.url)).connect() as c:
            codes = list(c.execute(select(JudgmentRow.judgment_code)).scalars())
        assert codes == ["BA-COURT-SIGNER"]
        ack = {b["packet_id"]: b for b in outbox(sim)}
        assert ack[forged_pid]["ack_outcome"] == "rejected"
        assert "is not a signer configured for peer courts" in ack[forged_pid]["ack_reason"]
        assert ack[good_pid]["ack_outcome"] == "accepted"
    finally:
        ctx.close()


def test_the_service_never_creates_tables_in_the_enforcement_database(settings, sim, court,
                                                                     caplog):
    """The enforcement database is the ministry's: without the tables the import needs, the
    round stops with a message naming them, creates nothing, and blames no packet."""
    from sqlalchemy import inspect

    from adapter.service.runner import Service
    from adapter.sources.writer import SourceSchemaMissing

    pid, data = _signed(court, key="BA-NO-TABLE")
    put_raw(sim, pid, data)
    ctx = Context(settings)
    ctx.store.create_schema()
    try:
        with pytest.raises(SourceSchemaMissing, match="no tables 'judgments', 'parties', "
                                                      "'obligations'.*never creates tables"):
            InboundEngine(ctx).pull(settings.route("judgments"))
        with caplog.at_level("WARNING", logger="adapter.service"):
            Service(settings, ctx).run_once()
        assert "no tables 'judgments'" in caplog.text
        source = make_engine(settings.url(settings.source.url))
        assert inspect(source).get_table_names() == []
        (box,) = outbox(sim)
        assert box["fetches"] == 0 and box["ack_outcome"] is None  # left for later
        with ctx.state_engine.connect() as c:
            assert c.execute(select(Exchange.id)).all() == []
        demo_schema(settings)  # once the schema is there, the judgment comes in
        drain(InboundEngine(ctx))
        assert judgments_in_db(settings) == 1
    finally:
        ctx.close()


def test_replayed_old_version_is_refused(settings, sim, engine, court):
    new_pid, new = _signed(court, key="BA-VER", version=2)
    old_pid, old = _signed(court, key="BA-VER", version=1,
                           mutate=lambda r: setattr(r.find(f"{N}Court/{N}Name"), "text",
                                                    "Tòa án giả mạo"))
    put_raw(sim, new_pid, new)
    drain(engine)
    put_raw(sim, old_pid, old)
    drain(engine)
    with make_engine(settings.url(settings.source.url)).connect() as c:
        rows = c.execute(select(JudgmentRow.version, JudgmentRow.court_name)).all()
    assert len(rows) == 1 and rows[0][0] == 2 and rows[0][1] != "Tòa án giả mạo"
    ack = {b["packet_id"]: b for b in outbox(sim)}
    assert ack[old_pid]["ack_outcome"] == "rejected"
    assert "older than the stored version 2" in ack[old_pid]["ack_reason"]


def test_newer_version_replaces_parties_atomically(settings, sim, engine, court):
    put_raw(sim, *_signed(court, key="BA-UPD", version=1))
    drain(engine)

    def one_party(root):
        parties = root.find(f"{N}Parties")
        parties.remove(parties[-1])
    put_raw(sim, *_signed(court, key="BA-UPD", version=2, mutate=one_party))
    drain(engine)
    with make_engine(settings.url(settings.source.url)).connect() as c:
        assert c.execute(select(JudgmentRow.version)).scalar() == 2
        assert c.execute(select(func.count()).select_from(PartyRow)).scalar() == 1


def test_flag_policy_imports_and_records_the_outcome(tmp_path, pki, sim, court):
    port = int(sim.url.rsplit(":", 1)[1].split("/")[0])
    s = load_settings(inbound_config(tmp_path / "flag", pki, port, policy="flag"))
    demo_schema(s)
    ctx = Context(s)
    ctx.store.create_schema()
    eng = InboundEngine(ctx)
    pid, data = _unsigned(court)
    put_raw(sim, pid, data)
    drain(eng)
    with ctx.state_engine.connect() as c:
        state, sig = c.execute(select(Exchange.state, Exchange.signature)).one()
    assert (state, sig) == ("delivered", "absent")
    assert judgments_in_db(s) == 1
    ctx.close()


def test_signed_judgment_etree_root_is_the_signed_data(court):
    pid, data = _signed(court, key="BA-ROOT")
    assert etree.fromstring(data).get("Id") == f"pkt-{pid}"


# ---- one odd packet never stops the route ------------------------------------------------

def _narrow_court_names(url: str) -> None:
    """The enforcement database is the ministry's: here its court_name column is narrower
    (100) than anything our XSD forbids, so a schema-valid judgment fails at import.
    PostgreSQL enforces it natively; SQLite ignores VARCHAR lengths, so a trigger does."""
    eng = make_engine(url)
    SourceBase.metadata.create_all(eng)
    with eng.begin() as c:
        if eng.dialect.name == "sqlite":
            c.exec_driver_sql(
                "CREATE TRIGGER judgments_court_name_length BEFORE INSERT ON judgments "
                "WHEN length(NEW.court_name) > 100 BEGIN "
                "SELECT RAISE(ABORT, 'value too long for judgments.court_name (100)'); END")
        else:
            c.exec_driver_sql("ALTER TABLE judgments ALTER COLUMN court_name TYPE varchar(100)")
    eng.dispose()


def test_a_judgment_the_database_refuses_is_quarantined_and_the_round_goes_on(
        db_url, tmp_path, pki, court):
    from adapter.sim.server import build_app
    from tests.conftest import free_port, serve_wsgi

    source = f"sqlite:///{tmp_path}/enforcement.db" if db_url.startswith("sqlite") else db_url
    s = load_settings(inbound_config(tmp_path, pki, free_port(), state_db=db_url,
                                     source_db=source))
    _narrow_court_names(source)
    served = serve_wsgi(build_app(s), settings=s, port=s.simulator.port)
    ctx = Context(s)
    ctx.store.create_schema()
    try:
        # schema-valid and validly signed, but longer than the court_name column: the
        # database raises during import
        poison_pid, poison = _signed(court, key="BA-POISON", mutate=lambda r: setattr(
            r.find(f"{N}Court/{N}Name"), "text", "Tòa án nhân dân" + " rất dài" * 17))
        good_pid, good = _signed(court, key="BA-GOOD")
        put_raw(served, poison_pid, poison)
        put_raw(served, good_pid, good)
        stats = InboundEngine(ctx).pull(s.route("judgments"))  # one run takes both
        assert (stats.imported, stats.quarantined) == (1, 1)
        with make_engine(s.url(s.source.url)).connect() as c:
            assert list(c.execute(select(JudgmentRow.judgment_code)).scalars()) == ["BA-GOOD"]
        with ctx.state_engine.connect() as c:
            rows = dict(c.execute(select(Exchange.packet_id, Exchange.state)).all())
            error = c.execute(select(Exchange.last_error)
                              .where(Exchange.packet_id == poison_pid)).scalar()
        assert rows == {poison_pid: "failed", good_pid: "delivered"}
        assert poison_pid in error and "import" in error
        acks = {b["packet_id"]: b["ack_outcome"] for b in outbox(served)}
        assert acks == {poison_pid: "rejected", good_pid: "accepted"}
        # quarantined for good: the next round does not stumble over it again
        assert InboundEngine(ctx).pull(s.route("judgments")).quarantined == 0
    finally:
        ctx.close()
        served.close()


def _commits(*engines):
    """Counts committed transactions on the engines (reads roll back and are not counted)."""
    from sqlalchemy import event

    count = {"n": 0}

    def commit(_conn):
        count["n"] += 1
    for e in engines:
        event.listen(e, "commit", commit)
    return count


@pytest.mark.parametrize("n", [3, 30])
def test_a_round_costs_four_transactions_whatever_its_size(n, settings, sim, engine):
    requests.post(sim.url.replace("/lgsp", "/outbox/judgments"),
                  json={"count": n, "start": 5000}, timeout=60).raise_for_status()
    ctx = engine.ctx
    commits = _commits(ctx.state_engine, ctx.source_engine)
    stats = engine.pull(settings.route("judgments"))
    assert (stats.received, stats.imported, stats.acknowledged) == (n, n, n)
    # store; import (enforcement database); record the outcomes; note the answers
    assert commits["n"] == 4
