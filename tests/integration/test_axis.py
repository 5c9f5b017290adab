"""The document-axis client against the simulated axis, over real HTTP: the calls, the
per-kind lists, the counts, and the refusals the client turns into errors. (The wire format
itself is pinned by test_axis_wire.py.)"""

import pytest

from adapter.config import AxisSection, load_settings
from adapter.errors import RejectedByPeer, TransportError
from adapter.sim.server import build_app
from adapter.transports.axis import AxisTransport
from tests.conftest import (
    AXIS_BTP,
    AXIS_HCM,
    axis_toml,
    free_port,
    provincial_office,
    serve_wsgi,
    write_config,
)

BTP, HCM = AXIS_BTP, AXIS_HCM


@pytest.fixture
def axis_sim(tmp_path, pki):
    port = free_port()
    cfg = write_config(tmp_path, pki, sim_port=port, extra=axis_toml(pki, port))
    s = load_settings(cfg)
    served = serve_wsgi(build_app(s), settings=s, port=port)
    yield s
    served.close()


def client(s, system_id="btp", org=BTP, secret_file=None):
    cfg = s.axis.model_copy(update={"system_id": system_id,
                                    **({"secret_file": secret_file} if secret_file else {})})
    return AxisTransport(cfg, s.path, organisation_id=org)


def status_packet(to: str = BTP, sender: str = HCM) -> bytes:
    from adapter.edxml import build_status
    from adapter.edxml.model import Organization, ResponseFor, StatusPacket
    from adapter.xml.safe import serialize
    st = StatusPacket(Organization(sender, "Cục THADS TP.HCM", "", "TP.HCM"),
                      ResponseFor(to, "125/QĐ-CTHADS", "2026/11/20",
                                  f"{to},2026/11/20,125/QĐ-CTHADS"),
                      "01", "Đã đến", "2026/11/23 10:00:00")
    return serialize(build_status(st))


def document_packet(to: str = BTP) -> bytes:
    """Enough of a document for the axis to route it (it reads the header only)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"><edXMLEnvelope><edXMLHeader>
<MessageHeader><From><OrganId>{HCM}</OrganId></From><To><OrganId>{to}</OrganId></To>
<Code><CodeNumber>12</CodeNumber><CodeNotation>QĐ-CTHADS</CodeNotation></Code>
<Subject>Quyết định thi hành án</Subject></MessageHeader>
</edXMLHeader></edXMLEnvelope></edXML>""".encode()


def test_send_list_get_ack_and_sent_state(axis_sim):
    hcm, btp = client(axis_sim, "hcm", HCM), client(axis_sim)
    data = status_packet()
    doc_id = hcm.send(data, "status")
    assert hcm.send(data, "status") == doc_id  # a re-sent file is the same document
    assert btp.received_documents() == []  # one kind per call
    (item,) = btp.received_statuses()
    assert (item.doc_id, item.sender, item.message_type) == (doc_id, HCM, "status")
    assert (btp.count_received("status"), btp.count_received("edoc")) == (1, 0)
    assert btp.get(doc_id) == data  # the raw upload, without the SDK's trailing CRLF
    btp.update_status(doc_id, "done")
    assert btp.received() == [] and btp.count_received("status") == 0
    assert hcm.sent("edoc") == []
    (sent,) = hcm.sent("status")
    assert (sent["senderDocId"], sent["toCode"], sent["receiveStatus"], sent["sends"]) == (
        doc_id, BTP, "done", 2)


def test_received_returns_documents_and_statuses_interleaved(axis_sim):
    hcm, btp = client(axis_sim, "hcm", HCM), client(axis_sim)
    docs = [hcm.send(document_packet().replace(b"<CodeNumber>12", f"<CodeNumber>{i}".encode()),
                     "edoc") for i in range(3)]
    status = hcm.send(status_packet(), "status")
    items = btp.received()
    assert [i.doc_id for i in items] == [status, docs[0], docs[1], docs[2]]
    assert [i.message_type for i in items] == ["status", "edoc", "edoc", "edoc"]
    (row, *_) = hcm.sent("edoc")
    assert (row["title"], row["notation"]) == ("Quyết định thi hành án", "0/QĐ-CTHADS")


def test_wrong_key_is_refused_permanently(axis_sim, tmp_path):
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("00" * 32)
    with pytest.raises(RejectedByPeer, match="hash-header does not match") as ei:
        client(axis_sim, secret_file=str(wrong)).received_documents()
    assert ei.value.code == "401"


def test_unknown_system_is_refused(axis_sim):
    with pytest.raises(RejectedByPeer, match="unknown systemid 'nobody'"):
        client(axis_sim, "nobody").received_statuses()


def test_sender_cannot_claim_another_organisation(axis_sim):
    with pytest.raises(RejectedByPeer, match="is not the organisation of system hcm"):
        client(axis_sim, "hcm", BTP).send(status_packet(), "status")
    # the header is right but the packet speaks for someone else
    with pytest.raises(RejectedByPeer, match="packet's From 000.00.00.G15 is not"):
        client(axis_sim, "hcm", HCM).send(status_packet(to=HCM, sender=BTP), "status")
    assert client(axis_sim).received() == []


def test_unknown_document_is_a_permanent_refusal(axis_sim):
    with pytest.raises(RejectedByPeer, match="no document nope for") as ei:
        client(axis_sim).get("nope")
    assert ei.value.code == "404"


def test_unreachable_axis_is_transient(axis_sim):
    cfg = AxisSection(endpoint=f"http://127.0.0.1:{free_port()}/axis", system_id="btp",
                      secret_file=axis_sim.axis.secret_file)
    with pytest.raises(TransportError):
        AxisTransport(cfg, axis_sim.path, organisation_id=BTP).received()


def test_a_zipped_attachment_arrives_unpacked_and_the_evidence_keeps_the_packet_as_received(
        tmp_path, pki):
    """The official library zips e.g. an .odt and labels it application/zip: the clerk gets
    the .odt back, the evidence log the packet exactly as the axis delivered it."""
    import hashlib
    import io
    import zipfile

    from sqlalchemy import select

    from adapter.crypto.keys import load_identity
    from adapter.dbutil import make_engine
    from adapter.edxml import build_document, sign_edxml
    from adapter.edxml.model import Attachment, Business, EdocDocument, Organization
    from adapter.service.runner import Service
    from adapter.sources.models import ReceivedDocumentRow
    from adapter.store.evidence import EvidenceEntry
    from adapter.store.models import Packet
    from adapter.xml.safe import serialize

    original = "Biên bản kê biên tài sản\n".encode() * 200
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bien-ban.odt", original)
    doc = EdocDocument(
        sender=Organization(BTP, "Cục Quản lý THADS", "", "58-60 Trần Phú, Hà Nội"),
        recipients=[Organization(HCM, "Cục THADS TP.HCM", "", "TP.HCM")],
        document_id=f"{BTP},2026/11/20,125/QĐ-TCTHADS", code_number="125",
        code_notation="QĐ-TCTHADS", place="Hà Nội", promulgation_date="2026/11/20",
        doc_type="1", type_detail="", type_name="Quyết định", subject="Kê biên tài sản",
        content="Biên bản kèm theo", signer_competence="", signer_position="",
        signer_name="Nguyễn Văn An", due_date="", priority="0", steering_type="",
        trace=[(BTP, "2026/11/20 09:00:00")], business=Business("0"),
        attachments=[Attachment("cid:1", "bien-ban.odt", "Biên bản", "", buf.getvalue(), "")])
    ident = load_identity(pki / "adapter.key", pki / "adapter.crt")
    packet = serialize(sign_edxml(build_document(doc), ident))
    assert b"<ContentType>application/zip</ContentType>" in packet

    port = free_port()
    hcm = provincial_office(tmp_path, pki, port)
    served = serve_wsgi(build_app(hcm), settings=hcm, port=port)
    try:
        client(hcm, "btp", BTP).send(packet, "edoc")
        service = Service(hcm)
        service.ctx.store.create_schema()
        try:
            assert service.run_once() == 0
        finally:
            service.ctx.close()
    finally:
        served.close()
    with make_engine(hcm.url(hcm.source.url)).connect() as c:
        (row,) = c.execute(select(ReceivedDocumentRow)).all()
    assert (row.attachment, row.attachment_name, row.progress) == (original, "bien-ban.odt",
                                                                   "03")
    with make_engine(hcm.url(hcm.adapter.state_db)).connect() as c:
        stored = c.execute(select(Packet.payload)).scalars().all()
        received = c.execute(select(EvidenceEntry.content_sha256).where(
            EvidenceEntry.event == "received")).scalars().all()
    assert stored == [packet]
    assert received == [hashlib.sha256(packet).hexdigest()]
