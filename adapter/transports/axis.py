"""Client of the national document axis: REST calls answering JSON, every request
authenticated with HMAC-signed `XroadVnpt-*` headers (axis_auth.py).

One keep-alive session, explicit connect and read timeouts, no proxy lookups from the
environment. Errors are classified like the SOAP channel's: refusals (4xx, FAIL answers)
are `RejectedByPeer`, outages (connection, timeout, 5xx, 429) are `TransportError`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import requests
from urllib3 import encode_multipart_formdata

from adapter.config import AxisSection
from adapter.errors import ConfigError, RejectedByPeer, TransportError
from adapter.transports.axis_auth import sign_headers, timestamp
from adapter.transports.base import ItemOutcome, PlatformReceipt, SubmitItem


@dataclass(frozen=True)
class AxisItem:
    doc_id: str
    sender: str
    message_type: str
    status: str


def read_secret(cfg: AxisSection, resolve=Path) -> bytes:
    if cfg.secret_env:
        value = os.environ.get(cfg.secret_env)
        if not value:
            raise ConfigError("axis", "axis.secret_env", f"${cfg.secret_env} is not set")
        return value.strip().encode()
    if cfg.secret_file:
        try:
            return resolve(cfg.secret_file).read_text().strip().encode()
        except OSError as exc:
            raise ConfigError("axis", "axis.secret_file", f"cannot read: {exc.strerror}") from None
    raise ConfigError("axis", "axis.secret_file", "set secret_file or secret_env")


class AxisTransport:
    def __init__(self, cfg: AxisSection, resolve=Path, *, organisation_id: str) -> None:
        self.cfg, self.organisation_id = cfg, organisation_id
        self.secret = read_secret(cfg, resolve)
        self.base = cfg.endpoint.rstrip("/")
        s = requests.Session()
        s.trust_env = False
        s.verify = str(resolve(cfg.ca_file)) if cfg.ca_file else True
        self.session = s

    def _post(self, path: str, values: dict[str, str], *, body: bytes = b"{}",
              content_type: str = "application/json") -> dict:
        signed = {"systemid": self.cfg.system_id, "timestamp": timestamp(),
                  "content-type": content_type, **values}
        headers = sign_headers(signed, self.secret)
        headers["Content-Type"] = content_type
        try:
            r = self.session.post(self.base + path, data=body, headers=headers,
                                  timeout=(self.cfg.connect_timeout, self.cfg.operation_timeout))
        except requests.exceptions.Timeout:
            raise TransportError(f"axis {path}: timed out") from None
        except requests.exceptions.ConnectionError as exc:
            raise TransportError(f"axis {path}: cannot reach the axis: {exc}"[:300]) from None
        try:
            answer = r.json()
        except ValueError:
            answer = {}
        reason = answer.get("ErrorDesc") or answer.get("error") or r.reason
        if r.status_code >= 500 or r.status_code == 429:
            raise TransportError(f"axis {path}: HTTP {r.status_code}: {reason}")
        if r.status_code >= 400 or answer.get("status") != "OK":
            raise RejectedByPeer(f"axis {path}: {reason}", str(r.status_code))
        return answer

    def send(self, data: bytes, message_type: str) -> str:
        """Upload one edXML packet (edoc or status); returns the axis's DocId."""
        body, ctype = encode_multipart_formdata(
            {"file_doc": ("packet.edxml", data, "application/xml")})
        answer = self._post("/sendEdoc", {
            "from": self.organisation_id, "servicetype": "eDoc", "messagetype": message_type,
            "hash-file": hashlib.sha256(data).hexdigest()}, body=body, content_type=ctype)
        return str(answer["DocId"])

    def received(self) -> list[AxisItem]:
        answer = self._post("/getReceivedEdocList", {"servicetype": "eDoc"})
        return [AxisItem(str(i["docId"]), i.get("from", ""), i.get("messageType", ""),
                         i.get("status", "")) for i in answer.get("data", [])]

    def get(self, doc_id: str) -> bytes:
        answer = self._post("/getEdoc", {"docid": doc_id})
        return base64.b64decode(answer["data"])

    def update_status(self, doc_id: str, status: str) -> None:
        if status not in ("done", "fail"):
            raise ValueError(status)
        self._post("/updateStatus", {"docid": doc_id, "status": status})

    def sent(self) -> list[dict]:
        return list(self._post("/getSentEdocList", {"servicetype": "eDoc"}).get("data", []))

    def submit_many(self, items: list[SubmitItem]) -> list[ItemOutcome]:
        """The axis takes one file per call; a document is `queued` until its recipients
        report, a status packet is `accepted` once the axis has it."""
        out: list[ItemOutcome] = []
        for it in items:
            mtype = "status" if it.kind == "status" else "edoc"
            try:
                doc_id = self.send(it.payload, mtype)
            except (RejectedByPeer, TransportError) as exc:
                out.append(exc)
                continue
            out.append(PlatformReceipt(doc_id, it.packet_id,
                                       "accepted" if mtype == "status" else "queued", None,
                                       hashlib.sha256(it.payload).hexdigest()))
        return out

    def close(self) -> None:
        self.session.close()
