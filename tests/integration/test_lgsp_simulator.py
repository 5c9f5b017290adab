"""The zeep transport against the simulator over real HTTP on loopback."""

import time

import pytest
from lxml import etree

from adapter.crypto import PacketSigner, load_identity
from adapter.errors import ConfigError, RejectedByPeer, TransportError
from adapter.transports.base import PlatformReceipt, SubmitItem
from adapter.transports.lgsp import LgspTransport
from adapter.xml.safe import serialize
from tests.conftest import free_port, serve_wsgi
from tests.helpers import N, build_packet, sample_record


@pytest.fixture(scope="module")
def signer(pki):
    return PacketSigner(load_identity(pki / "adapter.key", pki / "adapter.crt"))


@pytest.fixture
def transport(settings, sim):
    t = LgspTransport(settings.lgsp, settings.path)
    yield t
    t.close()


def signed(signer, kind="case", key="K-1", record=None, mutate=None):
    root = build_packet(kind, record=record, key=key)
    if mutate:
        mutate(root)
    return root.findtext(f"{N}Header/{N}PacketId"), serialize(signer.sign(root))


def submit(t, pid, payload, kind="case"):
    return t.submit(packet_id=pid, kind=kind, sender="000.00.00.G15", payload=payload)


def test_accepted_then_duplicate_gets_the_original_receipt(transport, sim, signer):
    import hashlib
    pid, data = signed(signer)
    first = submit(transport, pid, data)
    assert first.status == "accepted" and first.packet_id == pid
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    again = submit(transport, pid, data)
    assert again.status == "duplicate"
    assert again.platform_message_id == first.platform_message_id
    report = sim.report()
    assert report["accepted"] == 1 and report["packets"][pid] == 2


def test_tampered_packet_is_refused_with_the_platform_reason(transport, signer):
    pid, data = signed(signer)
    bad = data.replace(b"000.00.00.G22", b"000.00.00.G23", 1)
    with pytest.raises(RejectedByPeer) as ei:
        submit(transport, pid, bad)
    assert ei.value.code == "SIGNATURE_INVALID"
    assert "changed after signing" in ei.value.reason


def test_untrusted_signer_and_unsigned_packets_are_refused(transport, pki):
    rogue = PacketSigner(load_identity(pki / "untrusted" / "signer.key",
                                       pki / "untrusted" / "signer.crt"))
    pid, data = signed(rogue)
    with pytest.raises(RejectedByPeer) as ei:
        submit(transport, pid, data)
    assert ei.value.code == "SIGNATURE_UNTRUSTED"
    root = build_packet("case", key="K-2")
    with pytest.raises(RejectedByPeer) as ei:
        submit(transport, root.findtext(f"{N}Header/{N}PacketId"), serialize(root))
    assert ei.value.code == "SIGNATURE_ABSENT"


def test_validly_signed_but_schema_invalid_packet_is_refused(transport, signer):
    pid, data = signed(signer, mutate=lambda r: setattr(r.find(f"{N}Status"), "text", "xong"))
    with pytest.raises(RejectedByPeer) as ei:
        submit(transport, pid, data)
    assert ei.value.code == "SCHEMA_INVALID" and "Status" in ei.value.reason


def test_business_rule_words_must_read_the_amount(transport, signer):
    rec = sample_record("receipt")
    rec["amount"], rec["amount_words"] = 1_200_000, None

    def spoil(root):
        root.find(f"{N}AmountInWords").text = "Một triệu đồng"

    pid, data = signed(signer, "receipt", record=rec, mutate=spoil)
    with pytest.raises(RejectedByPeer) as ei:
        submit(transport, pid, data, kind="receipt")
    assert ei.value.code == "BUSINESS_REJECTED" and "1200000" in ei.value.reason


def test_packet_id_must_match_the_signed_header(transport, signer):
    _, data = signed(signer)
    with pytest.raises(RejectedByPeer) as ei:
        submit(transport, "00000000-0000-0000-0000-000000000001", data)
    assert ei.value.code == "PACKET_ID_MISMATCH"


def test_server_errors_and_outages_are_transient(transport, sim, signer):
    pid, data = signed(signer)
    sim.control(error_rate=1.0)
    with pytest.raises(TransportError, match="INTERNAL"):
        submit(transport, pid, data)
    sim.control(error_rate=0.0, down_for_seconds=30)
    with pytest.raises(TransportError, match="UNAVAILABLE"):
        submit(transport, pid, data)
    sim.control(down_until=0)
    assert submit(transport, pid, data).status == "accepted"


def test_a_lost_answer_is_retried_and_deduplicated(transport, sim, signer):
    pid, data = signed(signer)
    sim.control(lost_response_rate=1.0)
    with pytest.raises(TransportError):
        submit(transport, pid, data)
    sim.control(lost_response_rate=0.0)
    assert submit(transport, pid, data).status == "duplicate"
    assert sim.report()["accepted"] == 1


def test_operation_timeout_is_enforced(settings, sim, signer):
    cfg = settings.lgsp.model_copy(update={"operation_timeout": 0.5})
    t = LgspTransport(cfg, settings.path)
    sim.control(timeout_rate=1.0, timeout_seconds=3)
    pid, data = signed(signer)
    t0 = time.monotonic()
    with pytest.raises(TransportError, match="timed out"):
        submit(t, pid, data)
    assert time.monotonic() - t0 < 2.5
    sim.control(timeout_rate=0.0)


def test_connection_refused_is_transient(settings, signer):
    cfg = settings.lgsp.model_copy(update={"endpoint": f"http://127.0.0.1:{free_port()}/lgsp"})
    pid, data = signed(signer)
    with pytest.raises(TransportError, match="cannot reach"):
        submit(LgspTransport(cfg, settings.path), pid, data)


def test_batch_call_gives_each_packet_its_own_outcome(transport, sim, signer):
    good = [signed(signer, key=f"B-{i}") for i in range(3)]
    bad_pid, bad = signed(signer, key="B-bad")
    bad = bad.replace(b"000.00.00.G22", b"000.00.00.G23", 1)
    items = [SubmitItem(p, "case", "000.00.00.G15", d) for p, d in good]
    items.insert(1, SubmitItem(bad_pid, "case", "000.00.00.G15", bad))
    out = transport.submit_many(items)
    assert [type(o).__name__ for o in out] == ["PlatformReceipt", "RejectedByPeer",
                                               "PlatformReceipt", "PlatformReceipt"]
    assert isinstance(out[0], PlatformReceipt) and out[0].packet_id == good[0][0]
    assert out[1].code == "SIGNATURE_INVALID"
    again = transport.submit_many(items[:1])
    assert again[0].status == "duplicate"


def test_query_status(transport, signer):
    pid, data = signed(signer)
    assert transport.query_status(pid).status == "unknown"
    submit(transport, pid, data)
    st = transport.query_status(pid)
    assert st.status == "delivered" and st.platform_message_id


def test_simulator_store_survives_a_restart(settings, sim, signer):
    from adapter.sim.server import build_app
    pid, data = signed(signer)
    t = LgspTransport(settings.lgsp, settings.path)
    first = submit(t, pid, data)
    sim.close()
    app = build_app(settings)  # a new process would open the same file
    served = serve_wsgi(app)
    cfg = settings.lgsp.model_copy(update={"endpoint": served.url})
    again = submit(LgspTransport(cfg, settings.path), pid, data)
    served.close()
    assert again.status == "duplicate"
    assert again.platform_message_id == first.platform_message_id


def test_platform_answer_with_a_doctype_is_refused(settings, signer):
    body = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
            b"<soap:Body>&e;</soap:Body></soap:Envelope>")

    def evil(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/xml")])
        return [body]

    served = serve_wsgi(evil)
    cfg = settings.lgsp.model_copy(update={"endpoint": served.url})
    pid, data = signed(signer)
    try:
        with pytest.raises(TransportError, match="unreadable answer"):
            submit(LgspTransport(cfg, settings.path), pid, data)
    finally:
        served.close()


def test_operation_names_come_from_configuration(settings):
    ops = settings.lgsp.operations.model_copy(update={"submit": "SendDocument"})
    cfg = settings.lgsp.model_copy(update={"operations": ops})
    with pytest.raises(ConfigError, match="no operation 'SendDocument'"):
        LgspTransport(cfg, settings.path)


def test_simulator_refuses_a_soap_request_with_entities(sim):
    import requests
    evil = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>'
            b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
            b"<soap:Body>&e;</soap:Body></soap:Envelope>")
    r = requests.post(sim.url, data=evil, timeout=5)
    assert r.status_code == 500
    assert b"DOCTYPE" in r.content and etree.fromstring(r.content) is not None
