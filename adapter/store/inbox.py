"""The inbox: received packets stored before anything happens to them, their outcome
(imported or quarantined), our answer to the channel, and recipients' status reports."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update

from adapter.store import evidence, recipients, states
from adapter.store.base import StoreBase, utcnow
from adapter.store.models import Attempt, Exchange, Packet
from adapter.store.outbox import add_in, not_written
from adapter.store.records import (
    Acknowledgement,
    InboundOutcome,
    InboundState,
    NewExchange,
    ReceivedPacket,
    StoredPacket,
)
from adapter.store.states import State

log = logging.getLogger("adapter.store")

EX: Table = cast(Table, Exchange.__table__)
PK: Table = cast(Table, Packet.__table__)
AT: Table = cast(Table, Attempt.__table__)


class Inbox(StoreBase):
    def add_inbound(self, route: str, *, packet_id: str, kind: str, peer: str,
                    payload: bytes) -> int:
        return self.add_inbound_many(
            route, [ReceivedPacket(packet_id, kind, peer, payload)])[packet_id]

    def add_inbound_many(self, route: str, items: Sequence[ReceivedPacket]) -> dict[str, int]:
        """Store received packets durably, in one transaction, before anything else
        happens to them. Returns packet id -> exchange id (existing ones included)."""
        if not items:
            return {}
        now = utcnow()
        with self.engine.begin() as c:
            new: dict[str, int] = dict(c.execute(self._insert(EX).on_conflict_do_nothing(
                index_elements=["packet_id"]).returning(EX.c.packet_id, EX.c.id), [dict(
                    packet_id=it.packet_id, kind=it.kind, route=route, direction="in",
                    peer=it.peer, source_key=it.packet_id, source_version=0,
                    state=State.PENDING, attempts=0, created_at=now, updated_at=now)
                    for it in items]).all())
            fresh = [it for it in items if it.packet_id in new]
            digests = {it.packet_id: hashlib.sha256(it.payload).hexdigest() for it in fresh}
            if fresh:
                c.execute(insert(PK), [dict(exchange_id=new[it.packet_id], payload=it.payload,
                                            sha256=digests[it.packet_id]) for it in fresh])
            ids = dict(c.execute(select(EX.c.packet_id, EX.c.id).where(
                EX.c.packet_id.in_([it.packet_id for it in items]))).all())
            evidence.append(c, [evidence.Event("received", "in", it.peer, it.kind,
                                               ids[it.packet_id], it.packet_id, it.payload,
                                               content_sha256=digests[it.packet_id])
                                for it in fresh], enabled=self.evidence)
            return ids

    def inbound_pending(self, route: str, limit: int) -> list[StoredPacket]:
        """Stored but not yet processed (a crash came between storing and importing)."""
        with self.engine.connect() as c:
            rows = c.execute(select(EX.c.id, EX.c.packet_id, EX.c.kind, EX.c.peer,
                                    PK.c.payload)
                             .join(PK, PK.c.exchange_id == EX.c.id)
                             .where(EX.c.route == route, EX.c.direction == "in",
                                    EX.c.state == State.PENDING)
                             .order_by(EX.c.id).limit(limit)).all()
        return [StoredPacket(*r) for r in rows]

    def finish_inbound_many(self, results: Sequence[InboundOutcome]) -> None:
        """Record imports and quarantines, in one transaction."""
        if results:
            with self.engine.begin() as c:
                self._finish_in(c, results, utcnow())

    def finish_round(self, results: Sequence[InboundOutcome], *,
                     reports: Mapping[int, recipients.ReportedStatus] | None = None,
                     replies_route: str | None = None, replies: Sequence[NewExchange] = (),
                     acks: Sequence[Acknowledgement] = ()) -> list[InboundOutcome]:
        """All that one inbound round records, in one transaction: recipients' status
        reports (exchange id of the status packet -> report; one about a document we never
        sent quarantines its packet), every outcome, the status packets to send back and
        what the channel was told. Returns the outcomes as recorded."""
        now = utcnow()
        final = list(results)
        if not final and not replies and not acks:
            return final
        with self.engine.begin() as c:
            for n, r in enumerate(final):
                report = (reports or {}).get(r.exchange_id)
                if report is None or not r.imported:
                    continue
                ours = recipients.our_document(c, report.document_id)
                if ours is None:
                    final[n] = replace(r, imported=False, error=(
                        f"status {report.code} for unknown document {report.document_id!r}"))
                elif not recipients.addressed(c, ours, report.organ_id):
                    # only an addressee answers for itself: nobody else marks our document
                    # delivered or rejected in its name
                    final[n] = replace(r, imported=False, error=(
                        f"status {report.code} about document {report.document_id!r} from "
                        f"{report.organ_id}, which is not one of its recipients"))
                else:
                    recipients.record(c, ours, report, now, with_evidence=self.evidence)
            self._finish_in(c, final, now)
            if replies_route is not None:
                add_in(c, self._insert, replies_route, list(replies), now,
                       with_evidence=self.evidence)
            self._acknowledged_in(c, acks, now)
        return final

    def _finish_in(self, c: Connection, results: Sequence[InboundOutcome],
                   now: dt.datetime) -> None:
        if not results:
            return
        groups: dict[tuple[str, ...], list[dict]] = {}
        for r in results:
            target = State.DELIVERED if r.imported else State.FAILED
            states.check(State.PENDING, target, "in")
            values: dict = dict(b_id=r.exchange_id, state=target, updated_at=now,
                                last_error=r.error, signature=r.signature)
            if r.imported:
                values["delivered_at"] = now
            if r.source_key:
                values.update(source_key=r.source_key[:80],
                              source_version=r.source_version or 0)
            if r.document_id:
                values["document_id"] = r.document_id[:200]
            groups.setdefault(tuple(sorted(values)), []).append(values)
        lost: set[int] = set()
        for columns, rows in groups.items():
            stmt = (update(EX).where(EX.c.id == bindparam("b_id"),
                                     EX.c.state == State.PENDING)
                    .values({**{k: bindparam(k) for k in columns if k != "b_id"},
                             "attempts": EX.c.attempts + 1}))
            if c.execute(stmt, rows).rowcount != len(rows):
                lost |= not_written(c, rows, now)
        for i in sorted(lost):
            log.warning("exchange %s: its outcome was not recorded, it was no longer pending "
                        "(another instance concluded it first); its attempt is recorded", i)
        c.execute(insert(AT), [dict(
            exchange_id=r.exchange_id, number=1, started_at=r.started or now,
            duration_ms=r.duration_ms, error=r.error, instance=self.instance,
            outcome="imported" if r.imported else "quarantined") for r in results])
        evidence.append(c, [evidence.Event(
            "imported" if r.imported else "quarantined", "in", None, None,
            r.exchange_id, None, None, r.signature,
            {k: v for k, v in dict(error=r.error, source_key=r.source_key,
                                   source_version=r.source_version,
                                   flags=list(r.flags)).items() if v})
            for r in results], enabled=self.evidence)

    def inbound_states(self, packet_ids: Sequence[str]) -> dict[str, InboundState]:
        """packet id -> what became of it, for those we have."""
        if not packet_ids:
            return {}
        with self.engine.connect() as c:
            rows = c.execute(select(EX.c.packet_id, EX.c.id, EX.c.state, EX.c.receipt_status,
                                    EX.c.last_error).where(EX.c.packet_id.in_(packet_ids))).all()
        return {r[0]: InboundState(*r[1:]) for r in rows}

    def mark_acknowledged_many(self, acks: Sequence[Acknowledgement]) -> None:
        if acks:
            with self.engine.begin() as c:
                self._acknowledged_in(c, acks, utcnow())

    def _acknowledged_in(self, c: Connection, acks: Sequence[Acknowledgement],
                         now: dt.datetime) -> None:
        if not acks:
            return
        c.execute(update(EX).where(EX.c.id == bindparam("b_id")).values(
            receipt_status=bindparam("b_status"), updated_at=now),
            [dict(b_id=a.exchange_id, b_status=f"ack:{a.outcome}") for a in acks])
        evidence.append(c, [evidence.Event("acknowledged", "in", None, None, a.exchange_id,
                                           None, None, None, {"outcome": a.outcome})
                            for a in acks], enabled=self.evidence)

    def flags_of(self, exchange_id: int) -> list[str]:
        """How a received packet travelled, as recorded with its outcome (edXML trace hops
        without an OrganId, tolerated ids); for `exchanges show`."""
        ev = cast(Table, evidence.EvidenceEntry.__table__)
        with self.engine.connect() as c:
            details = c.execute(select(ev.c.detail).where(
                ev.c.exchange_id == exchange_id, ev.c.event.in_(("imported", "quarantined")),
                ev.c.detail.is_not(None)).order_by(ev.c.seq)).scalars().all()
        return [f for d in details for f in json.loads(d).get("flags", [])]

    def record_status(self, report: recipients.ReportedStatus
                      ) -> recipients.StatusRecorded | None:
        """A recipient's status packet about a document we sent; None when we sent no
        such document, or not to the organisation reporting."""
        with self.engine.begin() as c:
            ex_id = recipients.our_document(c, report.document_id)
            if ex_id is None or not recipients.addressed(c, ex_id, report.organ_id):
                return None
            return recipients.record(c, ex_id, report, utcnow(), with_evidence=self.evidence)
