"""An edXML document sent to several agencies: each recipient is a row with its own status
timeline, and the document counts as delivered once every recipient has answered (03, or 02
for a refusal, recorded against that recipient)."""

import datetime as dt

import pytest
from sqlalchemy import select

from adapter.config import load_settings
from adapter.crypto.keys import load_identity
from adapter.dbutil import make_engine
from adapter.edxml import build_status, sign_edxml
from adapter.edxml.model import Organization, ResponseFor, StatusPacket
from adapter.engine.axis_inbound import AxisInbound
from adapter.engine.context import Context
from adapter.engine.outbound import OutboundEngine
from adapter.sim.server import build_app
from adapter.sources.synth import generate
from adapter.store.models import Exchange
from adapter.transports.axis import AxisTransport
from adapter.xml.safe import serialize
from tests.conftest import (
    AXIS_BTP,
    axis_systems_toml,
    free_port,
    peers_toml,
    serve_wsgi,
    write_config,
)

pytestmark = pytest.mark.slow
#: five agencies, the sixth refuses the document
AGREE = [f"000.00.{n:02d}.H{n:02d}" for n in range(1, 6)]
REFUSE = "000.00.06.H06"
RECIPIENTS = [*AGREE, REFUSE]


def _config(tmp_path, pki, db_url):
    port = free_port()
    clients = axis_systems_toml(pki, [AXIS_BTP, *RECIPIENTS])
    peers = peers_toml(pki, RECIPIENTS, address=True)
    recipients = ", ".join(f'"{o}"' for o in RECIPIENTS)
    return load_settings(write_config(tmp_path, pki, sim_port=port, state_db=db_url, routes=f"""
[[routes]]
name = "decisions-out"
kind = "edoc"
channel = "axis"
recipients = [{recipients}]
interval_seconds = 0.5

[[routes]]
name = "axis-in"
kind = "edoc"
direction = "in"
channel = "axis"
interval_seconds = 0.5
""", extra=f"""
[axis]
endpoint = "http://127.0.0.1:{port}/axis"
system_id = "s{AXIS_BTP}"
secret_file = "{pki}/axis.secret"
{clients}{peers}"""))


def _answer(s, pki, org: str, document_id: str, code: str) -> None:
    """`org` reports `code` about our document over the axis, signed with the dev key."""
    st = StatusPacket(Organization(org, f"Cục THADS {org}", "", f"Địa chỉ {org}"),
                      ResponseFor(AXIS_BTP, "", "", document_id), code,
                      "Đã đến" if code == "01" else "Từ chối" if code == "02" else "Đã nhận",
                      dt.datetime.now().strftime("%Y/%m/%d %H:%M:%S"), {"Department": "Văn thư"})
    identity = load_identity(pki / "adapter.key", pki / "adapter.crt")
    data = serialize(sign_edxml(build_status(st), identity))
    client = AxisTransport(s.axis.model_copy(update={"system_id": f"s{org}"}), s.path,
                           organisation_id=org)
    try:
        client.send(data, "status")
    finally:
        client.close()


def test_each_recipient_has_its_own_timeline_and_delivery_needs_every_answer(
        tmp_path, pki, db_url, capsys):
    s = _config(tmp_path, pki, db_url)
    served = serve_wsgi(build_app(s), settings=s, port=s.simulator.port)
    generate(make_engine(s.url(s.source.url)), cases=10)  # one enforcement decision
    ctx = Context(s)
    ctx.store.create_schema()
    try:
        out = OutboundEngine(ctx)
        out.prepare(s.route("decisions-out"))
        out.deliver(s.route("decisions-out"))
        with ctx.state_engine.connect() as c:
            (ex_id, document_id, state), = c.execute(select(
                Exchange.id, Exchange.document_id, Exchange.state).where(
                Exchange.kind == "edoc")).all()
        assert state == "sent"
        inbound = AxisInbound(ctx)

        def state_now() -> str:
            with ctx.state_engine.connect() as c:
                return c.execute(select(Exchange.state).where(Exchange.id == ex_id)).scalar()

        for org in RECIPIENTS:
            _answer(s, pki, org, document_id, "01")
        assert inbound.pull(s.route("axis-in")).statuses == 6
        assert state_now() == "sent"  # arrived everywhere, accepted nowhere yet
        for org in AGREE:
            _answer(s, pki, org, document_id, "03")
        assert inbound.pull(s.route("axis-in")).statuses == 5
        assert state_now() == "sent"  # one agency has still to answer
        _answer(s, pki, REFUSE, document_id, "02")
        assert inbound.pull(s.route("axis-in")).statuses == 1
        assert state_now() == "delivered"

        from adapter.cli.main import main
        assert main(["--config", s.source_file, "exchanges", "show", str(ex_id)]) == 0
        shown = capsys.readouterr().out
        for org in AGREE:
            assert f"{org}  03" in shown and f"{org}  01" in shown
        assert f"{REFUSE}  02" in shown
        assert f"{REFUSE} rejected it" in shown  # the last error names who refused
        assert main(["--config", s.source_file, "exchanges", "show", str(ex_id),
                     "--json"]) == 0
        import json
        data = json.loads(capsys.readouterr().out)
        timelines = {r["organ_id"]: [e["code"] for e in r["statuses"]]
                     for r in data["recipients"]}
        assert timelines == {**{o: ["01", "03"] for o in AGREE}, REFUSE: ["01", "02"]}
    finally:
        ctx.close()
        served.close()
