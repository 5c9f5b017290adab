"""THADS packets received over LGSP (judgments from the courts), as a channel of the inbound
pipeline (engine.pipeline): list -> fetch -> store -> parse once -> verify -> validate ->
import -> acknowledge.

The route's kind decides everything kind-specific through the registry (adapter/kinds.py):
its mapping and schema, the root element expected, the key column and the table the
records go to (sources.writer.RecordImporter). Business data is read only from the signed
data verification returns; the signer is held to the peer's anchors and, when the peer
names its signers, to those (trust.peer_pin).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from lxml import etree

from adapter.config import PeerSection, RouteSection
from adapter.crypto.keys import load_certificates
from adapter.crypto.trust import peer_pin
from adapter.crypto.verify import PacketVerifier
from adapter.engine.context import Context
from adapter.engine.failures import reason_of, traceback_of
from adapter.engine.pipeline import (
    Accepted,
    Checked,
    Concluded,
    InboundPipeline,
    Quarantine,
    Refused,
)
from adapter.errors import PacketError, SignatureError
from adapter.kinds import KindSpec
from adapter.mapping import MappingSet
from adapter.sources.writer import ImportResult, RecordImporter
from adapter.store.records import InboundOutcome, InboundState, StoredPacket
from adapter.transports.base import PendingPacket
from adapter.xml.safe import parse_untrusted
from adapter.xml.schema import SchemaRegistry

__all__ = ["InboundEngine", "PullStats", "Quarantine"]

log = logging.getLogger("adapter.inbound")


@dataclass
class PullStats:
    received: int = 0
    imported: int = 0
    quarantined: int = 0
    acknowledged: int = 0


@dataclass(frozen=True)
class _Record:
    """A packet that passed every check: the record to import, under its version."""

    record: dict[str, Any]
    version: int


class MappedKindChannel:
    """One mapped kind received over LGSP (the route's kind: judgments today)."""

    name = "lgsp"

    def __init__(self, ctx: Context, spec: KindSpec, schemas: SchemaRegistry,
                 mappings: MappingSet, verifiers: dict[str, PacketVerifier]) -> None:
        self.ctx, self.spec = ctx, spec
        self.schemas, self.mappings, self._verifiers = schemas, mappings, verifiers
        self.importer = RecordImporter(ctx.source_engine, spec)

    def packet_id(self, item: PendingPacket) -> str:
        return item.packet_id  # LGSP packet ids are ours (deterministic, signed)

    def require(self) -> None:
        self.importer.require()

    def replies_route(self) -> str | None:
        return None

    def _verifier(self, peer: PeerSection) -> PacketVerifier:
        if peer.name not in self._verifiers:
            path = self.ctx.settings.path
            anchors = [c for p in peer.trust_anchors for c in load_certificates(path(p))]
            self._verifiers[peer.name] = PacketVerifier(anchors, pin=peer_pin(peer, path))
        return self._verifiers[peer.name]

    # ---- the checks, in order ----------------------------------------------------------

    def check(self, p: StoredPacket) -> Checked:
        pid, sender = p.packet_id, p.peer
        signature: str | None = None
        try:
            peer = self.ctx.settings.peer_of(sender)
            if peer is None:
                raise Quarantine(f"packet {pid}: no peer is configured for sender {sender!r}")
            limit = self.ctx.settings.inbound.max_packet_bytes
            try:  # parsed once by the verifier (adapter.xml.safe), then by signxml
                signed = self._verifier(peer).verify(p.payload, packet=pid,
                                                     max_bytes=limit).root
                signature = "valid"
            except SignatureError as exc:
                signature = exc.outcome
                if peer.signature_policy == "reject":
                    raise
                log.warning("accepted under policy 'flag' with signature %s: %s",
                            exc.outcome, exc)
                signed = parse_untrusted(p.payload, name=pid, max_bytes=limit)
            self.schemas.check(signed, packet=pid)
            mapping = self.mappings[self.spec.name]
            if signed.tag != mapping.element:
                expected = etree.QName(mapping.element).localname
                raise Quarantine(f"packet {pid}: expected a {expected} ({self.spec.name}), "
                                 f"got <{etree.QName(signed).localname}>")
            header = mapping.header_of(signed)
            self._check_header(pid, sender, peer, header)
            record = mapping.from_xml(signed)
            self._check_document(pid, record)
            return Accepted(_Record(record, int(header["Version"])), signature)
        except (PacketError, Quarantine) as exc:
            return Refused(str(exc), signature)

    def _check_header(self, pid: str, sender: str, peer: PeerSection,
                      header: dict[str, str]) -> None:
        me = self.ctx.settings.adapter.organisation_id
        if header.get("PacketId") != pid:
            raise Quarantine(f"packet {pid}: signed header names packet "
                             f"{header.get('PacketId')!r}")
        if header.get("Sender") != sender or header.get("Sender") not in peer.organisation_ids:
            raise Quarantine(f"packet {pid}: signed sender {header.get('Sender')!r} is not the "
                             f"platform's sender {sender!r} of peer {peer.name!r}")
        if header.get("Recipient") != me:
            raise Quarantine(f"packet {pid}: addressed to {header.get('Recipient')!r}, not {me}")

    @staticmethod
    def _check_document(pid: str, record: dict[str, Any]) -> None:
        doc = record.get("document")
        if doc is None:
            return
        digest = hashlib.sha256(doc).hexdigest()
        if digest != record.get("document_sha256"):
            raise Quarantine(f"packet {pid}: element Document/Content: SHA-256 {digest[:16]}… "
                             f"does not match Document/Sha256 "
                             f"{(record.get('document_sha256') or '')[:16]}…")
        if not doc.startswith(b"%PDF-"):
            kind = "a ZIP archive" if doc.startswith(b"PK\x03\x04") else "not a PDF"
            raise Quarantine(f"packet {pid}: element Document/Content is {kind} (checked by "
                             "content, not by the declared media type)")

    # ---- import and outcome --------------------------------------------------------------

    def import_many(self, accepted: Sequence[tuple[StoredPacket, Accepted]]
                    ) -> list[ImportResult | Exception]:
        return self.importer.import_many([(a.item.record, a.item.version)
                                          for _, a in accepted])

    def conclude(self, p: StoredPacket, checked: Checked, imported: Any) -> Concluded:
        pid = p.packet_id
        if isinstance(checked, Refused):
            return Concluded(InboundOutcome(p.exchange_id, False, checked.reason,
                                            checked.signature))
        rec: _Record = checked.item
        key, version = str(rec.record[self.spec.key]), rec.version
        if isinstance(imported, Exception):
            log.error("packet %s: import failed\n%s", pid, traceback_of(imported))
            return Concluded(InboundOutcome(
                p.exchange_id, False, f"packet {pid}: import into the enforcement database "
                                      f"failed: {reason_of(imported)}", checked.signature))
        if isinstance(imported, ImportResult) and imported.status == "stale":
            return Concluded(InboundOutcome(
                p.exchange_id, False, f"packet {pid}: {self.spec.name} {key} version "
                f"{version} is older than the stored version {imported.stored_version} "
                "(replay refused)", checked.signature))
        return Concluded(InboundOutcome(p.exchange_id, True, None, checked.signature, key,
                                        version))

    def answer(self, state: InboundState) -> tuple[str, str | None]:
        return ("accepted" if state.state == "delivered" else "rejected", state.last_error)


class InboundEngine:
    """Pulls the LGSP routes: one pipeline per route, with its kind's channel."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._verifiers: dict[str, PacketVerifier] = {}
        self._channels: dict[str, MappedKindChannel] = {}

    @cached_property
    def schemas(self) -> SchemaRegistry:
        return SchemaRegistry.for_kinds(self.ctx.settings.kinds)

    @cached_property
    def mappings(self) -> MappingSet:
        return MappingSet(self.ctx.settings.kinds)

    def channel(self, route: RouteSection) -> MappedKindChannel:
        if route.name not in self._channels:
            self._channels[route.name] = MappedKindChannel(
                self.ctx, self.ctx.settings.kinds[route.kind], self.schemas, self.mappings,
                self._verifiers)
        return self._channels[route.name]

    def pull(self, route: RouteSection) -> PullStats:
        """One round (engine.pipeline): four transactions, whatever the batch size."""
        s = InboundPipeline(self.ctx, self.ctx.inbound_transport_for(route.channel),
                            self.channel(route), log).pull(route)
        return PullStats(s.received, s.imported, s.quarantined, s.acknowledged)
