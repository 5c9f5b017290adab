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
from dataclasses import dataclass
from functools import cached_property

from lxml import etree

from adapter.config import RouteSection
from adapter.crypto.keys import load_certificates
from adapter.crypto.verify import PacketVerifier
from adapter.engine.context import Context
from adapter.engine.failures import reason_of, traceback_of
from adapter.errors import AdapterError, PacketError, SignatureError
from adapter.mapping import MappingSet
from adapter.sources.writer import ImportResult, JudgmentImporter
from adapter.store.base import utcnow
from adapter.store.records import Acknowledgement, InboundOutcome, ReceivedPacket
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


@dataclass(frozen=True)
class Checked:
    """A packet that passed every check: the judgment to import."""

    record: dict
    version: int
    signature: str | None


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
        """One round: what a crash left stored, then what the platform lists, in batches:
        one call to fetch, one transaction to store, one to import (a SAVEPOINT per
        judgment), one to record, one call to answer and one transaction to note it."""
        ctx, stats = self.ctx, PullStats()
        work = [(p.exchange_id, p.packet_id, p.peer, p.payload)
                for p in ctx.store.inbound_pending(route.name, route.batch_size)]
        limit = ctx.settings.inbound.max_packet_bytes
        items = [] if ctx.stopping.is_set() else ctx.transport.list_pending(
            ctx.settings.adapter.organisation_id, route.batch_size)
        known = ctx.store.inbound_states([i.packet_id for i in items])
        new = [i for i in items if i.packet_id not in known]
        wanted = [i.packet_id for i in new if i.size <= limit]
        fetched = {f.packet_id: f for f in (ctx.transport.fetch_many(wanted) if wanted else [])}
        to_store = [ReceivedPacket(i.packet_id, i.kind, i.sender,
                                   fetched[i.packet_id].payload if i.packet_id in fetched
                                   else b"")
                    for i in new if i.packet_id in fetched or i.size > limit]
        ids = ctx.store.add_inbound_many(route.name, to_store)  # durable before processing
        stats.received += len(to_store)
        too_big = [InboundOutcome(ids[i.packet_id], imported=False,
                                  error=f"packet {i.packet_id}: {i.size} bytes exceed the "
                                        f"limit of {limit}") for i in new if i.size > limit]
        stats.quarantined += len(too_big)
        work += [(ids[p.packet_id], p.packet_id, p.peer, p.payload) for p in to_store
                 if p.payload]
        self._process_all(work, stats, too_big)
        if not items:
            return stats
        # answer for everything handled: new now, or earlier without our answer arriving
        states = ctx.store.inbound_states([i.packet_id for i in items])
        answers = [(pid, "accepted" if st.state == "delivered" else "rejected",
                    st.last_error, st.exchange_id)
                   for pid, st in states.items() if st.state in ("delivered", "failed")]
        if answers:
            taken = ctx.transport.acknowledge_many([a[:3] for a in answers])
            ctx.store.mark_acknowledged_many([Acknowledgement(a[3], a[1]) for a in answers
                                              if a[0] in taken])
            stats.acknowledged += len(taken)
        return stats

    def _process_all(self, items: list[tuple[int, str, str, bytes]], stats: PullStats,
                     results: list[InboundOutcome]) -> None:
        """Check every packet, import the good ones in one transaction (a SAVEPOINT each),
        record every outcome in one. Any exception while handling one packet quarantines
        that packet with its reason; the others go on."""
        started = utcnow()
        t0 = time.perf_counter()
        checked = [(ex_id, pid, self._check_safely(pid, sender, payload))
                   for ex_id, pid, sender, payload in items]
        ready = [(ex_id, pid, c) for ex_id, pid, c in checked if isinstance(c, Checked)]
        imports = dict(zip([ex_id for ex_id, _, _ in ready],
                           self.importer.import_many([(c.record, c.version)
                                                      for _, _, c in ready]), strict=True))
        ms = int((time.perf_counter() - t0) * 1000 / max(1, len(items)))
        for ex_id, pid, c in checked:
            r = self._outcome(pid, c, imports.get(ex_id))
            results.append(InboundOutcome(ex_id, r.imported, r.reason, r.signature,
                                          r.source_key, r.version, started, ms))
            if r.imported:
                stats.imported += 1
            else:
                stats.quarantined += 1
                log.warning("quarantined: %s", self.ctx.mask(r.reason or ""))
        self.ctx.store.finish_inbound_many(results)

    @staticmethod
    def _outcome(pid: str, checked: Checked | Processed,
                 imported: ImportResult | Exception | None) -> Processed:
        if isinstance(checked, Processed):
            return checked
        code, version = checked.record["judgment_code"], checked.version
        if isinstance(imported, Exception):
            log.error("packet %s: import failed\n%s", pid, traceback_of(imported))
            return Processed(False, f"packet {pid}: import into the enforcement database "
                                    f"failed: {reason_of(imported)}", checked.signature)
        if imported is not None and imported.status == "stale":
            return Processed(False, f"packet {pid}: judgment {code} version {version} is "
                                    f"older than the stored version {imported.stored_version} "
                                    "(replay refused)", checked.signature)
        return Processed(True, None, checked.signature, code, version)

    def _check_safely(self, pid: str, sender: str, payload: bytes) -> Checked | Processed:
        try:
            return self.check(pid, sender, payload)
        except Exception as exc:  # one odd packet must not stop the route
            log.error("packet %s: unexpected error while checking it\n%s", pid,
                      traceback_of(exc))
            return Processed(False, f"packet {pid}: unexpected error: {reason_of(exc)}", None)

    # ---- the checks, in order ----------------------------------------------------------

    def check(self, pid: str, sender: str, payload: bytes) -> Checked | Processed:
        """Everything before the import: the judgment to import, or why not."""
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
            return Checked(record, int(header["Version"]), signature)
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

