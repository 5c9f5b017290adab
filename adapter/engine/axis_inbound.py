"""Documents and status packets received over the national document axis.

The inbound contract, as for LGSP judgments: fetch -> store -> parse once (under the
configured size limit) -> verify (the signature outcome goes with the parsed packet) ->
import -> acknowledge, batched: one state transaction stores the round's packets, one
enforcement-database transaction (a SAVEPOINT per document) writes the documents, and one
state transaction records every outcome, the status reports and the status packets to send
back. Each item is stored durably before the axis is told "done" (updateStatus).

The business answer to a document follows as status packets: 01 (arrived) at once, then 03
(accepted and registered) or 02 (rejected, with the reason); 04-06 follow as the office
records progress in `received_documents` (change capture). Status packets answering
documents we sent are recorded per recipient (store.recipients).

Any exception while handling one item fails that item, never the round: a malformed axis
answer is stored empty and quarantined (the axis is told "fail"); an outage leaves the item
listed for the next round.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property

from adapter.config import PeerSection, RouteSection
from adapter.crypto.keys import load_certificates
from adapter.edxml import unverified_edxml, verify_edxml
from adapter.edxml.model import ParsedEdxml, SignatureOutcome
from adapter.edxml.parse import read_edxml
from adapter.engine.build import EdxmlBuilder
from adapter.engine.context import Context
from adapter.engine.failures import reason_of, traceback_of
from adapter.errors import AdapterError, PacketError, TransportError
from adapter.mapping import packet_id
from adapter.mapping.transforms import VN_TZ
from adapter.sources.changes import SourceCursor, SourceRecord
from adapter.sources.writer import ReceivedDocuments
from adapter.store.base import utcnow
from adapter.store.recipients import ReportedStatus
from adapter.store.records import (
    Acknowledgement,
    InboundOutcome,
    NewExchange,
    ReceivedPacket,
    StoredPacket,
)
from adapter.xml.safe import parse_untrusted

log = logging.getLogger("adapter.axis")
ARRIVED = "Đã đến: văn bản đã được tiếp nhận vào hệ thống"


@dataclass
class AxisStats:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    statuses: int = 0
    acknowledged: int = 0


@dataclass
class _Round:
    """What one round decided, written in one transaction at its end."""

    outcomes: list[InboundOutcome] = field(default_factory=list)
    reports: dict[int, ReportedStatus] = field(default_factory=dict)
    documents: list[tuple[StoredPacket, ParsedEdxml, bool, str]] = field(default_factory=list)
    replies: list[NewExchange] = field(default_factory=list)


class AxisInbound:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._anchors: dict[str, list] = {}

    @cached_property
    def axis(self):
        return self.ctx.transport_for("axis")

    @cached_property
    def builder(self) -> EdxmlBuilder:
        return self.ctx.builder.edxml

    @cached_property
    def documents(self) -> ReceivedDocuments:
        return ReceivedDocuments(self.ctx.source_engine)

    @cached_property
    def status_route(self) -> RouteSection | None:
        return next((r for r in self.ctx.settings.routes
                     if r.kind == "status" and r.direction == "out"), None)

    def anchors(self, peer: PeerSection) -> list:
        if peer.name not in self._anchors:
            self._anchors[peer.name] = [c for p in peer.trust_anchors
                                        for c in load_certificates(self.ctx.settings.path(p))]
        return self._anchors[peer.name]

    # ---- one round -------------------------------------------------------------------

    def pull(self, route: RouteSection) -> AxisStats:
        ctx, stats = self.ctx, AxisStats()
        work = ctx.store.inbound_pending(route.name, route.batch_size)
        listed = [] if ctx.stopping.is_set() else self.axis.received()[: route.batch_size]
        pids = {i.doc_id: packet_id("axis", i.doc_id, 1) for i in listed}
        known = ctx.store.inbound_states(list(pids.values()))
        fetched: list[ReceivedPacket] = []
        broken: dict[str, str] = {}
        for item in listed:
            pid = pids[item.doc_id]
            if pid in known or ctx.stopping.is_set():
                continue
            kind = "status" if item.message_type == "status" else "edoc"
            try:
                data = self.axis.get(item.doc_id)
            except TransportError as exc:  # the axis is away: the item stays listed
                log.warning("axis item %s: fetch failed (%s); next round", item.doc_id, exc)
                continue
            except Exception as exc:  # a malformed answer: fails this item only
                data, broken[pid] = b"", (f"axis item {item.doc_id} from {item.sender}: "
                                          f"unreadable answer to getEdoc: {reason_of(exc)}")
            fetched.append(ReceivedPacket(pid, kind, item.sender, data))
        ids = ctx.store.add_inbound_many(route.name, fetched)  # durable before anything else
        stats.received += len(fetched)
        acks = self._acknowledge(listed, pids, known, ids, broken)
        stats.acknowledged += len(acks)
        rnd = _Round()
        rnd.outcomes += [InboundOutcome(ids[pid], False, reason) for pid, reason in broken.items()]
        work += [StoredPacket(ids[p.packet_id], p.packet_id, p.kind, p.peer, p.payload)
                 for p in fetched if p.packet_id not in broken]
        for p in work:
            self._handle_safely(p, rnd)
        self._write_documents(rnd)
        final = ctx.store.finish_round(
            rnd.outcomes, reports=rnd.reports, replies=rnd.replies, acks=acks,
            replies_route=self.status_route.name if self.status_route else None)
        for o in final:
            if o.exchange_id in rnd.reports and o.imported:
                stats.statuses += 1
            elif o.imported:
                stats.accepted += 1
            else:
                stats.rejected += 1
                log.warning("axis packet refused: %s", ctx.mask(o.error or ""))
        return stats

    def _acknowledge(self, listed, pids, known, ids, broken) -> list[Acknowledgement]:
        """Tell the axis about every item we hold (new or from an earlier round)."""
        acks = []
        for item in listed:
            pid = pids[item.doc_id]
            ex_id = ids.get(pid) or (known[pid].exchange_id if pid in known else None)
            if ex_id is None:
                continue
            outcome = "fail" if pid in broken else "done"
            try:
                self.axis.update_status(item.doc_id, outcome)
            except AdapterError as exc:
                log.warning("axis item %s: updateStatus failed (%s); next round",
                            item.doc_id, exc)
                continue
            acks.append(Acknowledgement(ex_id, outcome))
        return acks

    # ---- one item ----------------------------------------------------------------------

    def _handle_safely(self, p: StoredPacket, rnd: _Round) -> None:
        """Any exception while handling one packet quarantines it; the round goes on."""
        try:
            self._handle(p, rnd)
        except Exception as exc:
            log.error("axis packet %s: unexpected error\n%s", p.packet_id, traceback_of(exc))
            rnd.outcomes.append(InboundOutcome(
                p.exchange_id, False, f"axis packet {p.packet_id} from {p.peer}: "
                                      f"unexpected error: {reason_of(exc)}"))

    def _handle(self, p: StoredPacket, rnd: _Round) -> None:
        started, t0 = utcnow(), time.perf_counter()
        peer = self.ctx.settings.peer_of(p.peer)
        name = f"axis packet {p.packet_id} from {p.peer}"
        try:
            root = parse_untrusted(p.payload, name=name,
                                   max_bytes=self.ctx.settings.inbound.max_packet_bytes)
            # every field is read from what the signature covers (comments removed)
            verified = (verify_edxml(root, self.anchors(peer), profile=peer.signature_profile)
                        if peer else unverified_edxml(root, SignatureOutcome(
                            "untrusted", f"no peer configured for {p.peer}")))
            parsed = read_edxml(verified, name=name,
                                tolerant_ids=bool(peer and peer.tolerant_org_ids))
        except PacketError as exc:
            rnd.outcomes.append(InboundOutcome(p.exchange_id, False, str(exc)))
            return
        ms = int((time.perf_counter() - t0) * 1000)
        if parsed.kind == "status":
            st = parsed.packet
            rnd.reports[p.exchange_id] = ReportedStatus(
                st.response_for.document_id, st.sender.organ_id, st.status_code,
                st.description, st.timestamp)
            rnd.outcomes.append(InboundOutcome(
                p.exchange_id, True, None, parsed.signature.outcome, st.response_for.document_id,
                started=started, duration_ms=ms))
            return
        ok, verdict = parsed.verdict(peer.signature_policy if peer else "reject")
        if peer is None:
            ok, verdict = False, f"no peer is configured for sender {parsed.packet.sender.organ_id}"
        rnd.documents.append((p, parsed, ok, verdict))

    def _write_documents(self, rnd: _Round) -> None:
        """The round's documents into `received_documents` (one transaction), then their
        outcomes and the 01 and 03/02 answers."""
        rows = self.documents.add_many([_row(parsed, ok, verdict)
                                        for _, parsed, ok, verdict in rnd.documents])
        for (p, parsed, ok, verdict), row in zip(rnd.documents, rows, strict=True):
            doc = parsed.packet
            if isinstance(row, Exception):
                log.error("axis packet %s: not written\n%s", p.packet_id, traceback_of(row))
                rnd.outcomes.append(InboundOutcome(
                    p.exchange_id, False, f"axis packet {p.packet_id} from {p.peer}: writing "
                    f"document {doc.document_id!r} failed: {reason_of(row)}",
                    parsed.signature.outcome, document_id=doc.document_id))
                continue
            rnd.replies += [self._status_packet(row, "01", ARRIVED),
                            self._status_packet(row, row["progress"], row["progress_note"])]
            rnd.outcomes.append(InboundOutcome(
                p.exchange_id, ok, None if ok else verdict, parsed.signature.outcome,
                doc.document_id, document_id=doc.document_id))
        rnd.replies = [r for r in rnd.replies if r is not None]

    def _status_packet(self, row: dict, code: str, note: str | None) -> NewExchange | None:
        if self.status_route is None:
            log.warning("no outbound status route: status %s for %s not sent", code,
                        row["document_id"])
            return None
        rec = SourceRecord("status", row["document_id"], int(code),
                           SourceCursor(dt.datetime(1970, 1, 1), 0),
                           dict(row, progress=code, progress_note=note))
        return self.builder.build(rec)


def _row(parsed: ParsedEdxml, ok: bool, verdict: str) -> dict:
    """The `received_documents` row of a document: accepted (03) or refused (02)."""
    doc = parsed.packet
    att = doc.attachments[0] if doc.attachments else None
    return dict(document_id=doc.document_id, sender=doc.sender.organ_id,
                sender_name=doc.sender.name, code=f"{doc.code_number}/{doc.code_notation}",
                promulgation_date=doc.promulgation_date, subject=doc.subject,
                content=doc.content, signer_name=doc.signer_name,
                attachment_name=att.name if att else None,
                attachment_type=att.detected_type if att else None,
                attachment=att.data if att else None, signature=parsed.signature.outcome,
                progress="03" if ok else "02",
                progress_note=("Đã tiếp nhận và vào sổ" if ok else f"Từ chối: {verdict}")[:500],
                updated_at=dt.datetime.now(VN_TZ).replace(tzinfo=None), version=1)
