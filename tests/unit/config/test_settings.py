from pathlib import Path

import pytest

from adapter.config import load_settings
from adapter.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def test_demo_configuration_loads_with_paths_resolved_against_project_root():
    s = load_settings(ROOT / "config" / "adapter.toml", environ={})
    assert s.adapter.organisation_id == "000.00.00.G15"
    assert [r.name for r in s.routes] == ["cases-to-lgsp", "receipts-to-lgsp",
                                          "debtors-to-lgsp", "decisions-to-axis", "axis-in",
                                          "judgments-from-lgsp"]
    decisions = s.routes[3]
    assert decisions.recipient_fields == ["court_org_id", "procuracy_org_id"]
    # every agency the demo's decisions go to is a peer whose answers we accept
    assert all(s.peer_of(o) is not None for o in s.simulator.axis_agencies)
    assert s.peer_of("000.00.00.T01").signature_policy == "reject"
    assert s.peer_of("000.00.00.G22") is None
    assert s.path(s.signing.cert) == ROOT / "certs" / "dev" / "adapter.crt"
    assert s.url(s.adapter.state_db) == f"sqlite:///{ROOT}/var/state.db"


def test_production_example_is_a_valid_configuration():
    s = load_settings(ROOT / "config" / "production.example.toml", environ={})
    assert s.adapter.state_db.startswith("postgresql")
    assert s.lgsp.operations.submit == "SubmitPacket"


def _write(tmp_path, text):
    p = tmp_path / "adapter.toml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(("text", "key", "reason"), [
    ('[adapter]\norganisation_id = "000.00.00.G15"\n[lgsp]\ntimout = 3\n',
     "lgsp.timout", "unknown key"),
    ('[adapter]\norganisation_id = "28.22.H17"\n', "adapter.organisation_id", "pattern"),
    ("[adapter]\n", "adapter.organisation_id", "required key is missing"),
    ('[adapter]\norganisation_id = "000.00.00.G15"\n[lgsp]\noperation_timeout = -1\n',
     "lgsp.operation_timeout", "greater than 0"),
    ('[adapter]\norganisation_id = "000.00.00.G15"\n[[routes]]\nname = "a"\nkind = "case"\n'
     'recipient = "000.00.00.G22"\n[[routes]]\nname = "a"\nkind = "receipt"\n'
     'recipient = "000.00.00.G22"\n', "routes", "repeated: a"),
    ('[adapter]\norganisation_id = "000.00.00.G15"\n[[routes]]\nname = "x"\nkind = "fax"\n'
     'recipient = "000.00.00.G22"\n', "routes.0.kind",
     "unknown packet kind 'fax': expected 'case', 'receipt', 'judgment', 'edoc', 'status' "
     "or 'debtor'"),
    ('[adapter]\norganisation_id = "000.00.00.G15"\n[[routes]]\nname = "x"\n'
     'kind = "judgment"\ndirection = "out"\nrecipient = "000.00.00.G22"\n', "routes.0",
     "cannot be sent over lgsp: it is received over lgsp"),
    ('[adapter]\norganisation_id = "000.00.00.G15"\n[[routes]]\nname = "x"\n'
     'kind = "case"\nchannel = "axis"\nrecipient = "000.00.00.G22"\n', "routes.0",
     "cannot be sent over axis: it is sent over lgsp"),
    ('[adapter]\norganisation_id = "000.00.00.G15"\n[[routes]]\nname = "x"\nkind = "edoc"\n',
     "routes.0", "edoc routes need recipients"),
    ('[adapter]\norganisation_id = "000.00.00.G15"\n[[routes]]\nname = "x"\nkind = "case"\n'
     'channel = "fax"\nrecipient = "000.00.00.G22"\n', "routes.0.channel",
     "unknown channel 'fax': expected lgsp or axis"),
    ('[adapter]\norganisation_id = "000.00.00.G15"\n[[routes]]\nname = "x"\nkind = "case"\n',
     "routes.0", "outbound routes need a recipient"),
])
def test_bad_configuration_names_file_key_and_reason(tmp_path, text, key, reason):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_settings(p, environ={})
    assert ei.value.file == str(p)
    assert ei.value.key == key
    assert reason in ei.value.reason
    assert str(p) in str(ei.value) and key in str(ei.value)


def test_unparseable_toml_and_missing_file_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_write(tmp_path, "[adapter\n"), environ={})
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_environment_overrides_nested_keys_with_typed_values(tmp_path):
    p = _write(tmp_path, '[adapter]\norganisation_id = "000.00.00.G15"\n')
    s = load_settings(p, environ={"THADS__LGSP__ENDPOINT": "https://lgsp.example/ws",
                                  "THADS__LGSP__CONCURRENCY": "3",
                                  "UNRELATED": "x"})
    assert s.lgsp.endpoint == "https://lgsp.example/ws"
    assert s.lgsp.concurrency == 3


def test_environment_override_is_validated_too(tmp_path):
    p = _write(tmp_path, '[adapter]\norganisation_id = "000.00.00.G15"\n')
    with pytest.raises(ConfigError) as ei:
        load_settings(p, environ={"THADS__RETRY__MAX_ATTEMPTS": "0"})
    assert ei.value.key == "retry.max_attempts"


def test_a_route_may_carry_its_own_retry_policy(tmp_path):
    from adapter.engine.context import Context

    p = _write(tmp_path, '[adapter]\norganisation_id = "000.00.00.G15"\n'
               f'state_db = "sqlite:///{tmp_path}/s.db"\n'
               '[retry]\nmax_attempts = 5\n'
               '[[routes]]\nname = "receipts"\nkind = "receipt"\nrecipient = "000.00.00.G22"\n'
               '[routes.retry]\nmax_attempts = 50\nmax_age_hours = 240\n'
               '[[routes]]\nname = "cases"\nkind = "case"\nrecipient = "000.00.00.G22"\n')
    s = load_settings(p, environ={})
    ctx = Context(s)
    try:
        assert ctx.policy_for(s.route("receipts")).max_attempts == 50
        assert ctx.policy_for(s.route("receipts")).max_age.days == 10
        assert ctx.policy_for(s.route("cases")).max_attempts == 5
    finally:
        ctx.close()


def test_route_direction_and_channel_default_to_how_the_kind_travels(tmp_path):
    p = _write(tmp_path, '[adapter]\norganisation_id = "000.00.00.G15"\n'
               '[[routes]]\nname = "judgments"\nkind = "judgment"\n'
               '[[routes]]\nname = "decisions"\nkind = "edoc"\nrecipients = ["000.00.00.G22"]\n'
               '[[routes]]\nname = "statuses"\nkind = "status"\n'
               '[[routes]]\nname = "documents"\nkind = "edoc"\ndirection = "in"\n')
    s = load_settings(p, environ={})
    assert [(r.name, r.direction, r.channel) for r in s.routes] == [
        ("judgments", "in", "lgsp"), ("decisions", "out", "axis"), ("statuses", "out", "axis"),
        ("documents", "in", "axis")]


def test_routes_are_checked_against_the_registry_a_caller_passes(tmp_path):
    from adapter.kinds import KINDS, KindSpec

    p = _write(tmp_path, '[adapter]\norganisation_id = "000.00.00.G15"\n'
               '[[routes]]\nname = "w"\nkind = "widget"\nrecipient = "000.00.00.G22"\n')
    with pytest.raises(ConfigError, match="unknown packet kind 'widget'"):
        load_settings(p, environ={})
    kinds = KINDS.with_kinds(KindSpec("widget", table="widgets", key="widget_code",
                                      outbound="axis", mapping="w.yaml", schema="w.xsd"))
    s = load_settings(p, environ={}, kinds=kinds)
    assert (s.routes[0].direction, s.routes[0].channel) == ("out", "axis")
    assert s.kinds is kinds
