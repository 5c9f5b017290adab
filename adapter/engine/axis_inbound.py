"""Documents and status packets received over the national document axis, as a channel of
the inbound pipeline (engine.pipeline): list -> fetch -> store -> parse once (under the
configured size limit) -> verify -> read from what was verified -> import -> acknowledge.

Who may say what is bound before anything is registered:
- the axis sender (the `from` the axis authenticated) must be a configured peer, and the
  packet's From must be that sender, among the peer's organisation ids;
- the signature must satisfy the peer's anchors (and its configured signers, if any) under
  the peer's policy;
- a status packet is recorded only from a recipient of the document it answers (the store
  checks, in the transaction that records it);
- a refused document registers nothing: no `received_documents` row and no DocumentId on
  the exchange, so a squatter cannot block the genuine document; nor may a document reuse
  a DocumentId another sender registered.

The business answer to a document follows as status packets (engine.status_packets): 01
(arrived) and 03 (registered) at once, or 02 (refused) to a configured sender that signed
badly; 04-06 follow as the office records progress (change capture). The axis itself is
told `done` for what we settled and `fail` for what we refused.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cryptography import x509

from adapter.config import PeerSection, RouteSection
from adapter.crypto.keys import load_certificates
from adapter.crypto.trust import SignerPin, peer_pin
from adapter.edxml import verify_edxml
from adapter.edxml.model import EdocDocument, ParsedEdxml, StatusPacket
from adapter.edxml.parse import read_edxml
from adapter.engine.context import Context
from adapter.engine.failures import reason_of, traceback_of
from adapter.engine.pipeline import Accepted, Checked, Concluded, InboundPipeline, Refused
from adapter.engine.status_packets import (
    ARRIVED,
    ARRIVED_NOTE,
    REFUSED,
    REGISTERED,
    REGISTERED_NOTE,
    StatusPackets,
    refusal_note,
)
from adapter.errors import PacketError
from adapter.mapping import packet_id
from adapter.mapping.transforms import VN_TZ
from adapter.sources.writer import ReceivedDocuments
from adapter.store.recipients import ReportedStatus
from adapter.store.records import InboundOutcome, InboundState, NewExchange, StoredPacket
from adapter.transports.axis import AxisTransport
from adapter.transports.base import PendingPacket
from adapter.xml.safe import parse_untrusted

log = logging.getLogger("adapter.axis")


@dataclass
class AxisStats:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    statuses: int = 0
    acknowledged: int = 0


class AxisChannel:
    """Documents and status packets of the axis."""

    name = "axis"

    def __init__(self, ctx: Context, statuses: StatusPackets | None) -> None:
        self.ctx = ctx
        self.statuses = statuses
        self.documents = ReceivedDocuments(ctx.source_engine)
        self._anchors: dict[str, list[x509.Certificate]] = {}
        self._pins: dict[str, SignerPin | None] = {}

    @cached_property
    def status_route(self) -> RouteSection | None:
        kinds = self.ctx.settings.kinds
        return next((r for r in self.ctx.settings.routes
                     if r.kind in kinds and kinds[r.kind].builder == "edxml-status"
                     and r.direction == "out"), None)

    def packet_id(self, item: PendingPacket) -> str:
        return packet_id("axis", item.packet_id, 1)

    def require(self) -> None:
        self.documents.require()

    def replies_route(self) -> str | None:
        return self.status_route.name if self.status_route else None

    def _trust(self, peer: PeerSection) -> tuple[list[x509.Certificate], SignerPin | None]:
        if peer.name not in self._anchors:
            path = self.ctx.settings.path
            self._anchors[peer.name] = [c for p in peer.trust_anchors
                                        for c in load_certificates(path(p))]
            self._pins[peer.name] = peer_pin(peer, path)
        return self._anchors[peer.name], self._pins[peer.name]

    # ---- the checks, in order ----------------------------------------------------------

    def check(self, p: StoredPacket) -> Checked:
        name = f"axis packet {p.packet_id} from {p.peer}"
        peer = self.ctx.settings.peer_of(p.peer)
        if peer is None:
            return Refused(f"{name}: no peer is configured for axis sender {p.peer!r}")
        signature: str | None = None
        try:
            root = parse_untrusted(p.payload, name=name,
                                   max_bytes=self.ctx.settings.inbound.max_packet_bytes)
            anchors, pin = self._trust(peer)
            # every field is read from what the signature covers (comments removed)
            verified = verify_edxml(root, anchors, profile=peer.signature_profile, pin=pin)
            signature = verified.outcome.outcome
            parsed = read_edxml(verified, name=name, tolerant_ids=peer.tolerant_org_ids)
        except PacketError as exc:
            return Refused(str(exc), signature)
        flags = tuple(parsed.warnings)
        author = parsed.packet.sender.organ_id
        if author != p.peer or author not in peer.organisation_ids:
            return Refused(f"{name}: From {author!r} is not the axis sender {p.peer!r} "
                           f"(peer {peer.name!r})", signature, flags)
        ok, verdict = parsed.verdict(peer.signature_policy)
        if not ok:
            # the sender is bound: it hears of the refusal (02), nothing is registered
            return Refused(f"{name}: {verdict}", signature, flags,
                           item=parsed if parsed.kind == "edoc" else None)
        return Accepted(parsed, signature, flags)

    # ---- import and outcome --------------------------------------------------------------

    def import_many(self, accepted: Sequence[tuple[StoredPacket, Accepted]]) -> list[Any]:
        """The round's documents into `received_documents` (one transaction, a SAVEPOINT
        each); status packets import nothing here (their report is recorded with the
        round's outcomes)."""
        docs = [(n, a.item) for n, (_, a) in enumerate(accepted) if a.item.kind == "edoc"]
        rows = self.documents.add_many([_row(parsed) for _, parsed in docs])
        out: list[Any] = [None] * len(accepted)
        for (n, _), row in zip(docs, rows, strict=True):
            out[n] = row
        return out

    def conclude(self, p: StoredPacket, checked: Checked, imported: Any) -> Concluded:
        if isinstance(checked, Refused):
            replies: tuple[NewExchange, ...] = ()
            if isinstance(checked.item, ParsedEdxml):
                doc = checked.item.packet
                assert isinstance(doc, EdocDocument)
                replies = self._replies(_fields(doc), (REFUSED, refusal_note(checked.reason)))
            return Concluded(InboundOutcome(p.exchange_id, False, checked.reason,
                                            checked.signature, flags=checked.flags),
                             replies=replies)
        parsed: ParsedEdxml = checked.item
        if isinstance(parsed.packet, StatusPacket):
            st = parsed.packet
            return Concluded(
                InboundOutcome(p.exchange_id, True, None, checked.signature,
                               st.response_for.document_id, flags=checked.flags),
                report=ReportedStatus(st.response_for.document_id, st.sender.organ_id,
                                      st.status_code, st.description, st.timestamp))
        doc = parsed.packet
        name = f"axis packet {p.packet_id} from {p.peer}"
        if isinstance(imported, Exception):
            log.error("%s: not written\n%s", name, traceback_of(imported))
            return Concluded(InboundOutcome(
                p.exchange_id, False, f"{name}: writing document {doc.document_id!r} failed: "
                f"{reason_of(imported)}", checked.signature, flags=checked.flags))
        row: dict[str, Any] = imported
        if row["sender"] != doc.sender.organ_id:
            return Concluded(InboundOutcome(
                p.exchange_id, False, f"{name}: DocumentId {doc.document_id!r} is registered "
                f"for a document from {row['sender']}", checked.signature, flags=checked.flags))
        return Concluded(
            InboundOutcome(p.exchange_id, True, None, checked.signature, doc.document_id,
                           document_id=doc.document_id, flags=checked.flags),
            replies=self._replies(row, (ARRIVED, ARRIVED_NOTE),
                                  (row["progress"], row["progress_note"])))

    def _replies(self, document: dict[str, Any],
                 *answers: tuple[str, str | None]) -> tuple[NewExchange, ...]:
        if self.statuses is None or self.status_route is None:
            log.warning("no outbound status route: statuses %s for %s not sent",
                        "/".join(c for c, _ in answers), document["document_id"])
            return ()
        return tuple(self.statuses.answer(document, code, note) for code, note in answers)

    def answer(self, state: InboundState) -> tuple[str, str | None]:
        return ("done" if state.state == "delivered" else "fail", None)


class AxisInbound:
    """Pulls the axis route: the inbound pipeline with the axis channel."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @cached_property
    def axis(self) -> AxisTransport:
        transport = self.ctx.transport_for("axis")
        assert isinstance(transport, AxisTransport)
        return transport

    @cached_property
    def channel(self) -> AxisChannel:
        return AxisChannel(self.ctx, self.ctx.builder.edxml.statuses
                           if self._status_route_configured() else None)

    def _status_route_configured(self) -> bool:
        kinds = self.ctx.settings.kinds
        return any(r.direction == "out" and r.kind in kinds
                   and kinds[r.kind].builder == "edxml-status" for r in self.ctx.settings.routes)

    def pull(self, route: RouteSection) -> AxisStats:
        """One round (engine.pipeline): four transactions, whatever the batch size."""
        s = InboundPipeline(self.ctx, self.axis, self.channel, log).pull(route)
        return AxisStats(s.received, s.imported - s.statuses, s.quarantined, s.statuses,
                         s.acknowledged)


def _fields(doc: EdocDocument) -> dict[str, Any]:
    """What a status packet about a document needs."""
    return dict(document_id=doc.document_id, sender=doc.sender.organ_id,
                code=f"{doc.code_number}/{doc.code_notation}",
                promulgation_date=doc.promulgation_date)


def _row(parsed: ParsedEdxml) -> dict[str, Any]:
    """The `received_documents` row of an accepted document (03: registered)."""
    doc = parsed.packet
    assert isinstance(doc, EdocDocument)
    att = doc.attachments[0] if doc.attachments else None
    return dict(_fields(doc), sender_name=doc.sender.name, subject=doc.subject,
                content=doc.content, signer_name=doc.signer_name,
                attachment_name=att.name if att else None,
                attachment_type=att.detected_type if att else None,
                attachment=att.data if att else None, signature=parsed.signature.outcome,
                progress=REGISTERED, progress_note=REGISTERED_NOTE,
                updated_at=dt.datetime.now(VN_TZ).replace(tzinfo=None), version=1)
