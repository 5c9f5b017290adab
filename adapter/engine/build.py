"""Map, validate and sign one source record: the CPU-bound half of the outbound path.

Runs inline or in worker processes (two cores: processes, not threads, scale signing). Each
worker loads its key once in its initializer.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adapter.config import Settings, load_settings
from adapter.crypto.keys import SigningIdentity, load_identity
from adapter.crypto.sign import PacketSigner
from adapter.edxml.build import build_document, build_status, sign_edxml
from adapter.edxml.model import (
    STATUS_CODES,
    Attachment,
    Business,
    EdocDocument,
    Organization,
    ResponseFor,
    StatusPacket,
)
from adapter.edxml.parse import edxml_schema
from adapter.errors import ConfigError, PacketError
from adapter.kinds import KindRegistry
from adapter.mapping import MappingSet, PacketHeader, packet_id
from adapter.mapping.transforms import FIELD_TYPES, VN_TZ, FieldValueError
from adapter.sources.changes import SourceRecord
from adapter.store.repository import NewExchange
from adapter.xml.safe import serialize
from adapter.xml.schema import SchemaRegistry

#: the key each signature algorithm needs, as an operator reads it.
_KEY_TYPES: dict[str, tuple[type, str]] = {"rsa-sha256": (rsa.RSAPrivateKey, "an RSA"),
                                           "ecdsa-sha256": (ec.EllipticCurvePrivateKey, "an EC")}


def signing_identity(settings: Settings) -> SigningIdentity:
    """The key and certificate `[signing]` names, checked to suit the configured algorithm:
    configuration names the key, nothing guesses another file."""
    s = settings.signing
    passphrase = os.environ.get(s.key_passphrase_env, "").encode() \
        if s.key_passphrase_env else None
    identity = load_identity(settings.path(s.key), settings.path(s.cert),
                             [settings.path(p) for p in s.chain], passphrase or None)
    wanted, article = _KEY_TYPES[s.algorithm]
    if not isinstance(identity.key, wanted):
        held = next((a for t, a in _KEY_TYPES.values() if isinstance(identity.key, t)),
                    "another")
        raise ConfigError(settings.source_file, "signing.key",
                          f"algorithm {s.algorithm} needs {article} key, but {s.key} holds "
                          f"{held} key: name a matching key in signing.key and signing.cert "
                          "(the dev PKI's EC pair is certs/dev/adapter-ec.key and .crt)")
    return identity


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
            payload = self.signer.sign_bytes(tree, packet=pid)
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

    def organization(self, organ_id: str) -> Organization:
        peer = self.settings.peer_of(organ_id)
        return Organization(organ_id, peer.name if peer else organ_id,
                            address=(peer.address if peer and peer.address else "(chưa khai báo)"))

    def profile_for(self, organ_ids: list[str]) -> str:
        peers = [self.settings.peer_of(o) for o in organ_ids]
        return "legacy" if any(p and p.signature_profile == "legacy" for p in peers) else \
            "default"

    def build(self, record: SourceRecord, now: dt.datetime | None = None) -> NewExchange:
        key, version = record.key, record.version
        pid = packet_id(record.kind, key, version)
        now = (now or dt.datetime.now(dt.UTC)).astimezone(VN_TZ)
        try:
            if self.settings.kinds[record.kind].builder == "edxml-document":
                recipients = self._recipients(record)
                doc = self.document(record.data, recipients, now, record.version)
                root = build_document(doc)
                document_id = doc.document_id
                peer = recipients[0] if len(recipients) == 1 else None
                profile = self.profile_for(recipients)
            else:
                st = self.status(record.data, now)
                root = build_status(st)
                document_id, peer = st.response_for.document_id, st.response_for.organ_id
                recipients = []
                profile = self.profile_for([peer])
            edxml_schema().check(root, packet=f"{record.kind} {key}")
            payload = serialize(sign_edxml(root, self.identity, profile=profile))
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
        return list(route.recipients)

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

    def status(self, d: dict, now: dt.datetime) -> StatusPacket:
        return StatusPacket(
            sender=self.us,
            response_for=ResponseFor(d["sender"], d.get("code") or "",
                                     d.get("promulgation_date") or "", d["document_id"]),
            status_code=d["progress"], description=_text(
                d.get("progress_note") or STATUS_CODES.get(d["progress"], d["progress"])),
            timestamp=now.strftime("%Y/%m/%d %H:%M:%S"),
            staff={"Department": "Văn thư"})


def _text(v: Any) -> str:
    return FIELD_TYPES["text"].to_xml(v)


_worker: PacketBuilder | None = None


def init_worker(config_file: str, environ: dict[str, str] | None = None) -> None:
    global _worker
    _worker = PacketBuilder(load_settings(config_file, environ))


def build_in_worker(args: tuple[SourceRecord, str]) -> NewExchange:
    assert _worker is not None, "init_worker was not called"
    return _worker.build(*args)


def ping(_: int) -> bool:
    """Touch a worker so the pool starts it (and its initializer loads the key)."""
    return _worker is not None
