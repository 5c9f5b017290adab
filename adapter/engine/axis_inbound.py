"""Documents and status packets received over the national document axis.

Each item is fetched and stored durably, and only then acknowledged to the axis with
updateStatus("done"): the transport acknowledgement. The business answer follows as status
packets: 01 (arrived) at once, then 03 (accepted and registered) or 02 (rejected, with the
reason), and later 04-06 as the office records progress in `received_documents`. Status
packets answering documents we sent are recorded per recipient; a document counts as
delivered once every recipient has reported.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from functools import cached_property

from adapter.config import PeerSection, RouteSection
from adapter.crypto.keys import load_certificates
from adapter.edxml import parse_edxml, verify_edxml_signature
from adapter.edxml.model import SignatureOutcome
from adapter.engine.build import EdxmlBuilder
from adapter.engine.context import Context
from adapter.engine.failures import reason_of, traceback_of
from adapter.errors import PacketError
from adapter.mapping import packet_id
from adapter.mapping.transforms import VN_TZ
from adapter.sources.changes import SourceCursor, SourceRecord
from adapter.sources.writer import ReceivedDocuments
from adapter.store.recipients import ReportedStatus
from adapter.store.repository import NewExchange
from adapter.xml.safe import parse_untrusted

log = logging.getLogger("adapter.axis")


@dataclass
class AxisStats:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    statuses: int = 0
    acknowledged: int = 0


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

    def anchors(self, peer: PeerSection) -> list:
        if peer.name not in self._anchors:
            self._anchors[peer.name] = [c for p in peer.trust_anchors
                                        for c in load_certificates(self.ctx.settings.path(p))]
        return self._anchors[peer.name]

    def pull(self, route: RouteSection) -> AxisStats:
        ctx, stats = self.ctx, AxisStats()
        for p in ctx.store.inbound_pending(route.name, route.batch_size):
            self._process_safely(p.exchange_id, p.packet_id, p.kind, p.peer, p.payload, stats)
        for item in self.axis.received()[: route.batch_size]:
            if ctx.stopping.is_set():
                break
            pid = packet_id("axis", item.doc_id, 1)
            kind = "status" if item.message_type == "status" else "edoc"
            known = ctx.store.inbound_state(pid)
            if known is None:
                data = self.axis.get(item.doc_id)
                ex_id = ctx.store.add_inbound(route.name, packet_id=pid, kind=kind,
                                              peer=item.sender, payload=data)
                stats.received += 1
            else:
                ex_id, data = known.exchange_id, None
            # stored durably: now the axis may forget it
            self.axis.update_status(item.doc_id, "done")
            ctx.store.mark_acknowledged(ex_id, "done")
            stats.acknowledged += 1
            if data is not None:
                self._process_safely(ex_id, pid, kind, item.sender, data, stats)
        return stats

    # ---- one item ----------------------------------------------------------------------

    def _process_safely(self, ex_id: int, pid: str, kind: str, sender: str, data: bytes,
                        stats: AxisStats) -> None:
        """Any exception while handling one packet quarantines it; the round goes on."""
        try:
            self._process(ex_id, kind, sender, data, stats)
        except Exception as exc:
            log.error("axis packet %s: unexpected error\n%s", pid, traceback_of(exc))
            self.ctx.store.finish_inbound(ex_id, imported=False, signature=None,
                                          error=f"axis packet {pid} from {sender}: "
                                                f"unexpected error: {reason_of(exc)}")
            stats.rejected += 1

    def _process(self, ex_id: int, kind: str, sender: str, data: bytes,
                 stats: AxisStats) -> None:
        peer = self.ctx.settings.peer_of(sender)
        try:
            root = parse_untrusted(data, name=f"axis packet from {sender}")
            sig = (verify_edxml_signature(root, self.anchors(peer),
                                          profile=peer.signature_profile)
                   if peer else SignatureOutcome("untrusted", f"no peer configured for {sender}"))
            parsed = parse_edxml(data, name=f"axis packet from {sender}",
                                 tolerant_ids=bool(peer and peer.tolerant_org_ids),
                                 signature=sig)
        except PacketError as exc:
            self.ctx.store.finish_inbound(ex_id, imported=False, error=str(exc), signature=None)
            stats.rejected += 1
            log.warning("axis packet refused: %s", self.ctx.mask(str(exc)))
            return
        if parsed.kind == "status":
            self._status(ex_id, parsed, stats)
        else:
            self._document(ex_id, parsed, peer, stats)

    def _document(self, ex_id: int, parsed, peer: PeerSection | None, stats: AxisStats) -> None:
        doc = parsed.packet
        ok, verdict = parsed.verdict(peer.signature_policy if peer else "reject")
        if peer is None:
            ok, verdict = False, f"no peer is configured for sender {doc.sender.organ_id}"
        row = self._received_row(doc, parsed.signature.outcome, ok, verdict)
        self._queue_status(row, "01", "Đã đến: văn bản đã được tiếp nhận vào hệ thống")
        self._queue_status(row, row["progress"], row["progress_note"])
        self.ctx.store.finish_inbound(ex_id, imported=ok, error=None if ok else verdict,
                                      signature=parsed.signature.outcome,
                                      source_key=doc.document_id,
                                      document_id=doc.document_id)
        if ok:
            stats.accepted += 1
        else:
            stats.rejected += 1

    def _received_row(self, doc, signature: str, ok: bool, verdict: str) -> dict:
        """Insert the document once (by DocumentId); a re-delivery finds it there."""
        att = doc.attachments[0] if doc.attachments else None
        now = dt.datetime.now(VN_TZ).replace(tzinfo=None)
        values = dict(document_id=doc.document_id, sender=doc.sender.organ_id,
                      sender_name=doc.sender.name,
                      code=f"{doc.code_number}/{doc.code_notation}",
                      promulgation_date=doc.promulgation_date, subject=doc.subject,
                      content=doc.content, signer_name=doc.signer_name,
                      attachment_name=att.name if att else None,
                      attachment_type=att.detected_type if att else None,
                      attachment=att.data if att else None, signature=signature,
                      progress="03" if ok else "02",
                      progress_note=("Đã tiếp nhận và vào sổ" if ok
                                     else f"Từ chối: {verdict}")[:500],
                      updated_at=now, version=1)
        (stored,) = self.documents.add_many([values])
        if isinstance(stored, Exception):
            raise stored
        return stored

    def _queue_status(self, row: dict, code: str, note: str | None) -> None:
        route = next((r for r in self.ctx.settings.routes
                      if r.kind == "status" and r.direction == "out"), None)
        if route is None:
            log.warning("no outbound status route: status %s for %s not sent", code,
                        row["document_id"])
            return
        rec = SourceRecord("status", row["document_id"], int(code),
                           SourceCursor(dt.datetime(1970, 1, 1), 0),
                           dict(row, progress=code, progress_note=note))
        built = self.builder.build(rec)
        self.ctx.store.add_exchanges(route.name, [built], None)

    def _status(self, ex_id: int, parsed, stats: AxisStats) -> None:
        st = parsed.packet
        recorded = self.ctx.store.record_status(ReportedStatus(
            st.response_for.document_id, st.sender.organ_id, st.status_code, st.description,
            st.timestamp))
        if recorded is None:
            self.ctx.store.finish_inbound(
                ex_id, imported=False, signature=parsed.signature.outcome,
                error=f"status {st.status_code} for unknown document "
                      f"{st.response_for.document_id!r}")
            stats.rejected += 1
            return
        self.ctx.store.finish_inbound(ex_id, imported=True, error=None,
                                      signature=parsed.signature.outcome,
                                      source_key=st.response_for.document_id)
        stats.statuses += 1


__all__ = ["AxisInbound", "AxisStats", "NewExchange"]
