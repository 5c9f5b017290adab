"""Golden wire tests: complete HTTP requests in the official SDK's format (tests/fixtures/
axis-wire, written from EDXML.md with the standard library only) are checked here against
the document with hmac/hashlib, accepted by the simulated axis, and reproduced field by field
by the adapter's client for the same inputs."""

import base64
import datetime as dt
import hashlib
import hmac
import json
import re

import pytest

from adapter.config import load_settings
from adapter.errors import RejectedByPeer, TransportError
from adapter.sim.server import build_app
from adapter.transports.axis import AxisTransport
from tests.conftest import AXIS_BTP, AXIS_HCM, free_port, serve_wsgi, write_config
from tests.integration.axis_http import WIRE, CaptureServer, RawRequest, fixture, send_raw

SECRETS = {"hcm": b"hcm-secret-for-wire-tests", "btp": b"btp-secret-for-wire-tests"}
ORGS = {"hcm": AXIS_HCM, "btp": AXIS_BTP}
VN = dt.timezone(dt.timedelta(hours=7))
#: 24112026T080642+0260: the fixtures' clock (260 ms, not a +02:60 offset)
CLOCK = dt.datetime(2026, 11, 24, 8, 6, 42, 260_000, tzinfo=VN)
GOLDEN = sorted(p.name for p in WIRE.glob("*.http"))
#: transport-level headers that the HTTP library, not the protocol, decides
TRANSPORT = {"host", "user-agent", "connection", "content-length", "accept",
             "accept-encoding"}


def sdk_hex(data: bytes) -> str:
    return "".join(f"{b:x}" for b in hashlib.sha256(data).digest())


def signed_of(req: RawRequest) -> dict:
    return json.loads(req.header("XroadVnpt-sign-header"))


def sim_config(tmp_path, pki, port, **sim):
    clients = ""
    for sid, secret in SECRETS.items():
        (tmp_path / f"{sid}.secret").write_bytes(secret + b"\n")
        clients += f"""
[[simulator.axis_clients]]
system_id = "{sid}"
organisation_id = "{ORGS[sid]}"
secret_file = "{tmp_path}/{sid}.secret"
"""
    extra = "".join(f"{k} = {v}\n" for k, v in sim.items())
    cfg = write_config(tmp_path, pki, sim_port=port, extra=clients)
    text = cfg.read_text().replace("[simulator]\n", "[simulator]\n" + extra, 1)
    cfg.write_text(text, encoding="utf-8")
    return load_settings(cfg)


@pytest.fixture
def axis(tmp_path, pki):
    port = free_port()
    s = sim_config(tmp_path, pki, port)
    served = serve_wsgi(build_app(s), settings=s, port=port)
    yield port
    served.close()


# ---- the fixtures say what the document says -----------------------------------------

@pytest.mark.parametrize("name", GOLDEN)
def test_fixture_is_signed_as_the_document_says(name):
    req = fixture(name)
    text = req.header("XroadVnpt-sign-header")
    signed = json.loads(text)
    assert text == json.dumps(signed, separators=(",", ":"), ensure_ascii=False)  # compact
    assert all(k.startswith("XroadVnpt-") for k in signed)  # prefixed keys...
    bare = [k[len("XroadVnpt-"):] for k in signed]
    assert req.header("XroadVnpt-sign-header-key").split(";") == bare  # ...bare key list
    system = signed["XroadVnpt-systemid"]
    expected = hmac.new(SECRETS[system], text.encode("utf-8"), hashlib.sha256).hexdigest()
    assert req.header("XroadVnpt-hash-header") == expected
    for key, value in signed.items():
        assert req.header(key) == value
    assert req.header("XroadVnpt-version") == "3.0.201608"
    m = re.fullmatch(r"\d{8}T\d{6}\+(\d{4})", signed["XroadVnpt-timestamp"])
    assert m and int(m[1]) < 1000  # four digits of milliseconds
    assert req.header("Content-Type") == signed["XroadVnpt-Content-Type"]


def test_upload_fixtures_carry_the_raw_file_and_both_hash_forms():
    sdk = fixture("01-sendEdoc.http")
    assert sdk.header("Content-Type") == "application/octet-stream"
    assert sdk.body.startswith(b"<?xml") and sdk.body.endswith(b"</edXML>\n\r\n")
    packet = sdk.body[:-2]  # the SDK's upload helper adds CRLF after the file
    assert signed_of(sdk)["XroadVnpt-hash-file"] == sdk_hex(packet)
    assert len(sdk_hex(packet)) < 64  # unpadded: this digest has bytes below 0x10
    padded = fixture("11-sendEdoc-padded-hash.http")
    assert signed_of(padded)["XroadVnpt-hash-file"] == hashlib.sha256(padded.body).hexdigest()


# ---- the simulator accepts them --------------------------------------------------------

def test_simulator_accepts_the_sdk_requests(axis):
    send = fixture("01-sendEdoc.http")
    code, sent = send_raw("127.0.0.1", axis, send)
    assert code == 200 and (sent["status"], sent["ErrorCode"]) == ("OK", "0"), sent
    doc_id = sent["DocId"]
    assert fixture("05-getEdoc.http").header("XroadVnpt-docId") == doc_id
    _, again = send_raw("127.0.0.1", axis, send)  # the same file again: the same document
    assert again["DocId"] == doc_id

    _, statuses = send_raw("127.0.0.1", axis, fixture("02-getReceivedEdocList-status.http"))
    assert statuses["ErrorCode"] == "0"
    (item,) = statuses["data"]
    assert {k for k in item} >= {"docId", "serviceType", "messageType", "created_time",
                                 "updated_time", "from", "to", "status", "status_desc"}
    assert (item["docId"], item["messageType"], item["from"], item["to"]) == (
        doc_id, "status", AXIS_HCM, AXIS_BTP)
    _, docs = send_raw("127.0.0.1", axis, fixture("03-getReceivedEdocList-edoc.http"))
    assert (docs["ErrorCode"], docs["data"]) == ("0", [])  # one kind per call
    _, count = send_raw("127.0.0.1", axis, fixture("04-countReceiveStatus.http"))
    assert (count["ErrorCode"], count["count"]) == ("0", 1)

    _, got = send_raw("127.0.0.1", axis, fixture("05-getEdoc.http"))
    assert base64.b64decode(got["data"]) == send.body[:-2]
    _, ack = send_raw("127.0.0.1", axis, fixture("06-updateStatus.http"))
    assert (ack["status"], ack["ErrorCode"], ack["ErrorDesc"]) == ("OK", "0", "")
    _, statuses = send_raw("127.0.0.1", axis, fixture("02-getReceivedEdocList-status.http"))
    assert statuses["data"] == []

    _, mine = send_raw("127.0.0.1", axis, fixture("07-getSentEdocList.http"))
    (row,) = mine["data"]
    assert {k for k in row} >= {"serviceType", "senderDocId", "receiverDocId", "fromCode",
                                "toCode", "sendStatus", "sendStatusDesc", "receiveStatus",
                                "receiveStatusDesc", "title", "notation", "messageType",
                                "sentTime", "receivedTime"}
    assert (row["senderDocId"], row["toCode"], row["receiveStatus"]) == (doc_id, AXIS_BTP,
                                                                         "done")


def test_simulator_accepts_a_long_lived_sdk_client_and_the_padded_hash(axis):
    code, listed = send_raw("127.0.0.1", axis, fixture("10-long-lived-client.http"))
    assert code == 200 and listed["ErrorCode"] == "0", listed
    code, sent = send_raw("127.0.0.1", axis, fixture("11-sendEdoc-padded-hash.http"))
    assert code == 200 and sent["ErrorCode"] == "0", sent


# ---- and refuses what it must ---------------------------------------------------------

def resign(req: RawRequest, secret: bytes, **changes: str) -> RawRequest:
    """The request with some signed values changed and a correct HMAC under `secret`."""
    signed = signed_of(req)
    for name, value in changes.items():
        signed["XroadVnpt-" + name.replace("_", "-")] = value
        req = req.replace("XroadVnpt-" + name.replace("_", "-"), value)
    text = json.dumps(signed, separators=(",", ":"), ensure_ascii=False)
    return req.replace("XroadVnpt-sign-header", text).replace(
        "XroadVnpt-hash-header", hmac.new(secret, text.encode(), hashlib.sha256).hexdigest())


def refusal(port, req) -> tuple[int, str, str]:
    code, answer = send_raw("127.0.0.1", port, req)
    assert answer["status"] == "FAIL"
    return code, answer["ErrorCode"], answer["ErrorDesc"]


def test_simulator_refuses_wrong_key_altered_value_unknown_system_and_impostor(axis):
    listing = fixture("02-getReceivedEdocList-status.http")
    assert refusal(axis, resign(listing, b"another key"))[2].startswith(
        "XroadVnpt-hash-header does not match")
    # a value altered in the signed JSON, the HMAC left as it was
    text = listing.header("XroadVnpt-sign-header").replace('"status"', '"edoc"')
    assert "hash-header does not match" in refusal(
        axis, listing.replace("XroadVnpt-sign-header", text))[2]
    # a header altered, the signed JSON intact
    code, err, desc = refusal(axis, listing.replace("XroadVnpt-messagetype", "edoc"))
    assert (code, err) == (401, "401") and "differs from its signed value" in desc
    stranger = resign(listing, b"x", systemid="nobody")
    assert "unknown systemid 'nobody'" in refusal(axis, stranger)[2]
    impostor = resign(fixture("01-sendEdoc.http"), SECRETS["hcm"], **{"from": AXIS_BTP})
    code, err, desc = refusal(axis, impostor)
    assert err == "403" and "is not the organisation of system hcm" in desc
    # nothing was stored by any of them
    _, statuses = send_raw("127.0.0.1", axis, listing)
    assert statuses["data"] == []


def test_simulator_refuses_a_wrong_hash_file_and_a_multipart_body(axis):
    send = fixture("01-sendEdoc.http")
    bad = resign(send, SECRETS["hcm"], hash_file=sdk_hex(send.body + b"x"))
    assert "hash-file does not match" in refusal(axis, bad)[2]
    multipart = RawRequest(send.method, send.path, send.headers,
                           b"--boundary\r\nContent-Disposition: form-data\r\n\r\n" + send.body)
    assert "multipart/form-data" in refusal(axis, multipart)[2]


def test_replay_window_is_a_setting(tmp_path, pki):
    port = free_port()
    s = sim_config(tmp_path, pki, port, axis_max_skew_seconds=300)
    served = serve_wsgi(build_app(s), settings=s, port=port)
    try:
        code, err, desc = refusal(port, fixture("02-getReceivedEdocList-status.http"))
        assert (code, err) == (401, "401") and "stale or replayed" in desc
    finally:
        served.close()


# ---- the client sends the same requests ------------------------------------------------

CANNED = {"sendEdoc": {"DocId": "d-1"}, "getReceivedEdocList": {"data": []},
          "countReceiveStatus": {"count": 0}, "getEdoc": {"data": "PGEvPg=="},
          "updateStatus": {}, "getSentEdocList": {"data": []}}


@pytest.fixture
def capture():
    server = CaptureServer(lambda req: (200, json.dumps(
        {"status": "OK", "ErrorCode": "0", "ErrorDesc": "",
         **CANNED[req.path.rsplit("/", 1)[1]]}).encode()))
    yield server
    server.close()


def client(endpoint: str, system: str, tmp_path) -> AxisTransport:
    from adapter.config import AxisSection
    secret = tmp_path / f"{system}.secret"
    secret.write_bytes(SECRETS[system])
    return AxisTransport(AxisSection(endpoint=endpoint, system_id=system,
                                     secret_file=str(secret)),
                         organisation_id=ORGS[system], clock=lambda: CLOCK)


def compare(golden: RawRequest, sent: RawRequest) -> None:
    assert (sent.method, sent.path) == (golden.method, golden.path)
    assert sent.body == golden.body
    protocol = [(k, v) for k, v in golden.headers if k.lower() not in TRANSPORT]
    for name, value in protocol:  # each header, name in the SDK's case, and its value
        assert (name, sent.header(name)) == (name, value)
        assert name in [k for k, _ in sent.headers], f"{name} sent in another case"
    ours = {k for k, _ in sent.headers if k.lower() not in TRANSPORT}
    assert ours == {k for k, _ in protocol}  # nothing more, nothing less


def test_client_requests_match_the_golden_ones(capture, tmp_path):
    hcm = client(capture.endpoint, "hcm", tmp_path)
    btp = client(capture.endpoint, "btp", tmp_path)
    packet = fixture("01-sendEdoc.http").body[:-2]
    doc_id = fixture("05-getEdoc.http").header("XroadVnpt-docId")
    hcm.send(packet, "status")
    btp.received_statuses()
    btp.received_documents()
    btp.count_received("status")
    btp.get(doc_id)
    btp.update_status(doc_id, "done")
    hcm.sent("status")
    names = ["01-sendEdoc.http", "02-getReceivedEdocList-status.http",
             "03-getReceivedEdocList-edoc.http", "04-countReceiveStatus.http",
             "05-getEdoc.http", "06-updateStatus.http", "07-getSentEdocList.http"]
    assert len(capture.requests) == len(names)
    for name, sent in zip(names, capture.requests, strict=True):
        compare(fixture(name), sent)


def test_received_polls_both_kinds(capture, tmp_path):
    client(capture.endpoint, "btp", tmp_path).received()
    kinds = [signed_of(r)["XroadVnpt-messagetype"] for r in capture.requests]
    assert sorted(kinds) == ["edoc", "status"]


# ---- answers become transient or permanent errors --------------------------------------

@pytest.mark.parametrize(("status", "body", "error", "text"), [
    (200, {"status": "FAIL", "ErrorCode": "17", "ErrorDesc": "Văn bản không hợp lệ"},
     RejectedByPeer, "ErrorCode 17: Văn bản không hợp lệ"),
    (401, {"status": "FAIL", "ErrorCode": "401", "ErrorDesc": "hash-header does not match"},
     RejectedByPeer, "HTTP 401: hash-header does not match"),
    (503, {"status": "FAIL", "ErrorCode": "503", "ErrorDesc": "busy"}, TransportError,
     "HTTP 503: busy"),
    (429, None, TransportError, "HTTP 429"),
    (200, {"status": "OK"}, TransportError, "carries no ErrorCode"),
    (200, None, TransportError, "carries no ErrorCode"),
])
def test_answers_map_to_transient_or_permanent(tmp_path, status, body, error, text):
    raw = json.dumps(body).encode() if body is not None else b"<html>gateway</html>"
    server = CaptureServer(lambda req: (status, raw))
    try:
        with pytest.raises(error, match=re.escape(text)) as ei:
            client(server.endpoint, "btp", tmp_path).received_documents()
        if error is RejectedByPeer:
            assert ei.value.code == body["ErrorCode"]
    finally:
        server.close()


def test_the_simulated_axis_does_not_borrow_the_clients_code():
    """Otherwise these tests would only prove that the client agrees with itself."""
    import ast
    from pathlib import Path

    import adapter.sim
    for path in Path(adapter.sim.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                     for a in n.names]
        assert not [m for m in imported if m.startswith("adapter.transports")], path.name
