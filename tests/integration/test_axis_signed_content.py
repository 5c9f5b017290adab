"""Through the axis, end to end: a comment inserted into the signed Subject of a document
(outside the c14n digest, so the signature stays valid) does not change what the office
receives in `received_documents`."""

from sqlalchemy import select

from adapter.crypto.keys import load_identity
from adapter.dbutil import make_engine
from adapter.edxml import build_document, sign_edxml
from adapter.edxml.model import Business, EdocDocument, Organization
from adapter.service.runner import Service
from adapter.sim.server import build_app
from adapter.sources.models import ReceivedDocumentRow
from adapter.transports.axis import AxisTransport
from adapter.xml.safe import serialize
from tests.conftest import (
    AXIS_BTP,
    AXIS_HCM,
    free_port,
    provincial_office,
    serve_wsgi,
)

BTP, HCM = AXIS_BTP, AXIS_HCM
SUBJECT = "Quyết định thi hành án số 125 bị hủy bỏ"


def _commented_packet(pki) -> bytes:
    doc = EdocDocument(
        sender=Organization(BTP, "Cục Quản lý THADS", "", "58-60 Trần Phú, Hà Nội"),
        recipients=[Organization(HCM, "Cục THADS TP.HCM", "", "TP.HCM")],
        document_id=f"{BTP},2026/11/20,125/QĐ-TCTHADS", code_number="125",
        code_notation="QĐ-TCTHADS", place="Hà Nội", promulgation_date="2026/11/20",
        doc_type="1", type_detail="", type_name="Quyết định", subject=SUBJECT,
        content="Thi hành bản án", signer_competence="", signer_position="",
        signer_name="Nguyễn Văn An", due_date="", priority="0", steering_type="",
        trace=[(BTP, "2026/11/20 09:00:00")], business=Business("0"))
    ident = load_identity(pki / "adapter.key", pki / "adapter.crt")
    packet = serialize(sign_edxml(build_document(doc), ident))
    return packet.replace("bị hủy bỏ".encode(), "bị hủy<!----> bỏ".encode())


def test_the_office_receives_the_signed_subject(tmp_path, pki):
    packet = _commented_packet(pki)
    port = free_port()
    hcm = provincial_office(tmp_path, pki, port)
    served = serve_wsgi(build_app(hcm), settings=hcm, port=port)
    try:
        axis = hcm.axis.model_copy(update={"system_id": "btp"})
        AxisTransport(axis, hcm.path, organisation_id=BTP).send(packet, "edoc")
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
    assert (row.subject, row.signature, row.progress) == (SUBJECT, "valid", "03")
