"""The addressees of an edXML document we sent: one row each, with its own status timeline.

A document counts as delivered once every recipient has settled it: 03 (accepted and
registered; 04-06 report later progress and imply it) or 02 (refused, recorded against that
recipient and named in the exchange's last error). 01 (arrived) and the rest are recorded
without settling anything. The SENT -> DELIVERED change goes through the state machine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection, Table, insert, select, update

from adapter.store import evidence, states
from adapter.store.models import Exchange, Recipient, StatusReport
from adapter.store.states import State

EX: Table = cast(Table, Exchange.__table__)
RC: Table = cast(Table, Recipient.__table__)
SR: Table = cast(Table, StatusReport.__table__)
#: answers that settle one recipient's delivery
SETTLING = frozenset({"02", "03", "04", "05", "06"})


@dataclass(frozen=True)
class ReportedStatus:
    """A status packet about one of our documents, as the recipient signed it."""

    document_id: str
    organ_id: str
    code: str
    description: str | None
    reported_at: str | None


@dataclass(frozen=True)
class StatusEntry:
    code: str
    description: str | None
    reported_at: str | None
    received_at: dt.datetime


@dataclass(frozen=True)
class RecipientTimeline:
    organ_id: str
    #: the answer that settled its delivery (02 or 03-06), None while it has not
    settled: str | None
    statuses: list[StatusEntry]


@dataclass(frozen=True)
class StatusRecorded:
    exchange_id: int
    #: the document became delivered with this report
    delivered: bool


def add(c: Connection, rows: Sequence[tuple[int, str]]) -> None:
    """(exchange id, organ id) rows for new documents."""
    if rows:
        c.execute(insert(RC), [dict(exchange_id=e, organ_id=o) for e, o in rows])


def our_document(c: Connection, document_id: str) -> int | None:
    return c.execute(select(EX.c.id).where(
        EX.c.document_id == document_id, EX.c.kind == "edoc", EX.c.direction == "out")
        .order_by(EX.c.id.desc()).limit(1)).scalar()


def addressed(c: Connection, ex_id: int, organ_id: str) -> bool:
    """Whether `organ_id` is one of the document's recipients (a document sent before
    recipients were rows names its single recipient in `peer`)."""
    rows = list(c.execute(select(RC.c.organ_id).where(RC.c.exchange_id == ex_id)).scalars())
    if rows:
        return organ_id in rows
    return c.execute(select(EX.c.peer).where(EX.c.id == ex_id)).scalar() == organ_id


def record(c: Connection, ex_id: int, st: ReportedStatus, now: dt.datetime, *,
           with_evidence: bool) -> StatusRecorded:
    """Add the report to the recipient's timeline; settle the recipient and, when every
    recipient has settled, the document."""
    c.execute(insert(SR).values(exchange_id=ex_id, organ_id=st.organ_id, code=st.code,
                                description=st.description, reported_at=st.reported_at,
                                received_at=now))
    evidence.append(c, [evidence.Event(
        "status", "in", st.organ_id, "edoc", ex_id, None, None, None,
        {"code": st.code, "description": st.description, "reported_at": st.reported_at})],
        enabled=with_evidence)
    c.execute(update(RC).where(RC.c.exchange_id == ex_id, RC.c.organ_id == st.organ_id)
              .values(status=st.code, status_at=now))
    if st.code in SETTLING:  # the first settling answer stays: a later 05 does not hide a 02
        c.execute(update(RC).where(RC.c.exchange_id == ex_id, RC.c.organ_id == st.organ_id,
                                   RC.c.settled.is_(None)).values(settled=st.code))
    ex = dict(receipt_status=f"status:{st.code}", updated_at=now)
    if st.code == "02":
        ex["last_error"] = f"{st.organ_id} rejected it: {st.description}"
    c.execute(update(EX).where(EX.c.id == ex_id).values(**ex))
    open_ = c.execute(select(RC.c.id).where(RC.c.exchange_id == ex_id,
                                            RC.c.settled.is_(None)).limit(1)).first()
    state = c.execute(select(EX.c.state).where(EX.c.id == ex_id)).scalar()
    if open_ is not None or state != State.SENT:
        return StatusRecorded(ex_id, False)
    states.check(State.SENT, State.DELIVERED)
    done = c.execute(update(EX).where(EX.c.id == ex_id, EX.c.state == State.SENT)
                     .values(state=State.DELIVERED, delivered_at=now)).rowcount
    return StatusRecorded(ex_id, bool(done))


def settle_answered(c: Connection, ex_ids: list[int], now: dt.datetime) -> list[int]:
    """Documents just recorded as SENT whose recipients have all settled already: their
    answers can arrive before our own send is recorded (a recipient that answers at once,
    or a crash between the send and its record), and `record` then left the document to
    the send. Without this step such a document would wait in SENT for ever."""
    if not ex_ids:
        return []
    unsettled = select(RC.c.id).where(RC.c.exchange_id == EX.c.id, RC.c.settled.is_(None))
    addressed = select(RC.c.id).where(RC.c.exchange_id == EX.c.id)
    ready = [r[0] for r in c.execute(select(EX.c.id).where(
        EX.c.id.in_(ex_ids), EX.c.state == State.SENT, addressed.exists(),
        ~unsettled.exists()))]
    if ready:
        states.check(State.SENT, State.DELIVERED)
        c.execute(update(EX).where(EX.c.id.in_(ready), EX.c.state == State.SENT)
                  .values(state=State.DELIVERED, delivered_at=now))
    return ready


def timelines(c: Connection, ex_id: int) -> list[RecipientTimeline]:
    """Every recipient with its reports in the order received (and any organisation that
    reported without being addressed, last)."""
    rows = c.execute(select(RC.c.organ_id, RC.c.settled).where(RC.c.exchange_id == ex_id)
                     .order_by(RC.c.id)).all()
    reports = c.execute(select(SR.c.organ_id, SR.c.code, SR.c.description, SR.c.reported_at,
                               SR.c.received_at).where(SR.c.exchange_id == ex_id)
                        .order_by(SR.c.id)).all()
    by_org: dict[str, list[StatusEntry]] = {o: [] for o, _ in rows}
    for r in reports:
        by_org.setdefault(r.organ_id, []).append(
            StatusEntry(r.code, r.description, r.reported_at, r.received_at))
    settled = dict(rows)
    return [RecipientTimeline(o, settled.get(o), entries) for o, entries in by_org.items()]
