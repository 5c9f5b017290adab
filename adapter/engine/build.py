"""Map, validate and sign one source record: the CPU-bound half of the outbound path.

Runs inline or in worker processes (two cores: processes, not threads, scale signing). Each
worker loads its key once in its initializer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from adapter.config import Settings, load_settings
from adapter.crypto.keys import SigningIdentity, configured_identity
from adapter.crypto.sign import PacketSigner
from adapter.edxml.build import build_document, sign_edxml
from adapter.edxml.model import Attachment, Business, EdocDocument, Organization
from adapter.edxml.parse import edxml_schema
from adapter.engine.status_packets import StatusPackets
from adapter.errors import PacketError
from adapter.kinds import KindRegistry
from adapter.mapping import MappingSet, PacketHeader, packet_id
from adapter.mapping.transforms import FIELD_TYPES, VN_TZ, FieldValueError
from adapter.sources.changes import SourceRecord
from adapter.store.repository import NewExchange
from adapter.xml.safe import serialize
from adapter.xml.schema import SchemaRegistry


def signing_identity(settings: Settings) -> SigningIdentity:
    """The key (file or token) and certificate `[signing]` names, with its rotation."""
    return configured_identity(settings)


class PacketBuilder:
    def __init__(self, settings: Settings, kinds: KindRegistry | None = None) -> None:
        self.kinds = kinds or settings.kinds
        self.identity = signing_identity(settings)
        self.signer = PacketSigner(self.identity, settings.signing.algorithm)
        self.mappings = MappingSet(self.kinds)
        self.schemas = SchemaRegistry.for_kinds(self.kinds)
        self.sender = settings.adapter.organisation_id
        self.edxml = EdxmlBuilder(settings, self.identity)

    def build(self, record: SourceRecord, recipient: str,
              now: dt.datetime | None = None) -> NewExchange:
        """The signed packet, or the reason it cannot be one (the batch goes on)."""
        if self.kinds[record.kind].builder != "mapped":
            return self.edxml.build(record, now)
        pid = packet_id(record.kind, record.key, record.version)
        header = PacketHeader(pid, record.key, record.version, self.sender, recipient,
                              now or dt.datetime.now(dt.UTC))
        try:
            tree = self.mappings[record.kind].to_xml(record.data, header)
            self.schemas.check(tree, packet=f"{record.kind} {record.key}")
            # the key follows the packet's stated creation time (key rotation)
            payload = self.signer.sign_bytes(tree, packet=pid, at=header.created_at)
        except PacketError as exc:
            return NewExchange(pid, record.kind, record.key, record.version, recipient,
                               error=str(exc))
        return NewExchange(pid, record.kind, record.key, record.version, recipient,
                           payload=payload)


class EdxmlBuilder:
    """Enforcement decisions as edXML documents; office progress as edXML status packets."""

    def __init__(self, settings: Settings, identity: SigningIdentity) -> None:
        self.settings, self.identity = settings, identity
        a = settings.adapter
        self.us = Organization(a.organisation_id, a.organisation_name, a.organisation_name,
                               a.organisation_address)
        self.statuses = StatusPackets(settings, identity)

    def organization(self, organ_id: str) -> Organization:
        peer = self.settings.peer_of(organ_id)
        return Organization(organ_id, peer.name if peer else organ_id,
                            address=(peer.address if peer and peer.address else "(chưa khai báo)"))

    def profile_for(self, organ_ids: list[str]) -> str:
        peers = [self.settings.peer_of(o) for o in organ_ids]
        return "legacy" if any(p and p.signature_profile == "legacy" for p in peers) else \
            "default"

    def build(self, record: SourceRecord, now: dt.datetime | None = None) -> NewExchange:
        if self.settings.kinds[record.kind].builder != "edxml-document":
            return self.statuses.build(record, now)  # the one producer of status packets
        key, version = record.key, record.version
        pid = packet_id(record.kind, key, version)
        now = (now or dt.datetime.now(dt.UTC)).astimezone(VN_TZ)
        try:
            recipients = self._recipients(record)
            doc = self.document(record.data, recipients, now, record.version)
            root = build_document(doc)
            document_id = doc.document_id
            peer = recipients[0] if len(recipients) == 1 else None
            profile = self.profile_for(recipients)
            edxml_schema().check(root, packet=f"{record.kind} {key}")
            payload = serialize(sign_edxml(root, self.identity.at(now), profile=profile))
        except (PacketError, FieldValueError, KeyError, ValueError) as exc:
            return NewExchange(pid, record.kind, key[:80], version, None,
                               error=f"packet {record.kind} {key}: {exc}")
        return NewExchange(pid, record.kind, key[:80], version, peer, payload=payload,
                           document_id=document_id, recipients=tuple(recipients))

    def _recipients(self, record: SourceRecord) -> list[str]:
        route = next((r for r in self.settings.routes
                      if r.kind == record.kind and r.direction == "out"), None)
        if route is None:
            raise ValueError(f"no outbound {record.kind} route with recipients is configured")
        found = list(route.recipients)
        for name in route.recipient_fields:
            value = str(record.data.get(name) or "").strip()
            if not value:
                raise ValueError(f"field {name}: no recipient organisation id")
            found.append(FIELD_TYPES["org_id"].to_xml(value))  # refuses a malformed id
        found += route.extra_recipients
        return list(dict.fromkeys(found))  # each agency once, in the order configured

    def document(self, d: dict, recipients: list[str], now: dt.datetime,
                 version: int) -> EdocDocument:
        date = d["decision_date"].strftime("%Y/%m/%d")
        number, notation = str(d["code_number"]), str(d["code_notation"])
        document_id = f"{self.us.organ_id},{date},{number}/{notation}"
        data = d.get("document") or b""
        if not data:
            raise ValueError("field document: the decision has no PDF")
        return EdocDocument(
            sender=self.us, recipients=[self.organization(o) for o in recipients],
            document_id=document_id, code_number=number, code_notation=notation,
            place=d.get("place") or "", promulgation_date=date, doc_type="1", type_detail="",
            type_name=d.get("type_name") or "Quyết định", subject=_text(d["subject"]),
            content=_text(d.get("content") or d["subject"]),
            signer_competence=d.get("signer_competence") or "",
            signer_position=d.get("signer_position") or "",
            signer_name=_text(d["signer_name"]), due_date="", priority="0", steering_type="",
            trace=[(self.us.organ_id, now.strftime("%Y/%m/%d %H:%M:%S"))],
            business=Business("0" if version == 1 else "2",
                              document_id if version > 1 else ""),
            attachments=[Attachment(f"cid:{d['decision_code']}", d.get("document_name")
                                    or "quyet-dinh.pdf", _text(d["subject"]), "", data, "")])


def _text(v: Any) -> str:
    return FIELD_TYPES["text"].to_xml(v)


_worker: PacketBuilder | None = None


def init_worker(config_file: str, environ: dict[str, str] | None = None) -> None:
    global _worker
    from adapter.service.lifeline import die_with_multiprocessing_parent

    die_with_multiprocessing_parent()  # a killed service leaves no worker behind
    _worker = PacketBuilder(load_settings(config_file, environ))


def build_in_worker(args: tuple[SourceRecord, str]) -> NewExchange:
    assert _worker is not None, "init_worker was not called"
    return _worker.build(*args)


def ping(_: int) -> bool:
    """Touch a worker so the pool starts it (and its initializer loads the key)."""
    return _worker is not None
