"""Client of the national document axis, speaking the official SDK's wire format.

Every call is a POST to `<endpoint>/<call>` with HMAC-signed `XroadVnpt-*` headers
(axis_auth.py) answering JSON that carries `status`, `ErrorCode` (`"0"` = success) and
`ErrorDesc`. sendEdoc uploads the raw .edxml as `application/octet-stream` (the bytes and a
CRLF, as the SDK's upload helper writes them); the list calls ask for one `messagetype` per
call, so documents and status packets are polled separately.

Errors are classified here, at the edge: an outage (connection, timeout, HTTP 5xx or 429,
an answer that is not the axis's JSON) is a `TransportError`, to retry; a refusal (a non-zero
`ErrorCode`, HTTP 4xx) is `RejectedByPeer`, carrying the axis's code and description.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import requests

from adapter.config import AxisSection
from adapter.errors import ConfigError, RejectedByPeer, TransportError
from adapter.transports.axis_auth import (
    Clock,
    sdk_hash_file,
    sdk_timestamp,
    signed_headers,
    vietnam_now,
)
from adapter.transports.base import (
    FetchedPacket,
    ItemOutcome,
    PendingPacket,
    PlatformReceipt,
    SubmitItem,
)

MESSAGE_TYPES = ("edoc", "status")
SERVICE_TYPE = "eDoc"
JSON, OCTETS = "application/json", "application/octet-stream"


@dataclass(frozen=True)
class AxisItem:
    """One entry of getReceivedEdocList, under the SDK's field names."""

    doc_id: str
    sender: str
    message_type: str
    status: str
    created_time: str = ""
    status_desc: str = ""


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


def _message_type(message_type: str) -> str:
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"messagetype must be edoc or status, not {message_type!r}")
    return message_type


class AxisTransport:
    def __init__(self, cfg: AxisSection, resolve=Path, *, organisation_id: str,
                 clock: Clock = vietnam_now) -> None:
        self.cfg, self.organisation_id, self.clock = cfg, organisation_id, clock
        self.secret = read_secret(cfg, resolve)
        self.base = cfg.endpoint.rstrip("/")
        s = requests.Session()
        s.trust_env = False
        s.verify = str(resolve(cfg.ca_file)) if cfg.ca_file else True
        self.session = s

    # ---- the wire --------------------------------------------------------------------

    def _call(self, call: str, values: list[tuple[str, str]], *, body: bytes = b"",
              content_type: str = JSON, method: str = "POST") -> dict:
        signed = [("systemid", self.cfg.system_id), *values,
                  ("timestamp", sdk_timestamp(self.clock())), ("Content-Type", content_type)]
        headers = signed_headers(signed, self.secret)
        try:
            r = self.session.request(method, f"{self.base}/{call}", data=body or None,
                                     headers=headers,
                                     timeout=(self.cfg.connect_timeout,
                                              self.cfg.operation_timeout))
        except requests.exceptions.Timeout:
            raise TransportError(f"axis {call}: timed out") from None
        except requests.exceptions.ConnectionError as exc:
            raise TransportError(f"axis {call}: cannot reach the axis: {exc}"[:300]) from None
        return self._answer(call, r)

    @staticmethod
    def _answer(call: str, r: requests.Response) -> dict:
        try:
            answer = r.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        code = answer.get("ErrorCode")
        desc = str(answer.get("ErrorDesc") or r.reason or "").strip()
        if r.status_code >= 500 or r.status_code == 429:
            raise TransportError(f"axis {call}: HTTP {r.status_code}: {desc}"[:500])
        if r.status_code >= 400:
            raise RejectedByPeer(f"axis {call}: HTTP {r.status_code}: {desc}"[:500],
                                 str(code if code is not None else r.status_code))
        if code is None:
            # a gateway's page or a half-written answer: not the axis speaking
            raise TransportError(f"axis {call}: the answer carries no ErrorCode "
                                 f"(HTTP {r.status_code}, {r.headers.get('Content-Type')})")
        if str(code) != "0":
            raise RejectedByPeer(f"axis {call}: ErrorCode {code}: {desc or 'no description'}"
                                 [:500], str(code))
        return answer

    # ---- the five calls, and the two counts -------------------------------------------

    def send(self, data: bytes, message_type: str) -> str:
        """Upload one edXML packet (edoc or status); returns the axis's DocId."""
        answer = self._call("sendEdoc", [
            ("from", self.organisation_id), ("servicetype", SERVICE_TYPE),
            ("messagetype", _message_type(message_type)), ("hash-file", sdk_hash_file(data))],
            body=data + b"\r\n", content_type=OCTETS)
        doc_id = answer.get("DocId")
        if not doc_id:
            raise RejectedByPeer("axis sendEdoc: ErrorCode 0 but no DocId in the answer")
        return str(doc_id)

    def received_list(self, message_type: str) -> list[AxisItem]:
        """What waits for us of one kind: `edoc` (documents) or `status` (status packets)."""
        answer = self._call("getReceivedEdocList", [
            ("servicetype", SERVICE_TYPE), ("messagetype", _message_type(message_type))])
        return [AxisItem(str(i["docId"]), str(i.get("from") or ""),
                         str(i.get("messageType") or message_type), str(i.get("status") or ""),
                         str(i.get("created_time") or ""), str(i.get("status_desc") or ""))
                for i in answer.get("data") or [] if i.get("docId")]

    def received_documents(self) -> list[AxisItem]:
        return self.received_list("edoc")

    def received_statuses(self) -> list[AxisItem]:
        return self.received_list("status")

    def received(self) -> list[AxisItem]:
        """Both kinds, interleaved so that a long queue of one never starves the other
        (the engine takes the first `batch_size`)."""
        docs, statuses = self.received_documents(), self.received_statuses()
        out: list[AxisItem] = []
        for i in range(max(len(docs), len(statuses))):
            out.extend(x[i] for x in (statuses, docs) if i < len(x))
        return out

    def get(self, doc_id: str) -> bytes:
        answer = self._call("getEdoc", [("docId", doc_id)], body=b"{}")
        try:
            return base64.b64decode(answer["data"], validate=True)
        except (KeyError, TypeError, ValueError):
            raise RejectedByPeer(f"axis getEdoc {doc_id}: data is not base64") from None

    def update_status(self, doc_id: str, status: str) -> None:
        if status not in ("done", "fail"):
            raise ValueError(status)
        self._call("updateStatus", [("docId", doc_id), ("status", status)])

    def sent(self, message_type: str = "edoc") -> list[dict]:
        """getSentEdocList items of one kind, under the SDK's field names."""
        return list(self._call("getSentEdocList", [
            ("servicetype", SERVICE_TYPE),
            ("messagetype", _message_type(message_type))]).get("data") or [])

    def count_received(self, message_type: str) -> int:
        """countReceiveEdoc / countReceiveStatus: a GET, as the SDK sends them."""
        call = "countReceiveEdoc" if _message_type(message_type) == "edoc" \
            else "countReceiveStatus"
        answer = self._call(call, [("servicetype", SERVICE_TYPE),
                                   ("messagetype", message_type)], method="GET")
        return int(answer.get("count") or 0)

    # ---- the engine's interface --------------------------------------------------------

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

    # ---- the inbound interface (transports.base.InboundTransport) ----------------------

    def list_pending(self, recipient: str, limit: int) -> list[PendingPacket]:
        """Documents and status packets waiting for us (interleaved), under the axis's
        DocIds; the sender is the `from` the axis authenticated. The axis lists only what
        waits for this system, so `recipient` is ours by construction."""
        return [PendingPacket(i.doc_id, "status" if i.message_type == "status" else "edoc",
                              i.sender, 0) for i in self.received()[:limit]]

    def fetch(self, packet_id: str) -> FetchedPacket:
        """One packet by DocId (kind and sender are the listing's)."""
        return FetchedPacket(packet_id, "", "", self.get(packet_id))

    def acknowledge(self, packet_id: str, outcome: str, reason: str | None = None) -> bool:
        """updateStatus: `done` (taken, whatever the business answer) or `fail`."""
        self.update_status(packet_id, outcome)
        return True

    def close(self) -> None:
        self.session.close()
