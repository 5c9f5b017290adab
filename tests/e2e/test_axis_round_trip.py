"""Two adapters talk over the simulated document axis: an enforcement decision leaves one
as a signed edXML document, arrives at the other with the same fields and attachment bytes,
and status packets flow back through 01, 03, 04, 05 and 06."""

import datetime as dt

import pytest
from sqlalchemy import select, update

from adapter.config import load_settings
from adapter.dbutil import make_engine
from adapter.mapping.transforms import VN_TZ
from adapter.service.runner import Service
from adapter.sim.server import build_app
from adapter.sources.models import DecisionRow, ReceivedDocumentRow, SourceBase
from adapter.sources.synth import generate
from adapter.store.models import Exchange, StatusReport
from tests.conftest import AXIS_BTP, AXIS_HCM, axis_toml, free_port, serve_wsgi, write_config

pytestmark = pytest.mark.slow
BTP, HCM = AXIS_BTP, AXIS_HCM


def config(d, pki, port, *, me, system_id, routes, peer_org, peer_name):
    cfg = write_config(d, pki, sim_port=port, routes=routes, sign_workers=1,
                       extra=axis_toml(pki, port, system_id) + f"""
[[peers]]
name = "{peer_name}"
organisation_ids = ["{peer_org}"]
trust_anchors = ["{pki}/ca.crt"]
address = "Địa chỉ của {peer_name}"
""")
    text = cfg.read_text().replace('organisation_id = "000.00.00.G15"',
                                   f'organisation_id = "{me}"', 1)
    cfg.write_text(text, encoding="utf-8")
    return load_settings(cfg)


AXIS_IN = """
[[routes]]
name = "axis-in"
kind = "edoc"
direction = "in"
channel = "axis"
interval_seconds = 0.5
"""
STATUS_OUT = """
[[routes]]
name = "statuses-out"
kind = "status"
channel = "axis"
interval_seconds = 0.5
"""


@pytest.fixture
def pair(tmp_path, pki):
    port = free_port()
    btp = config(tmp_path / "btp", pki, port, me=BTP, system_id="btp", peer_org=HCM,
                 peer_name="Cục THADS TP. Hồ Chí Minh", routes=f"""
[[routes]]
name = "decisions-out"
kind = "edoc"
channel = "axis"
recipients = ["{HCM}"]
interval_seconds = 0.5
{AXIS_IN}{STATUS_OUT}""")
    hcm = config(tmp_path / "hcm", pki, port, me=HCM, system_id="hcm", peer_org=BTP,
                 peer_name="Cục Quản lý THADS", routes=AXIS_IN + STATUS_OUT)
    served = serve_wsgi(build_app(btp), settings=btp, port=port)
    generate(make_engine(btp.url(btp.source.url)), cases=30)
    SourceBase.metadata.create_all(make_engine(hcm.url(hcm.source.url)))  # `init --demo`
    yield btp, hcm
    served.close()


def once(settings) -> None:
    service = Service(settings)
    service.ctx.store.create_schema()
    try:
        assert service.run_once() == 0
    finally:
        service.ctx.close()


def test_decision_round_trip_and_status_flow(pair):
    btp, hcm = pair
    once(btp)   # decisions leave as edXML documents
    once(hcm)   # arrive, stored, acknowledged; 01 and 03 go back
    once(btp)   # statuses come in
    src = make_engine(btp.url(btp.source.url))
    dst = make_engine(hcm.url(hcm.source.url))
    with src.connect() as c:
        decisions = {d.subject: d for d in c.execute(select(DecisionRow)).all()}
    with dst.connect() as c:
        received = c.execute(select(ReceivedDocumentRow)).all()
    assert len(received) == len(decisions) == 3
    for r in received:
        d = decisions[r.subject]
        assert r.sender == BTP and r.progress == "03" and r.signature == "valid"
        assert r.code == f"{d.code_number}/{d.code_notation}"
        assert r.signer_name == d.signer_name and r.content == d.content
        assert r.attachment == d.document and r.attachment_type == "application/pdf"
        assert r.document_id == f"{BTP},{d.decision_date:%Y/%m/%d},{r.code}"
    state = make_engine(btp.url(btp.adapter.state_db))
    with state.connect() as c:
        sent = c.execute(select(Exchange.id, Exchange.state, Exchange.receipt_status)
                         .where(Exchange.kind == "edoc", Exchange.direction == "out")).all()
    assert {(s, rs) for _, s, rs in sent} == {("delivered", "status:03")}
    # the office records progress; each step is reported back
    for code in ("04", "05", "06"):
        with dst.begin() as c:
            c.execute(update(ReceivedDocumentRow).values(
                progress=code, version=ReceivedDocumentRow.version + 1,
                # the clerk's software writes local Vietnam time, as the databases do
                updated_at=dt.datetime.now(VN_TZ).replace(tzinfo=None)
                + dt.timedelta(seconds=int(code))))
        once(hcm)
        once(btp)
    with state.connect() as c:
        for ex_id, _, _ in sent:
            codes = list(c.execute(select(StatusReport.code).where(
                StatusReport.exchange_id == ex_id).order_by(StatusReport.id)).scalars())
            assert codes == ["01", "03", "04", "05", "06"]
    once(hcm)  # nothing new: no status is sent twice
    once(btp)
    with state.connect() as c:
        assert c.execute(select(StatusReport.id)).all().__len__() == 15


def test_document_from_an_untrusted_signer_is_answered_02(pair, pki):
    """The sender is the one the axis authenticated and its From, but its signer is not
    trusted: it hears 02 with the reason, and nothing is registered."""
    btp, hcm = pair
    rogue = btp.model_copy(update={"signing": btp.signing.model_copy(update={
        "key": str(pki / "untrusted" / "signer.key"),
        "cert": str(pki / "untrusted" / "signer.crt")})})
    once(rogue)
    once(hcm)
    once(btp)
    with make_engine(hcm.url(hcm.source.url)).connect() as c:
        assert c.execute(select(ReceivedDocumentRow.id)).all() == []
    with make_engine(btp.url(btp.adapter.state_db)).connect() as c:
        sent = c.execute(select(Exchange.state, Exchange.receipt_status, Exchange.last_error)
                         .where(Exchange.kind == "edoc")).all()
    assert {(s, rs) for s, rs, _ in sent} == {("delivered", "status:02")}
    assert all("rejected it" in e and "untrusted" in e and "refused under policy 'reject'" in e
               for _, _, e in sent)
    with make_engine(hcm.url(hcm.adapter.state_db)).connect() as c:
        quarantined = c.execute(select(Exchange.state, Exchange.signature,
                                       Exchange.document_id).where(
            Exchange.direction == "in")).all()
    assert set(quarantined) == {("failed", "untrusted", None)}


def test_operator_sees_the_status_timeline(pair, capsys):
    from adapter.cli.main import main
    btp, hcm = pair
    once(btp)
    once(hcm)
    once(btp)
    cfg = ["--config", btp.source_file]
    assert main([*cfg, "exchanges", "list", "--kind", "edoc", "--direction", "out"]) == 0
    out = capsys.readouterr().out
    assert out.count("delivered") == 3
    ex_id = out.splitlines()[2].split()[0]
    assert main([*cfg, "exchanges", "show", ex_id]) == 0
    shown = capsys.readouterr().out
    assert "edXML document 000.00.00.G15," in shown
    assert "000.00.79.H29  01" in shown and "000.00.79.H29  03" in shown
