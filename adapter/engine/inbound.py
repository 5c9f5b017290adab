"""The inbound pipeline: list -> fetch -> store -> verify -> validate -> import -> ack.

A received packet is stored durably before it is looked at, and acknowledged only after it
is imported (or quarantined with its reason), so a crash at any point neither loses a
judgment nor imports one twice: the platform lists an unacknowledged packet again, the
stored copy is processed again, and the version rule of the importer makes that harmless.
Business data is read only from the signed data verification returns.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property

from lxml import etree

from adapter.config import RouteSection
from adapter.crypto.keys import load_certificates
from adapter.crypto.verify import PacketVerifier
from adapter.engine.context import Context
from adapter.errors import AdapterError, PacketError, SignatureError
from adapter.mapping import MappingSet
from adapter.sources.writer import JudgmentImporter
from adapter.store.repository import utcnow
from adapter.xml.safe import parse_untrusted
from adapter.xml.schema import SchemaRegistry

log = logging.getLogger("adapter.inbound")


class Quarantine(AdapterError):
    """This packet must not be imported; the message says why."""


@dataclass
class PullStats:
    received: int = 0
    imported: int = 0
    quarantined: int = 0
    acknowledged: int = 0
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Processed:
    imported: bool
    reason: str | None
    signature: str | None
    source_key: str | None = None
    version: int | None = None


class InboundEngine:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._verifiers: dict[str, PacketVerifier] = {}

    @cached_property
    def importer(self) -> JudgmentImporter:
        return JudgmentImporter(self.ctx.source_engine)

    @cached_property
    def schemas(self) -> SchemaRegistry:
        return SchemaRegistry.default()

    @cached_property
    def mappings(self) -> MappingSet:
        return MappingSet()

    def _verifier(self, peer) -> PacketVerifier:
        if peer.name not in self._verifiers:
            anchors = [c for p in peer.trust_anchors
                       for c in load_certificates(self.ctx.settings.path(p))]
            self._verifiers[peer.name] = PacketVerifier(anchors)
        return self._verifiers[peer.name]

    # ---- one round -------------------------------------------------------------------

    def pull(self, route: RouteSection) -> PullStats:
        ctx, stats = self.ctx, PullStats()
        for ex_id, pid, peer, payload in ctx.store.inbound_pending(route.name, route.batch_size):
            self._process_stored(ex_id, pid, peer, payload, stats)  # left by a crash
        me = ctx.settings.adapter.organisation_id
        for item in ctx.transport.list_pending(me, route.batch_size):
            if ctx.stopping.is_set():
                break
            known = ctx.store.inbound_state(item.packet_id)
            if known is None:
                if item.size > ctx.settings.inbound.max_packet_bytes:
                    payload = b""  # not fetched: the refusal below records why
                else:
                    payload = ctx.transport.fetch(item.packet_id).payload
                ex_id = ctx.store.add_inbound(route.name, packet_id=item.packet_id,
                                              kind=item.kind, peer=item.sender, payload=payload)
                stats.received += 1
                if not payload:
                    ctx.store.finish_inbound(ex_id, imported=False, signature=None, error=(
                        f"packet {item.packet_id}: {item.size} bytes exceed the limit of "
                        f"{ctx.settings.inbound.max_packet_bytes}"))
                else:
                    self._process_stored(ex_id, item.packet_id, item.sender, payload, stats)
                known = ctx.store.inbound_state(item.packet_id)
            ex_id, state, _ack, error = known
            if state in ("delivered", "failed"):
                # new, or already handled and the platform did not get our answer: answer.
                outcome = "accepted" if state == "delivered" else "rejected"
                if ctx.transport.acknowledge(item.packet_id, outcome, error):
                    ctx.store.mark_acknowledged(ex_id, outcome)
                    stats.acknowledged += 1
        return stats

    def _process_stored(self, ex_id: int, pid: str, sender: str, payload: bytes,
                        stats: PullStats) -> None:
        started, t0 = utcnow(), time.perf_counter()
        result = self.process(pid, sender, payload)
        self.ctx.store.finish_inbound(
            ex_id, imported=result.imported, error=result.reason, signature=result.signature,
            source_key=result.source_key, source_version=result.version, started=started,
            duration_ms=int((time.perf_counter() - t0) * 1000))
        if result.imported:
            stats.imported += 1
        else:
            stats.quarantined += 1
            stats.reasons.append(result.reason or "")
            log.warning("quarantined: %s", self.ctx.mask(result.reason or ""))

    # ---- the checks, in order ----------------------------------------------------------

    def process(self, pid: str, sender: str, payload: bytes) -> Processed:
        signature: str | None = None
        try:
            peer = self.ctx.settings.peer_of(sender)
            if peer is None:
                raise Quarantine(f"packet {pid}: no peer is configured for sender {sender!r}")
            root = parse_untrusted(payload, name=f"packet {pid}",
                                   max_bytes=self.ctx.settings.inbound.max_packet_bytes)
            try:
                signed = self._verifier(peer).verify(root, packet=pid).root
                signature = "valid"
            except SignatureError as exc:
                signature = exc.outcome
                if peer.signature_policy == "reject":
                    raise
                log.warning("accepted under policy 'flag' with signature %s: %s",
                            exc.outcome, exc)
                signed = root
            self.schemas.check(signed, packet=pid)
            mapping = self.mappings["judgment"]
            if etree.QName(signed).localname != "Judgment":
                raise Quarantine(f"packet {pid}: expected a Judgment, got "
                                 f"<{etree.QName(signed).localname}>")
            header = mapping.header_of(signed)
            self._check_header(pid, sender, peer, header)
            record = mapping.from_xml(signed)
            self._check_document(pid, record)
            version = int(header["Version"])
            result = self.importer.upsert(record, version)
            if result.status == "stale":
                raise Quarantine(f"packet {pid}: judgment {record['judgment_code']} version "
                                 f"{version} is older than the stored version "
                                 f"{result.stored_version} (replay refused)")
            return Processed(True, None, signature, record["judgment_code"], version)
        except (PacketError, Quarantine) as exc:
            return Processed(False, str(exc), signature)

    def _check_header(self, pid: str, sender: str, peer, header: dict[str, str]) -> None:
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
    def _check_document(pid: str, record: dict) -> None:
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
