"""The zeep-free batch call (adapter.transports.soap_batch) against zeep: the same answers
give the same outcomes, over real HTTP, from the simulator and from canned answers; hostile
answers are refused with a clear reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapter.crypto import PacketSigner, load_identity
from adapter.errors import RejectedByPeer, TransportError
from adapter.transports.base import PlatformReceipt, SubmitItem
from adapter.transports.lgsp import LgspTransport
from adapter.transports.soap_batch import BatchSubmitter, wsdl_schema
from adapter.xml.safe import parse_untrusted, serialize
from tests.conftest import serve_wsgi
from tests.helpers import CannedPlatform as Canned
from tests.helpers import N, build_packet
from tests.helpers import soap_envelope as _envelope
from tests.helpers import soap_fault as _fault

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "urn:thads-adapter:lgsp:1"
SENDER = "000.00.00.G15"


@pytest.fixture(scope="module")
def signer(pki):
    return PacketSigner(load_identity(pki / "adapter.key", pki / "adapter.crt"))


def signed(signer, key: str) -> tuple[str, bytes]:
    root = build_packet("case", key=key)
    return root.findtext(f"{N}Header/{N}PacketId"), serialize(signer.sign(root))


def transports(settings, endpoint: str | None = None) -> tuple[LgspTransport, LgspTransport]:
    """(fast, zeep) for the same endpoint."""
    update = {"endpoint": endpoint} if endpoint else {}
    fast = LgspTransport(settings.lgsp.model_copy(update=update), settings.path)
    slow = LgspTransport(settings.lgsp.model_copy(update={**update, "fast_submit": False}),
                         settings.path)
    assert isinstance(fast.fast, BatchSubmitter) and slow.fast is None
    return fast, slow


def outcome(t: LgspTransport, items: list[SubmitItem]) -> list | tuple:
    """Comparable outcomes: receipts as they are, errors as (class, message, code)."""
    def plain(o):
        if isinstance(o, PlatformReceipt):
            return o
        return (type(o).__name__, str(o), getattr(o, "code", None))
    try:
        return [plain(o) for o in t.submit_many(items)]
    except (TransportError, RejectedByPeer) as exc:
        return ("raised", *plain(exc))


def batch(signer, tag: str) -> list[SubmitItem]:
    good = [signed(signer, f"{tag}-{i}") for i in range(3)]
    bad_pid, bad = signed(signer, f"{tag}-bad")
    bad = bad.replace(b"000.00.00.G22", b"000.00.00.G23", 1)  # breaks the signature
    items = [SubmitItem(p, "case", SENDER, d) for p, d in good]
    items.insert(1, SubmitItem(bad_pid, "case", SENDER, bad))
    return items


def test_the_envelope_is_valid_against_the_wsdl(settings, signer):
    fast, _ = transports(settings)
    env = parse_untrusted(fast.fast.envelope(batch(signer, "E")))
    request = env.find(f"{{{SOAP}}}Body")[0]
    schema = wsdl_schema(settings.path(settings.lgsp.wsdl))
    assert schema.validate(request), schema.error_log


def test_same_outcomes_as_zeep_from_the_simulator(settings, sim, signer):
    fast, slow = transports(settings)
    items = batch(signer, "S")
    first = outcome(fast, items)
    assert [type(o).__name__ for o in first] == ["PlatformReceipt", "tuple",
                                                 "PlatformReceipt", "PlatformReceipt"]
    assert first[0].status == "accepted" and first[1][0] == "RejectedByPeer"
    # both resend the batch: the platform answers duplicates with the original receipts
    by_zeep, by_fast = outcome(slow, items), outcome(fast, items)
    assert by_fast == by_zeep
    assert by_fast[0].status == "duplicate"
    assert by_fast[0].platform_message_id == first[0].platform_message_id
    assert by_fast[0].received_at is not None
    for faults, words in (({"error_rate": 1.0}, "INTERNAL"),
                          ({"error_rate": 0.0, "down_for_seconds": 30}, "UNAVAILABLE")):
        sim.control(**faults)
        by_zeep, by_fast = outcome(slow, items), outcome(fast, items)
        assert by_fast == by_zeep and by_fast[:2] == ("raised", "TransportError")
        assert words in by_fast[2]
    sim.control(down_until=0)


# ---- canned answers ----------------------------------------------------------------------


def _receipt(pid: str, status: str = "accepted") -> str:
    return (f"<receipt><platformMessageId>M-{pid[:8]}</platformMessageId>"
            f"<packetId>{pid}</packetId><status>{status}</status>"
            f"<receivedAt>2026-11-30T10:00:00.250000+00:00</receivedAt>"
            f"<sha256>{'ab' * 32}</sha256></receipt>")


def _refusal(code: str, retryable: str) -> str:
    return (f"<refusal><code>{code}</code><reason>refused: {code}</reason>"
            f"<retryable>{retryable}</retryable></refusal>")


def _answer(results: list[tuple[str, str]]) -> bytes:
    inner = "".join(f"<result><packetId>{pid}</packetId>{what}</result>"
                    for pid, what in results)
    return _envelope(f'<SubmitPacketBatchResponse xmlns="{TNS}">{inner}'
                     "</SubmitPacketBatchResponse>")




@pytest.fixture
def canned(settings) -> Iterator[tuple[Canned, LgspTransport, LgspTransport]]:
    app = Canned()
    served = serve_wsgi(app)
    fast, slow = transports(settings, served.url)
    yield app, fast, slow
    fast.close()
    slow.close()
    served.close()


ITEMS = [SubmitItem(f"00000000-0000-0000-0000-00000000000{i}", "case", SENDER, b"<p/>")
         for i in range(1, 6)]
P = [it.packet_id for it in ITEMS]


@pytest.mark.parametrize("status, body", [
    ("200 OK", _answer([(P[0], _receipt(P[0])), (P[1], _refusal("SCHEMA_INVALID", "false")),
                        (P[2], _refusal("BUSY", "true")), (P[3], _receipt(P[3], "queued"))])),
    ("200 OK", _answer([(P[4], _receipt(P[4], "duplicate")), (P[0], _refusal("X", "1")),
                        (P[1], _refusal("Y", "0"))])),
    ("500 Internal Server Error", _fault("Client")),
    ("500 Internal Server Error", _fault("Server")),
    ("500 Internal Server Error", _fault("Client", retryable="true", code="THROTTLED")),
    ("500 Internal Server Error", _fault("Client", detail=False)),
    ("200 OK", _fault("Client")),
    ("503 Service Unavailable", b""),
], ids=["mixed", "out-of-order", "client-fault", "server-fault", "retryable-fault",
        "fault-without-detail", "fault-with-200", "empty-503"])
def test_same_outcomes_as_zeep_for_canned_answers(canned, status, body):
    app, fast, slow = canned
    app.status, app.body = status, body
    by_fast, by_zeep = outcome(fast, ITEMS), outcome(slow, ITEMS)
    if status.startswith("503"):  # both transient; the wording is each path's own
        assert by_fast[:2] == by_zeep[:2] == ("raised", "TransportError")
        return
    assert by_fast == by_zeep


HOSTILE = {
    "doctype-entity": (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>'
                       + _answer([(P[0], _receipt(P[0]))]).split(b"?>", 1)[1],
                       "DOCTYPE"),
    "external-entity": (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM '
                        b'"file:///etc/passwd">]><soap:Envelope xmlns:soap="' + SOAP.encode()
                        + b'"><soap:Body>&e;</soap:Body></soap:Envelope>', "DOCTYPE"),
    "wrong-namespace": (_answer([(P[0], _receipt(P[0]))]).replace(
        TNS.encode(), b"urn:forged:1"), "expected {urn:thads-adapter:lgsp:1}"
                                         "SubmitPacketBatchResponse"),
    "missing-sha256": (_answer([(P[0], _receipt(P[0]).replace(
        f"<sha256>{'ab' * 32}</sha256>", ""))]), "sha256"),
    "missing-packet-id": (_answer([(P[0], _receipt(P[0]))]).replace(
        f"<result><packetId>{P[0]}</packetId>".encode(), b"<result>"), "packetId"),
    "bad-status": (_answer([(P[0], _receipt(P[0], "stolen"))]), "stolen"),
    "not-soap": (b"<html><body>proxy error</body></html>", "not a SOAP 1.1 Envelope"),
    "not-xml": (b"<<<garbage", "not well-formed"),
    "two-answers": (_envelope(f'<SubmitPacketBatchResponse xmlns="{TNS}"/>' * 2),
                    "found"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_answers_are_refused_with_a_clear_reason(canned, name):
    app, fast, _ = canned
    app.body, words = HOSTILE[name]
    with pytest.raises(TransportError, match="unreadable answer from platform") as err:
        fast.submit_many(ITEMS)
    assert words in str(err.value)
