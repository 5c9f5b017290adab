"""Who may say what over the axis: the axis sender (the `from` the axis authenticated) must
be the packet's From and a configured peer whose anchors (and named signers) verify the
signature; a status packet counts only from a recipient of the document it answers; a
refused document registers nothing, so it cannot squat the DocumentId of the genuine one."""

import datetime as dt
import sqlite3

import pytest
from sqlalchemy import select

from adapter.config import load_settings
from adapter.crypto.keys import load_identity
from adapter.dbutil import make_engine
from adapter.edxml import build_document, build_status, sign_edxml
from adapter.edxml.model import (
    EDXML_NS,
    Attachment,
    Business,
    EdocDocument,
    Organization,
    ResponseFor,
    StatusPacket,
)
from adapter.engine.axis_inbound import AxisInbound
from adapter.engine.context import Context
from adapter.engine.outbound import OutboundEngine
from adapter.sim.server import build_app
from adapter.sources.models import ReceivedDocumentRow
from adapter.sources.synth import _pdf, generate
from adapter.store.models import Exchange, StatusReport
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
ME = AXIS_BTP
#: the two agencies our decisions go to
R1, R2 = "000.00.01.H01", "000.00.02.H02"
#: a configured peer our decisions do not go to
P = "000.00.08.H08"
#: a participant of the axis no peer entry names
X = "000.00.09.H09"
#: a configured peer that names its signer (the court's certificate, not the dev key)
PINNED = "000.00.07.H07"


def _config(tmp_path, pki, extra=""):
    port = free_port()
    clients = axis_systems_toml(pki, (ME, R1, R2, P, X, PINNED))
    peers = peers_toml(pki, (R1, R2, P)) + f"""
[[peers]]
name = "pinned {PINNED}"
organisation_ids = ["{PINNED}"]
trust_anchors = ["{pki}/ca.crt"]
signer_certificates = ["{pki}/court.crt"]
"""
    return load_settings(write_config(tmp_path, pki, sim_port=port, routes=f"""
[[routes]]
name = "decisions-out"
kind = "edoc"
channel = "axis"
recipients = ["{R1}", "{R2}"]

[[routes]]
name = "axis-in"
kind = "edoc"
direction = "in"
channel = "axis"

[[routes]]
name = "statuses-out"
kind = "status"
channel = "axis"
""", extra=f"""
[axis]
endpoint = "http://127.0.0.1:{port}/axis"
system_id = "s{ME}"
secret_file = "{pki}/axis.secret"
{extra}
{clients}{peers}"""))


@pytest.fixture
def axis(tmp_path, pki):
    s = _config(tmp_path, pki)
    served = serve_wsgi(build_app(s), settings=s, port=s.simulator.port)
    generate(make_engine(s.url(s.source.url)), cases=10)  # one decision; the demo schema
    ctx = Context(s)
    ctx.store.create_schema()
    yield s, ctx
    ctx.close()
    served.close()


def _send(s, pki, as_system: str, packet, *, kind: str, signer: str = "adapter",
          mutate=None) -> None:
    """`as_system` uploads `packet` over the axis, signed with a dev PKI key."""
    identity = load_identity(pki / f"{signer}.key", pki / f"{signer}.crt") \
        if signer != "untrusted" else load_identity(pki / "untrusted" / "signer.key",
                                                    pki / "untrusted" / "signer.crt")
    root = build_status(packet) if kind == "status" else build_document(packet)
    if mutate:
        mutate(root)
    client = AxisTransport(s.axis.model_copy(update={"system_id": f"s{as_system}"}), s.path,
                           organisation_id=as_system)
    try:
        client.send(serialize(sign_edxml(root, identity)), kind)
    finally:
        client.close()


def _relayed_as(s, system_org: str) -> None:
    """The last upload appears on the axis as sent by `system_org`'s system: an axis that
    does not hold a packet's From to its uploader (the simulated one does; the adapter must
    not count on it)."""
    with sqlite3.connect(s.path(s.simulator.db)) as c:
        c.execute("UPDATE axis_edoc SET from_org=? WHERE rowid=(SELECT max(rowid) FROM "
                  "axis_edoc)", (system_org,))


def _document(author: str, document_id: str, subject: str) -> EdocDocument:
    return EdocDocument(
        sender=Organization(author, f"Cục THADS {author}", "", f"Địa chỉ {author}"),
        recipients=[Organization(ME, "Cục Quản lý THADS", "", "Hà Nội")],
        document_id=document_id, code_number="125", code_notation="QĐ-CTHADS",
        place="Hà Nội", promulgation_date="2026/11/20", doc_type="1", type_detail="",
        type_name="Quyết định", subject=subject, content=subject,
        signer_competence="", signer_position="", signer_name="Nguyễn Văn An", due_date="",
        priority="0", steering_type="", trace=[(author, "2026/11/20 09:00:00")],
        business=Business("0"),
        attachments=[Attachment("cid:1", "qd.pdf", subject, "", _pdf(subject), "")])


def _status(author: str, document_id: str, code: str) -> StatusPacket:
    return StatusPacket(Organization(author, f"Cục THADS {author}", "", f"Địa chỉ {author}"),
                        ResponseFor(ME, "", "", document_id), code, f"mã {code}",
                        dt.datetime.now().strftime("%Y/%m/%d %H:%M:%S"),
                        {"Department": "Văn thư"})


def _inbound(ctx) -> list:
    with ctx.state_engine.connect() as c:
        return c.execute(select(Exchange.peer, Exchange.state, Exchange.last_error,
                                Exchange.document_id).where(Exchange.direction == "in")
                         .order_by(Exchange.id)).all()


def _received(s) -> list:
    with make_engine(s.url(s.source.url)).connect() as c:
        return c.execute(select(ReceivedDocumentRow.document_id, ReceivedDocumentRow.sender,
                                ReceivedDocumentRow.progress, ReceivedDocumentRow.subject)
                         ).all()


def test_a_document_whose_from_is_not_the_axis_sender_is_refused(axis, pki):
    s, ctx = axis
    # R2's system uploads a validly signed document that claims to come from R1
    _send(s, pki, R1, _document(R1, f"{R1},2026/11/20,125/QĐ-CTHADS", "Giả mạo"), kind="edoc")
    _relayed_as(s, R2)
    stats = AxisInbound(ctx).pull(s.route("axis-in"))
    assert (stats.accepted, stats.rejected) == (0, 1)
    ((peer, state, error, document_id),) = _inbound(ctx)
    assert (peer, state, document_id) == (R2, "failed", None)
    assert f"From {R1!r} is not the axis sender {R2!r}" in error
    assert _received(s) == []


def test_a_document_from_a_peer_is_verified_against_the_signers_it_names(axis, pki):
    s, ctx = axis
    _send(s, pki, PINNED, _document(PINNED, f"{PINNED},2026/11/20,125/QĐ-CTHADS", "Ký lạ"),
          kind="edoc")  # signed with the dev key, the peer names the court's certificate
    AxisInbound(ctx).pull(s.route("axis-in"))
    ((_, state, error, _),) = _inbound(ctx)
    assert state == "failed" and "signature untrusted" in error
    assert "is not a signer configured for peer pinned" in error
    assert _received(s) == []


def test_a_status_counts_only_from_a_recipient_of_the_document(axis, pki):
    s, ctx = axis
    out = OutboundEngine(ctx)
    out.prepare(s.route("decisions-out"))
    out.deliver(s.route("decisions-out"))
    with ctx.state_engine.connect() as c:
        ex_id, document_id = c.execute(select(Exchange.id, Exchange.document_id).where(
            Exchange.kind == "edoc", Exchange.direction == "out")).one()
    inbound = AxisInbound(ctx)
    # an unconfigured participant answers in its own name and in R1's; a peer that is no
    # recipient answers in its own
    _send(s, pki, X, _status(X, document_id, "03"), kind="status")
    _send(s, pki, R1, _status(R1, document_id, "02"), kind="status")
    _relayed_as(s, X)
    _send(s, pki, P, _status(P, document_id, "02"), kind="status")
    stats = inbound.pull(s.route("axis-in"))
    assert (stats.statuses, stats.rejected) == (0, 3)
    errors = [(peer, error) for peer, _, error, _ in _inbound(ctx)]
    assert [p for p, _ in errors] == [X, X, P]
    assert all(f"no peer is configured for axis sender {X!r}" in e for _, e in errors[:2])
    assert f"from {P}, which is not one of its recipients" in errors[2][1]
    with ctx.state_engine.connect() as c:
        assert c.execute(select(StatusReport.id)).all() == []
        assert c.execute(select(Exchange.state, Exchange.last_error)
                         .where(Exchange.id == ex_id)).one() == ("sent", None)
    # the recipients themselves are heard
    for org in (R1, R2):
        _send(s, pki, org, _status(org, document_id, "03"), kind="status")
    assert inbound.pull(s.route("axis-in")).statuses == 2
    with ctx.state_engine.connect() as c:
        assert c.execute(select(Exchange.state).where(Exchange.id == ex_id)).scalar() \
            == "delivered"


def test_a_refused_document_does_not_squat_its_document_id(axis, pki):
    s, ctx = axis
    document_id = f"{R1},2026/11/20,125/QĐ-CTHADS"
    inbound = AxisInbound(ctx)
    # first an unknown participant, then R1's own system with a signer nobody trusts
    _send(s, pki, X, _document(X, document_id, "Kẻ chiếm chỗ"), kind="edoc")
    inbound.pull(s.route("axis-in"))
    _send(s, pki, R1, _document(R1, document_id, "Chữ ký lạ"), kind="edoc",
          signer="untrusted")
    inbound.pull(s.route("axis-in"))
    assert _received(s) == []
    # the genuine document still gets in, under its DocumentId
    _send(s, pki, R1, _document(R1, document_id, "Văn bản thật"), kind="edoc")
    stats = inbound.pull(s.route("axis-in"))
    assert (stats.accepted, stats.rejected) == (1, 0)
    assert _received(s) == [(document_id, R1, "03", "Văn bản thật")]
    rows = _inbound(ctx)
    assert [(peer, state, d) for peer, state, _, d in rows] == [
        (X, "failed", None), (R1, "failed", None), (R1, "delivered", document_id)]
    # R1 heard 02 for the badly signed one, then 01 and 03 for the genuine one
    with ctx.state_engine.connect() as c:
        replies = c.execute(select(Exchange.source_version).where(
            Exchange.kind == "status", Exchange.direction == "out")
            .order_by(Exchange.id)).scalars().all()
    assert replies == [2, 1, 3]


def test_trace_hops_without_an_organisation_are_logged_and_recorded(axis, pki, caplog):
    s, ctx = axis
    doc = _document(R1, f"{R1},2026/11/20,126/QĐ-CTHADS", "Qua trục")
    doc.trace.append((R1, "2026/11/20 09:00:05"))

    def hop_in_transit(root):  # a hop the axis added without its organisation
        root.findall(f".//{{{EDXML_NS}}}TraceHeader/{{{EDXML_NS}}}OrganId")[1].text = "null"
    _send(s, pki, R1, doc, kind="edoc", mutate=hop_in_transit)
    with caplog.at_level("INFO", logger="adapter.axis"):
        assert AxisInbound(ctx).pull(s.route("axis-in")).accepted == 1
    with ctx.state_engine.connect() as c:
        ex_id, pid = c.execute(select(Exchange.id, Exchange.packet_id)
                               .where(Exchange.direction == "in")).one()
    (flag,) = [f for f in ctx.store.flags_of(ex_id) if "TraceHeader" in f]
    assert "TraceHeader 2 has OrganId 'null'" in flag and "flagged" in flag
    assert any(pid in r.getMessage() and "TraceHeader 2" in r.getMessage()
               for r in caplog.records)


def test_an_axis_round_costs_four_transactions_whatever_its_size(axis, pki):
    from sqlalchemy import event

    s, ctx = axis
    for n in range(3):
        _send(s, pki, R1, _document(R1, f"{R1},2026/11/20,{130 + n}/QĐ-CTHADS", f"Số {n}"),
              kind="edoc")
    commits = []
    for e in (ctx.state_engine, ctx.source_engine):
        event.listen(e, "commit", lambda _conn: commits.append(1))
    stats = AxisInbound(ctx).pull(s.route("axis-in"))
    assert (stats.received, stats.accepted, stats.acknowledged) == (3, 3, 3)
    # store; documents into received_documents; outcomes with the 01/03 replies; answers
    assert len(commits) == 4


def test_an_axis_packet_over_the_size_limit_is_not_stored(tmp_path, pki):
    s = _config(tmp_path, pki, extra="[inbound]\nmax_packet_bytes = 4096\n")
    served = serve_wsgi(build_app(s), settings=s, port=s.simulator.port)
    generate(make_engine(s.url(s.source.url)), cases=10)
    ctx = Context(s)
    ctx.store.create_schema()
    try:
        _send(s, pki, R1, _document(R1, f"{R1},2026/11/20,140/QĐ-CTHADS", "Lớn " * 2000),
              kind="edoc")
        stats = AxisInbound(ctx).pull(s.route("axis-in"))
        assert (stats.received, stats.rejected, stats.acknowledged) == (1, 1, 1)
        with ctx.state_engine.connect() as c:
            pid, error = c.execute(select(Exchange.packet_id, Exchange.last_error)).one()
        assert "exceed the limit of 4096" in error
        assert ctx.store.payload_of(pid) == b""  # refused before it is kept
        assert _received(s) == []
    finally:
        ctx.close()
        served.close()


def test_status_replies_made_on_receipt_are_not_built_again_by_the_status_route(axis, pki):
    """Receiving a document makes its 01/03 replies at once (axis_inbound), without moving
    the status route's cursor: the route's next round must find them, not sign them again."""
    s, ctx = axis
    _send(s, pki, R1, _document(R1, f"{R1},2026/11/20,126/QĐ-CTHADS", "Trả lời ngay"),
          kind="edoc")
    assert AxisInbound(ctx).pull(s.route("axis-in")).accepted == 1

    def replies() -> list:
        with ctx.state_engine.connect() as c:
            return c.execute(select(Exchange.packet_id).where(
                Exchange.kind == "status", Exchange.direction == "out")).scalars().all()

    made = replies()
    assert made  # the replies of the receipt
    built: list = []
    build_many = ctx.build_many
    ctx.build_many = lambda rs, to: built.extend(rs) or build_many(rs, to)  # type: ignore
    stats = OutboundEngine(ctx).prepare(s.route("statuses-out"))
    assert (stats.prepared, stats.rejected, built) == (0, 0, [])
    assert replies() == made
