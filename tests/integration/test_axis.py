"""The document-axis transport against the simulated axis, which checks like a strict
server: HMAC over the signed headers, every header equal to its signed value, fresh time."""

import datetime as dt

import pytest
import requests

from adapter.config import AxisSection, load_settings
from adapter.errors import RejectedByPeer
from adapter.sim.server import build_app
from adapter.transports.axis import AxisTransport
from adapter.transports.axis_auth import AxisAuthError, check_headers, sign_headers, timestamp
from tests.conftest import AXIS_BTP, AXIS_HCM, axis_toml, free_port, serve_wsgi, write_config

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


def status_packet(to: str = BTP) -> bytes:
    from adapter.edxml import build_status
    from adapter.edxml.model import Organization, ResponseFor, StatusPacket
    from adapter.xml.safe import serialize
    st = StatusPacket(Organization(HCM, "Cục THADS TP.HCM", "", "TP.HCM"),
                      ResponseFor(to, "125/QĐ-CTHADS", "2026/11/20",
                                  f"{to},2026/11/20,125/QĐ-CTHADS"),
                      "01", "Đã đến", "2026/11/23 10:00:00")
    return serialize(build_status(st))


def test_send_list_get_ack_and_sent_state(axis_sim):
    hcm, btp = client(axis_sim, "hcm", HCM), client(axis_sim)
    data = status_packet()
    doc_id = hcm.send(data, "status")
    assert hcm.send(data, "status") == doc_id  # a re-sent file is the same document
    (item,) = btp.received()
    assert (item.doc_id, item.sender, item.message_type) == (doc_id, HCM, "status")
    assert btp.get(doc_id) == data
    btp.update_status(doc_id, "done")
    assert btp.received() == []
    (sent,) = hcm.sent()
    assert sent["status"] == "done" and sent["to"] == BTP and sent["sends"] == 2


def test_wrong_key_is_refused(axis_sim, tmp_path):
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("00" * 32)
    with pytest.raises(RejectedByPeer, match="hash-header does not match"):
        client(axis_sim, secret_file=str(wrong)).received()


def _raw(axis_sim, headers):
    return requests.post(axis_sim.axis.endpoint + "/getReceivedEdocList", data=b"{}",
                         headers={"Content-Type": "application/json", **headers}, timeout=10)


def _values(ts=None):
    return {"systemid": "btp", "timestamp": ts or timestamp(), "content-type": "application/json",
            "servicetype": "eDoc"}


def test_altered_header_is_refused(axis_sim, pki):
    secret = (pki / "axis.secret").read_text().strip().encode()
    headers = sign_headers(_values(), secret)
    headers["XroadVnpt-servicetype"] = "eDoc2"  # altered after signing
    r = _raw(axis_sim, headers)
    assert r.status_code == 401 and "differs from its signed value" in r.json()["ErrorDesc"]


def test_stale_timestamp_is_refused(axis_sim, pki):
    secret = (pki / "axis.secret").read_text().strip().encode()
    old = timestamp(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    r = _raw(axis_sim, sign_headers(_values(old), secret))
    assert r.status_code == 401 and "stale or replayed" in r.json()["ErrorDesc"]
    fresh = _raw(axis_sim, sign_headers(_values(), secret))
    assert fresh.status_code == 200, fresh.text  # the same request, fresh, passes


def test_missing_signature_and_unknown_system_are_refused(axis_sim, pki):
    assert _raw(axis_sim, {}).status_code == 401
    secret = (pki / "axis.secret").read_text().strip().encode()
    r = _raw(axis_sim, sign_headers(dict(_values(), systemid="nobody"), secret))
    assert r.status_code == 401 and "unknown systemid" in r.json()["ErrorDesc"]


def test_check_headers_requires_the_calls_keys():
    secret = b"k"
    headers = sign_headers({"systemid": "a", "timestamp": timestamp(),
                            "content-type": "application/json"}, secret)
    with pytest.raises(AxisAuthError, match="lack docid"):
        check_headers(headers, "/getEdoc", lambda _: secret)


def test_hash_file_must_match_the_upload(axis_sim, pki):
    import hashlib

    from urllib3 import encode_multipart_formdata
    secret = (pki / "axis.secret").read_text().strip().encode()
    data = status_packet()
    body, ctype = encode_multipart_formdata({"file_doc": ("p.edxml", data, "application/xml")})
    values = {"systemid": "hcm", "timestamp": timestamp(), "content-type": ctype,
              "from": HCM, "servicetype": "eDoc", "messagetype": "status",
              "hash-file": hashlib.sha256(data + b"x").hexdigest()}
    r = requests.post(axis_sim.axis.endpoint + "/sendEdoc", data=body, timeout=10,
                      headers={"Content-Type": ctype, **sign_headers(values, secret)})
    assert r.status_code == 400 and "hash-file does not match" in r.json()["ErrorDesc"]
    values["hash-file"] = hashlib.sha256(data).hexdigest()
    ok = requests.post(axis_sim.axis.endpoint + "/sendEdoc", data=body, timeout=10,
                       headers={"Content-Type": ctype, **sign_headers(values, secret)})
    assert ok.status_code == 200 and ok.json()["DocId"]


def test_sender_cannot_claim_another_organisation(axis_sim):
    with pytest.raises(RejectedByPeer, match="is not the organisation of"):
        AxisTransport(axis_sim.axis.model_copy(update={"system_id": "hcm"}), axis_sim.path,
                      organisation_id=BTP).send(status_packet(), "status")


def test_unreachable_axis_is_transient(axis_sim):
    from adapter.errors import TransportError
    cfg = AxisSection(endpoint=f"http://127.0.0.1:{free_port()}/axis", system_id="btp",
                      secret_file=axis_sim.axis.secret_file)
    with pytest.raises(TransportError):
        AxisTransport(cfg, axis_sim.path, organisation_id=BTP).received()
