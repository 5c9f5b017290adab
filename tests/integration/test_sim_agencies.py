"""The agencies the simulated axis answers for (the demo's courts and procuracies): over real
HTTP, a document to a played agency brings back its signed 01 and 03 (or 02 when the
document's signature fails or is missing), a recipient it does not play gets nothing said
for it, and a re-sent document is not answered twice."""

import datetime as dt

import pytest

from adapter.config import load_settings
from adapter.crypto.keys import load_certificates, load_identity
from adapter.edxml import build_document, read_edxml, sign_edxml, verify_edxml
from adapter.edxml.model import Attachment, EdocDocument, Organization
from adapter.sim.server import build_app
from adapter.transports.axis import AxisTransport
from adapter.xml.safe import parse_untrusted, serialize
from tests.conftest import AXIS_BTP, axis_toml, free_port, serve_wsgi, write_config

COURT, PROCURACY, ELSEWHERE = "000.00.01.T01", "000.00.01.V01", "000.00.79.H29"


@pytest.fixture
def axis(tmp_path, pki):
    port = free_port()
    cfg = write_config(tmp_path, pki, sim_port=port, extra=axis_toml(pki, port))
    text = cfg.read_text(encoding="utf-8").replace(
        "[simulator]\n", f'[simulator]\naxis_agencies = ["{COURT}", "{PROCURACY}"]\n'
        f'agency_key = "{pki}/court.key"\nagency_cert = "{pki}/court.crt"\n', 1)
    cfg.write_text(text, encoding="utf-8")
    s = load_settings(cfg)
    assert s.simulator.axis_agencies == [COURT, PROCURACY]
    served = serve_wsgi(build_app(s), settings=s, port=port)
    client = AxisTransport(s.axis, s.path, organisation_id=AXIS_BTP)
    yield client, pki
    client.close()
    served.close()


def _decision(pki, to: list[str], *, number: str = "125") -> bytes:
    us = Organization(AXIS_BTP, "Cục Quản lý thi hành án dân sự", "", "Hà Nội")
    doc = EdocDocument(
        sender=us, recipients=[Organization(o, f"Cơ quan {o}", "", "") for o in to],
        document_id=f"{AXIS_BTP},2026/11/20,{number}/QĐ-CCTHADS", code_number=number,
        code_notation="QĐ-CCTHADS", place="Hà Nội", promulgation_date="2026/11/20",
        doc_type="1", type_detail="", type_name="Quyết định",
        subject="Quyết định thi hành án", content="Thi hành bản án đã có hiệu lực",
        signer_competence="KT. CỤC TRƯỞNG", signer_position="Phó Cục trưởng",
        signer_name="Nguyễn Văn An", due_date="", priority="0", steering_type="0",
        attachments=[Attachment("1", "qd.pdf", "Quyết định", "pdf", b"%PDF-1.4 demo",
                                "application/pdf")])
    identity = load_identity(pki / "adapter.key", pki / "adapter.crt")
    return serialize(sign_edxml(build_document(doc), identity))


def _statuses(client, pki) -> list[tuple[str, str, str, str]]:
    """(agency, code, document id answered, description) of each status waiting for us,
    each verified as the adapter would verify it."""
    anchors = load_certificates(pki / "ca.crt")
    out = []
    for item in client.received_statuses():
        root = parse_untrusted(client.get(item.doc_id), name=item.doc_id)
        verified = verify_edxml(root, anchors)
        assert verified.outcome.outcome == "valid", verified.outcome
        st = read_edxml(verified).packet
        assert st.sender.organ_id == item.sender
        out.append((item.sender, st.status_code, st.response_for.document_id,
                    st.description))
    return out


def test_played_agencies_answer_01_then_03_and_others_stay_unanswered(axis):
    client, pki = axis
    doc_id = client.send(_decision(pki, [COURT, PROCURACY, ELSEWHERE]), "edoc")
    answered = _statuses(client, pki)
    ours = f"{AXIS_BTP},2026/11/20,125/QĐ-CCTHADS"
    assert [(a, c, d) for a, c, d, _ in answered] == [
        (COURT, "01", ours), (COURT, "03", ours),
        (PROCURACY, "01", ours), (PROCURACY, "03", ours)]
    # the played agencies took the document off the axis; the one not played did not
    taken = {s["toCode"]: s["receiveStatus"] for s in client.sent("edoc")
             if s["senderDocId"] == doc_id}
    assert taken == {COURT: "done", PROCURACY: "done", ELSEWHERE: "initial"}


def test_a_resent_document_is_not_answered_twice(axis):
    client, pki = axis
    data = _decision(pki, [COURT])
    assert client.send(data, "edoc") == client.send(data, "edoc")
    assert [c for _, c, _, _ in _statuses(client, pki)] == ["01", "03"]


def test_a_document_whose_signature_fails_is_refused_with_02_and_the_reason(axis):
    client, pki = axis
    data = _decision(pki, [PROCURACY], number="126").replace(
        "Thi hành bản án".encode(), "Tạm dừng bản án".encode())
    client.send(data, "edoc")
    (arrived, refused) = _statuses(client, pki)
    assert arrived[1] == "01"
    assert refused[1] == "02"
    assert "chữ ký không hợp lệ (Digest mismatch" in refused[3]


def test_an_unsigned_document_is_refused_with_02(axis):
    client, pki = axis
    signed = _decision(pki, [COURT], number="128")
    root = parse_untrusted(signed, name="decision")
    sig = root.find(".//{http://www.w3.org/2000/09/xmldsig#}Signature")
    sig.getparent().remove(sig)
    client.send(serialize(root), "edoc")
    assert [(c, d) for _, c, _, d in _statuses(client, pki)] == [
        ("01", "Đã đến"), ("02", "Từ chối tiếp nhận: văn bản không có chữ ký")]


def test_answers_carry_the_time_they_were_given(axis):
    client, pki = axis
    client.send(_decision(pki, [COURT], number="127"), "edoc")
    root = parse_untrusted(client.get(client.received_statuses()[0].doc_id), name="st")
    st = read_edxml(verify_edxml(root, load_certificates(pki / "ca.crt"))).packet
    given = dt.datetime.strptime(st.timestamp, "%Y/%m/%d %H:%M:%S")
    assert abs((given - dt.datetime.now(dt.UTC).replace(tzinfo=None)
                - dt.timedelta(hours=7)).total_seconds()) < 300
