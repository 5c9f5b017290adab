"""The one producer of edXML status packets (QCVN 102:2016, StatusCode 01-06).

Two moments answer a received document: reception (engine.axis_inbound) answers 01 (arrived)
and 03 (accepted and registered) or 02 (refused, with the reason) at once; change capture
answers 04-06 as the office records progress in `received_documents` (the `status` kind,
built through engine.build). Both come here, so a status packet has one shape, one packet
id rule (the document's DocumentId and the code) and one signature profile rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from adapter.config import Settings
from adapter.crypto.keys import SigningIdentity
from adapter.edxml.build import build_status, sign_edxml
from adapter.edxml.model import STATUS_CODES, Organization, ResponseFor, StatusPacket
from adapter.edxml.parse import edxml_schema
from adapter.errors import PacketError
from adapter.mapping import packet_id
from adapter.mapping.transforms import FIELD_TYPES, VN_TZ, FieldValueError
from adapter.sources.changes import SourceCursor, SourceRecord
from adapter.store.records import NewExchange
from adapter.xml.safe import serialize

#: reception's answers (the office's later progress comes from change capture)
ARRIVED = "01"
REFUSED = "02"
REGISTERED = "03"
ARRIVED_NOTE = "Đã đến: văn bản đã được tiếp nhận vào hệ thống"
REGISTERED_NOTE = "Đã tiếp nhận và vào sổ"
_NO_CURSOR = SourceCursor(dt.datetime(1970, 1, 1), 0)


def refusal_note(reason: str) -> str:
    return f"Từ chối: {reason}"[:500]


class StatusPackets:
    """Builds and signs status packets about documents we received."""

    def __init__(self, settings: Settings, identity: SigningIdentity) -> None:
        self.settings, self.identity = settings, identity
        a = settings.adapter
        self.us = Organization(a.organisation_id, a.organisation_name, a.organisation_name,
                               a.organisation_address)
        self.kind = next((s.name for s in settings.kinds if s.builder == "edxml-status"),
                         "status")

    def answer(self, document: Mapping[str, Any], code: str, note: str | None,
               now: dt.datetime | None = None) -> NewExchange:
        """Reception's answer `code` about a document (a `received_documents` row, or the
        same fields of a refused document that was not registered)."""
        return self.build(SourceRecord(self.kind, str(document["document_id"]), int(code),
                                       _NO_CURSOR,
                                       dict(document, progress=code, progress_note=note)),
                          now)

    def build(self, record: SourceRecord, now: dt.datetime | None = None) -> NewExchange:
        """The signed status packet of a record (key: DocumentId, version: the code), or
        the reason it cannot be one."""
        key, version = record.key, record.version
        pid = packet_id(record.kind, key, version)
        now = (now or dt.datetime.now(dt.UTC)).astimezone(VN_TZ)
        try:
            st = self.status(record.data, now)
            peer = st.response_for.organ_id
            root = build_status(st)
            edxml_schema().check(root, packet=f"{record.kind} {key}")
            payload = serialize(sign_edxml(root, self.identity.at(now),
                                           profile=self._profile(peer)))
        except (PacketError, FieldValueError, KeyError, ValueError) as exc:
            return NewExchange(pid, record.kind, key[:80], version, None,
                               error=f"packet {record.kind} {key}: {exc}")
        return NewExchange(pid, record.kind, key[:80], version, peer, payload=payload,
                           document_id=st.response_for.document_id)

    def status(self, d: Mapping[str, Any], now: dt.datetime) -> StatusPacket:
        return StatusPacket(
            sender=self.us,
            response_for=ResponseFor(d["sender"], d.get("code") or "",
                                     d.get("promulgation_date") or "", d["document_id"]),
            status_code=d["progress"], description=FIELD_TYPES["text"].to_xml(
                d.get("progress_note") or STATUS_CODES.get(d["progress"], d["progress"])),
            timestamp=now.strftime("%Y/%m/%d %H:%M:%S"),
            staff={"Department": "Văn thư"})

    def _profile(self, organ_id: str) -> str:
        peer = self.settings.peer_of(organ_id)
        return "legacy" if peer and peer.signature_profile == "legacy" else "default"
