"""The zeep-free inbound calls (adapter.transports.soap_inbound) against zeep: list, fetch
and acknowledge give the same results for the same answers, over real HTTP, from the
simulator and from canned answers; hostile answers are refused with a clear reason."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from functools import partial

import pytest
import requests

from adapter.errors import RejectedByPeer, TransportError
from adapter.transports.lgsp import LgspTransport
from adapter.transports.soap_batch import SOAP_NS, wsdl_schema
from adapter.transports.soap_inbound import InboundCalls
from adapter.xml.safe import parse_untrusted
from tests.conftest import serve_wsgi
from tests.helpers import CannedPlatform as Canned
from tests.helpers import soap_envelope as _envelope
from tests.helpers import soap_fault as _fault

TNS = "urn:thads-adapter:lgsp:1"
ME = "000.00.00.G15"


def transports(settings, endpoint: str | None = None) -> tuple[LgspTransport, LgspTransport]:
    """(fast, zeep) for the same endpoint."""
    update = {"endpoint": endpoint} if endpoint else {}
    fast = LgspTransport(settings.lgsp.model_copy(update=update), settings.path)
    slow = LgspTransport(settings.lgsp.model_copy(update={**update, "fast_submit": False}),
                         settings.path)
    assert isinstance(fast.fast_inbound, InboundCalls) and slow.fast_inbound is None
    return fast, slow


def result(call: Callable[[], object]) -> object:
    """Comparable results: values as they are, errors as (class, message, code)."""
    try:
        return call()
    except (TransportError, RejectedByPeer) as exc:
        return ("raised", type(exc).__name__, str(exc), getattr(exc, "code", None))


def three_calls(t: LgspTransport, ids: list[str], acks) -> tuple:
    return (result(lambda: t.list_pending(ME, 50)), result(lambda: t.fetch_many(ids)),
            result(lambda: t.acknowledge_many(acks)))


def test_requests_are_valid_against_the_wsdl(settings):
    fast, _ = transports(settings)
    schema = wsdl_schema(settings.path(settings.lgsp.wsdl))
    calls = fast.fast_inbound
    for c, body in ((calls._list, calls.list_body(ME, 200)),
                    (calls._fetch, calls.fetch_body(["a", "b<&>"])),
                    (calls._ack, calls.ack_body([("a", "accepted", None),
                                                 ("b", "rejected", "bad \x01 & <worse>")]))):
        request = parse_untrusted(c.envelope(body)).find(f"{{{SOAP_NS}}}Body")[0]
        assert schema.validate(request), schema.error_log


def test_same_results_as_zeep_from_the_simulator(settings, sim):
    made = requests.post(sim.url.replace("/lgsp", "/outbox/judgments"),
                         json={"count": 3}, timeout=60).json()["packet_ids"]
    fast, slow = transports(settings)
    listed = fast.list_pending(ME, 50)
    assert sorted(p.packet_id for p in listed) == sorted(made)
    assert listed == slow.list_pending(ME, 50)
    assert fast.list_pending(ME, 2) == slow.list_pending(ME, 2)
    got = fast.fetch_many([*made, "no-such-packet"])
    assert got == slow.fetch_many([*made, "no-such-packet"])
    assert [g.packet_id for g in got] == made and got[0].payload.startswith(b"<")
    # the first acknowledgement is taken; both then answer for the same packets again
    first = fast.acknowledge_many([(made[0], "accepted", None),
                                   (made[1], "rejected", "bad \x01 signature & <more>")])
    assert first == {made[0], made[1]}
    again = [(made[0], "accepted", None), (made[2], "accepted", None)]
    assert fast.acknowledge_many(again) == slow.acknowledge_many(again)
    assert fast.list_pending(ME, 50) == slow.list_pending(ME, 50)
    for faults, words in (({"error_rate": 1.0}, "INTERNAL"),
                          ({"error_rate": 0.0, "down_for_seconds": 30}, "UNAVAILABLE")):
        sim.control(**faults)
        by_fast = three_calls(fast, made, again)
        assert by_fast == three_calls(slow, made, again)
        assert all(r[:2] == ("raised", "TransportError") and words in r[2] for r in by_fast)
    sim.control(down_until=0)


# ---- canned answers ----------------------------------------------------------------------


def _listing(items: list[tuple[str, str, str, str]]) -> bytes:
    inner = "".join(f"<item><packetId>{p}</packetId><kind>{k}</kind><sender>{s}</sender>"
                    f"<size>{n}</size></item>" for p, k, s, n in items)
    return _envelope(f'<ListPendingPacketsResponse xmlns="{TNS}">{inner}'
                     "</ListPendingPacketsResponse>")


def _fetched(items: list[tuple[str, bytes]], wrap: bool = False) -> bytes:
    def b64(data: bytes) -> str:
        text = base64.b64encode(data).decode()
        return "\n".join(text[i:i + 76] for i in range(0, len(text), 76)) if wrap else text
    inner = "".join(f"<item><packetId>{p}</packetId><kind>judgment</kind>"
                    f"<sender>000.00.00.T01</sender><packet>{b64(d)}</packet></item>"
                    for p, d in items)
    return _envelope(f'<FetchPacketResponse xmlns="{TNS}">{inner}</FetchPacketResponse>')


def _acked(results: list[tuple[str, str]]) -> bytes:
    inner = "".join(f"<result><packetId>{p}</packetId><acknowledged>{a}</acknowledged>"
                    "</result>" for p, a in results)
    return _envelope(f'<AcknowledgePacketResponse xmlns="{TNS}">{inner}'
                     "</AcknowledgePacketResponse>")




@pytest.fixture
def canned(settings) -> Iterator[tuple[Canned, LgspTransport, LgspTransport]]:
    app = Canned()
    served = serve_wsgi(app)
    fast, slow = transports(settings, served.url)
    yield app, fast, slow
    fast.close()
    slow.close()
    served.close()


P = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(1, 4)]
CALLS = {
    "list": lambda t: t.list_pending(ME, 10),
    "fetch": lambda t: t.fetch_many(P),
    "ack": lambda t: t.acknowledge_many([(p, "accepted", None) for p in P]),
}
ANSWERS = [
    ("list", "200 OK", _listing([(P[0], "judgment", "000.00.00.T01", "4780"),
                                 (P[1], "judgment", "000.00.00.T02", " +12 ")])),
    ("list", "200 OK", _listing([])),
    ("fetch", "200 OK", _fetched([(P[0], b"<p>\xc3\xa1</p>"), (P[2], b"x" * 200)], wrap=True)),
    ("fetch", "200 OK", _fetched([])),
    ("ack", "200 OK", _acked([(P[0], "true"), (P[1], "false"), (P[2], "1")])),
    ("ack", "200 OK", _acked([(P[1], "0")])),
    ("list", "500 Internal Server Error", _fault("Client")),
    ("fetch", "500 Internal Server Error", _fault("Server")),
    ("ack", "500 Internal Server Error", _fault("Client", retryable="true", code="BUSY")),
    ("list", "500 Internal Server Error", _fault("Client", detail=False)),
    ("fetch", "200 OK", _fault("Client")),
]


@pytest.mark.parametrize("call, status, body", ANSWERS, ids=[
    "list", "list-empty", "fetch-wrapped-base64", "fetch-empty", "ack-mixed", "ack-zero",
    "list-client-fault", "fetch-server-fault", "ack-retryable-fault",
    "list-fault-without-detail", "fetch-fault-with-200"])
def test_same_results_as_zeep_for_canned_answers(canned, call, status, body):
    app, fast, slow = canned
    app.status, app.body = status, body
    assert result(lambda: CALLS[call](fast)) == result(lambda: CALLS[call](slow))


def test_an_empty_503_is_transient_on_both_paths(canned):
    app, fast, slow = canned
    app.status, app.body = "503 Service Unavailable", b""
    for call in CALLS.values():
        assert result(partial(call, fast))[:2] == result(partial(call, slow))[:2] == (
            "raised", "TransportError")


HOSTILE = {
    "doctype-entity": ("list", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>'
                       + _listing([]).split(b"?>", 1)[1], "DOCTYPE"),
    "external-entity": ("fetch", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM '
                        b'"file:///etc/passwd">]><soap:Envelope xmlns:soap="'
                        + SOAP_NS.encode() + b'"><soap:Body>&e;</soap:Body></soap:Envelope>',
                        "DOCTYPE"),
    "wrong-namespace": ("fetch", _fetched([(P[0], b"<p/>")]).replace(
        TNS.encode(), b"urn:forged:1"), "expected {urn:thads-adapter:lgsp:1}"
                                        "FetchPacketResponse"),
    "another-operation's-answer": ("ack", _listing([]), "expected {urn:thads-adapter:lgsp:1}"
                                                        "AcknowledgePacketResponse"),
    "missing-sender": ("list", _listing([(P[0], "judgment", "S", "1")]).replace(
        b"<sender>S</sender>", b""), "sender"),
    "size-not-a-number": ("list", _listing([(P[0], "judgment", "S", "big")]), "big"),
    "packet-not-base64": ("fetch", _fetched([(P[0], b"<p/>")]).replace(
        base64.b64encode(b"<p/>"), b"not*base64!"), "base64"),
    "acknowledged-maybe": ("ack", _acked([(P[0], "maybe")]), "maybe"),
    "not-soap": ("list", b"<html><body>proxy error</body></html>", "not a SOAP 1.1 Envelope"),
    "not-xml": ("fetch", b"<<<garbage", "not well-formed"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_answers_are_refused_with_a_clear_reason(canned, name):
    app, fast, _ = canned
    call, app.body, words = HOSTILE[name]
    with pytest.raises(TransportError, match="unreadable answer from platform") as err:
        CALLS[call](fast)
    assert words in str(err.value)


def test_a_wsdl_of_another_shape_keeps_zeep(settings, tmp_path):
    wsdl = settings.path(settings.lgsp.wsdl).read_text(encoding="utf-8")
    other = tmp_path / "other.wsdl"
    other.write_text(wsdl.replace('<xs:element name="size" type="xs:long"/>',
                                  '<xs:element name="bytes" type="xs:long"/>'),
                     encoding="utf-8")
    t = LgspTransport(settings.lgsp.model_copy(update={"wsdl": str(other)}), settings.path)
    try:
        assert t.fast_inbound is None and t.fast is not None
    finally:
        t.close()
