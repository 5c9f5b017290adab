"""The packet builder signs with the key configuration names, and says so when it cannot."""

from __future__ import annotations

import pytest

from adapter.config import load_settings
from adapter.engine.build import PacketBuilder
from adapter.errors import ConfigError
from adapter.sources.changes import SourceCursor, SourceRecord
from tests.conftest import write_config
from tests.helpers import sample_record


def _settings(tmp_path, pki, signing: str):
    cfg = write_config(tmp_path, pki)
    text = cfg.read_text(encoding="utf-8")
    start = text.index("[signing]")
    end = text.index("[lgsp]")
    cfg.write_text(text[:start] + "[signing]\n" + signing + "\n" + text[end:], encoding="utf-8")
    return load_settings(cfg, environ={})


def test_ecdsa_with_an_rsa_key_is_a_settings_error_naming_the_key(tmp_path, pki):
    s = _settings(tmp_path, pki, f'key = "{pki}/adapter.key"\ncert = "{pki}/adapter.crt"\n'
                                 'algorithm = "ecdsa-sha256"')
    with pytest.raises(ConfigError) as ei:
        PacketBuilder(s)
    assert ei.value.key == "signing.key"
    assert "ecdsa-sha256 needs an EC key" in ei.value.reason
    assert "holds an RSA key" in ei.value.reason


def test_rsa_with_an_ec_key_is_refused_too(tmp_path, pki):
    s = _settings(tmp_path, pki, f'key = "{pki}/adapter-ec.key"\n'
                                 f'cert = "{pki}/adapter-ec.crt"\nalgorithm = "rsa-sha256"')
    with pytest.raises(ConfigError, match="rsa-sha256 needs an RSA key, but .* holds an EC"):
        PacketBuilder(s)


def test_ecdsa_signs_with_the_ec_key_configuration_names(tmp_path, pki):
    s = _settings(tmp_path, pki, f'key = "{pki}/adapter-ec.key"\n'
                                 f'cert = "{pki}/adapter-ec.crt"\nalgorithm = "ecdsa-sha256"')
    builder = PacketBuilder(s)
    data = sample_record("case")
    record = SourceRecord("case", data["case_code"], 1, SourceCursor.decode(None), data)
    ex = builder.build(record, "000.00.00.G22")
    assert ex.error is None and ex.payload is not None
    assert b"ecdsa-sha256" in ex.payload


def test_a_decision_goes_to_the_court_that_judged_and_the_procuracy(tmp_path, pki):
    """Routes may address each document to an agency named by the record (the court) and
    to fixed agencies (the provincial procuracy), each once, in the configured order."""
    from lxml import etree

    from adapter.dbutil import make_engine
    from adapter.sources.changes import ChangeReader
    from adapter.sources.synth import generate
    from tests.conftest import free_port

    procuracy = "000.00.01.V01"
    cfg = write_config(tmp_path, pki, sim_port=free_port(), routes=f"""
[[routes]]
name = "decisions-out"
kind = "edoc"
channel = "axis"
recipient_fields = ["court_org_id"]
extra_recipients = ["{procuracy}"]
""")
    s = load_settings(cfg, environ={})
    engine = make_engine(s.url(s.source.url))
    generate(engine, cases=10)
    (record, *_), = ChangeReader(engine, "edoc", 10, kinds=s.kinds).batches(
        SourceCursor.decode(None))
    court = record.data["court_org_id"]
    ex = PacketBuilder(s).build(record, "")
    assert ex.error is None, ex.error
    assert ex.recipients == (court, procuracy)
    ns = {"e": "http://www.mic.gov.vn/TBT/QCVN_102_2016"}
    to = etree.fromstring(ex.payload).xpath("//e:MessageHeader/e:To/e:OrganId/text()",
                                            namespaces=ns)
    assert to == [court, procuracy]
    record.data["court_org_id"] = ""
    refused = PacketBuilder(s).build(record, "")
    assert refused.error and "court_org_id" in refused.error


def test_an_enforcement_database_without_procuracy_ids_still_reads_and_names_the_field(
        tmp_path, pki):
    """The procuracy lookup is optional: a ministry database whose `cases` lacks the column
    still reads its decisions (court-only routes work), and a route that addresses by the
    field rejects each record naming it, instead of every read failing."""
    from sqlalchemy import text

    from adapter.dbutil import make_engine
    from adapter.sources.changes import ChangeReader
    from adapter.sources.synth import generate
    from tests.conftest import free_port

    cfg = write_config(tmp_path, pki, sim_port=free_port(), routes="""
[[routes]]
name = "decisions-out"
kind = "edoc"
channel = "axis"
recipient_fields = ["court_org_id", "procuracy_org_id"]
""")
    s = load_settings(cfg, environ={})
    engine = make_engine(s.url(s.source.url))
    generate(engine, cases=10)
    with engine.begin() as c:
        c.execute(text("ALTER TABLE cases DROP COLUMN procuracy_org_id"))
    (record, *_), = ChangeReader(engine, "edoc", 10, kinds=s.kinds).batches(
        SourceCursor.decode(None))
    assert record.data["court_org_id"].endswith(".T01")
    assert record.data["procuracy_org_id"] is None
    refused = PacketBuilder(s).build(record, "")
    assert refused.error == (f"packet edoc {record.key}: "
                             "field procuracy_org_id: no recipient organisation id")
