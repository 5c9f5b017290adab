"""Narrow interface to the state database (the pyas2lib habit): the engine calls these
methods and never builds SQL itself, so protocol logic is testable and the SQL that matters
for exactly-once delivery lives in one file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from adapter.dbutil import is_sqlite
from adapter.store import evidence, recipients, states
from adapter.store.models import (
    Attempt,
    BreakerState,
    Cursor,
    Exchange,
    OperatorAction,
    Packet,
    StateBase,
)
from adapter.store.states import State

EX = Exchange.__table__
PK = Packet.__table__
AT = Attempt.__table__
CU = Cursor.__table__


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class NewExchange:
    """A prepared packet (signed bytes) or a record that failed to become one."""

    packet_id: str
    kind: str
    source_key: str
    source_version: int
    peer: str | None
    payload: bytes | None = None
    error: str | None = None
    document_id: str | None = None
    #: the addressees of an edXML document, one row each (`peer` holds a single one)
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClaimedExchange:
    id: int
    packet_id: str
    kind: str
    #: attempts since creation or the last replay, this one included (the retry budget)
    attempts: int
    #: creation or last replay (the age budget)
    created_at: dt.datetime
    payload: bytes
    #: the attempt's number in the exchange's whole history
    number: int = 0


@dataclass(frozen=True)
class AttemptOutcome:
    exchange_id: int
    started_at: dt.datetime
    duration_ms: int
    #: delivered | duplicate | sent | rejected | transient
    outcome: str
    error: str | None = None
    permanent: bool = False
    platform_message_id: str | None = None
    receipt_status: str | None = None


class ExchangeStore:
    def __init__(self, engine: Engine, *, instance: str = "adapter",
                 evidence: bool = True) -> None:
        self.engine = engine
        self.instance = instance
        #: append to the evidence log in the same transaction as each state change
        self.evidence = evidence
        self._insert = (sqlite.insert if is_sqlite(engine) else postgresql.insert)

    def create_schema(self) -> None:
        StateBase.metadata.create_all(self.engine)

    # ---- change capture --------------------------------------------------------------

    def cursor(self, route: str) -> str | None:
        with self.engine.connect() as c:
            return c.execute(select(CU.c.position).where(CU.c.route == route)).scalar()

    def existing_packet_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        with self.engine.connect() as c:
            return set(c.execute(select(EX.c.packet_id).where(EX.c.packet_id.in_(ids))).scalars())

    def add_exchanges(self, route: str, items: Iterable[NewExchange],
                      cursor_position: str | None) -> int:
        """Insert new exchanges and move the route's cursor, in one transaction.

        Duplicates (same packet id) are ignored, so a re-read after a crash or an overlap
        window never creates a second exchange. Returns how many were new."""
        now = utcnow()
        ex_rows, pk_rows = [], []
        items = list(items)
        for it in items:
            failed = it.error is not None
            ex_rows.append(dict(
                packet_id=it.packet_id, kind=it.kind, route=route, direction="out",
                peer=it.peer, source_key=it.source_key, source_version=it.source_version,
                state=State.FAILED if failed else State.PENDING, attempts=0,
                next_attempt_at=None, created_at=now, updated_at=now, last_error=it.error,
                document_id=it.document_id))
            if it.payload is not None:
                pk_rows.append(dict(packet_id=it.packet_id, payload=it.payload,
                                    sha256=hashlib.sha256(it.payload).hexdigest()))
        with self.engine.begin() as c:
            new = 0
            if ex_rows:
                res = c.execute(self._insert(EX).on_conflict_do_nothing(
                    index_elements=["packet_id"]).returning(EX.c.packet_id), ex_rows)
                inserted = set(res.scalars())
                new = len(inserted)
                pk_rows = [r for r in pk_rows if r["packet_id"] in inserted]
                if pk_rows:
                    c.execute(insert(PK), pk_rows)
                fresh = [it for it in items if it.packet_id in inserted]
                ids: dict[str, int] = {}
                if fresh and (self.evidence or any(it.recipients for it in fresh)):
                    ids = dict(c.execute(select(EX.c.packet_id, EX.c.id).where(
                        EX.c.packet_id.in_(list(inserted)))).all())
                recipients.add(c, [(ids[it.packet_id], o) for it in fresh
                                   for o in it.recipients])
                evidence.append(c, [evidence.Event(
                    "built" if it.error is None else "refused", "out", it.peer, it.kind,
                    ids.get(it.packet_id), it.packet_id, it.payload,
                    "valid" if it.payload is not None else None,
                    {"source_key": it.source_key, "source_version": it.source_version,
                     **({"recipients": list(it.recipients)} if it.recipients else {}),
                     **({"error": it.error} if it.error else {})})
                    for it in fresh], enabled=self.evidence)
            if cursor_position is not None:
                self._advance_cursor(c, route, cursor_position, now)
        return new

    def _advance_cursor(self, c, route: str, position: str, now: dt.datetime) -> None:
        stmt = self._insert(CU).values(route=route, position=position, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["route"],
            set_=dict(position=position, updated_at=now),
            where=CU.c.position < position)
        c.execute(stmt)

    # ---- delivery --------------------------------------------------------------------

    def claim(self, route: str, *, limit: int, lease_seconds: float,
              owner: str | None = None, now: dt.datetime | None = None) -> list[ClaimedExchange]:
        """Take up to `limit` due exchanges under a lease, committed before any network call.

        One statement: on PostgreSQL the inner select skips rows another instance holds
        (FOR UPDATE SKIP LOCKED); on SQLite, BEGIN IMMEDIATE serialises writers."""
        now = now or utcnow()
        owner = owner or self.instance
        due = or_(EX.c.state == State.PENDING,
                  and_(EX.c.state == State.RETRY_WAIT, EX.c.next_attempt_at <= now),
                  and_(EX.c.state == State.SENDING, EX.c.lease_expires_at < now))
        sub = (select(EX.c.id).where(EX.c.route == route, EX.c.direction == "out", due)
               .order_by(EX.c.id).limit(limit))
        if not is_sqlite(self.engine):
            sub = sub.with_for_update(skip_locked=True)
        stmt = (update(EX).where(EX.c.id.in_(sub.scalar_subquery()), due)
                .values(state=State.SENDING, lease_owner=owner, updated_at=now,
                        lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                        attempts=EX.c.attempts + 1)
                .returning(EX.c.id, EX.c.packet_id, EX.c.kind,
                           EX.c.attempts - EX.c.attempts_at_replay,
                           func.coalesce(EX.c.replayed_at, EX.c.created_at), EX.c.attempts))
        with self.engine.begin() as c:
            rows = c.execute(stmt).all()
            if not rows:
                return []
            payloads = dict(c.execute(select(PK.c.packet_id, PK.c.payload).where(
                PK.c.packet_id.in_([r.packet_id for r in rows]))).all())
        rows.sort(key=lambda r: r[0])
        return [ClaimedExchange(r[0], r[1], r[2], r[3], r[4], payloads[r[1]], r[5])
                for r in rows]

    def record_outcomes(self, outcomes: Sequence[AttemptOutcome],
                        claimed: dict[int, ClaimedExchange], policy: states.RetryPolicy,
                        owner: str | None = None, status_poll: float = 30.0) -> None:
        """Write every attempt and the state it leads to, in one transaction.

        The update is conditional on our lease, so a late answer never overwrites what an
        instance that took the expired lease over has recorded."""
        owner = owner or self.instance
        now = utcnow()
        with self.engine.begin() as c:
            attempts = []
            for o in outcomes:
                ex = claimed[o.exchange_id]
                attempts.append(dict(exchange_id=o.exchange_id, number=ex.number,
                                     started_at=o.started_at, duration_ms=o.duration_ms,
                                     outcome=o.outcome, error=o.error, instance=owner))
                values: dict = dict(updated_at=now, lease_owner=None, lease_expires_at=None)
                if o.outcome in ("delivered", "duplicate"):
                    values.update(state=State.DELIVERED, delivered_at=now, last_error=None)
                elif o.outcome == "sent":
                    values.update(state=State.SENT, last_error=None,
                                  next_attempt_at=now + dt.timedelta(seconds=status_poll))
                else:
                    d = states.after_failure(permanent=o.permanent, attempts=ex.attempts,
                                             created_at=ex.created_at, now=now, policy=policy)
                    values.update(state=d.state, next_attempt_at=d.next_attempt_at,
                                  last_error=o.error)
                states.check(State.SENDING, values["state"])
                if o.platform_message_id:
                    values.update(platform_message_id=o.platform_message_id,
                                  receipt_status=o.receipt_status)
                c.execute(update(EX).where(EX.c.id == o.exchange_id,
                                           EX.c.state == State.SENDING,
                                           EX.c.lease_owner == owner).values(**values))
            if attempts:
                c.execute(insert(AT), attempts)
            evidence.append(c, [evidence.Event(
                "attempt", "out", None, claimed[o.exchange_id].kind, o.exchange_id,
                claimed[o.exchange_id].packet_id, None, None,
                {k: v for k, v in dict(outcome=o.outcome, error=o.error,
                                       platform_message_id=o.platform_message_id,
                                       receipt_status=o.receipt_status,
                                       sha256=hashlib.sha256(
                                           claimed[o.exchange_id].payload).hexdigest()
                                       ).items() if v is not None})
                for o in outcomes], enabled=self.evidence)

    def sent_to_check(self, route: str, *, limit: int,
                      now: dt.datetime | None = None) -> list[tuple[int, str]]:
        """Exchanges the platform has queued whose delivery status is due for a query."""
        now = now or utcnow()
        with self.engine.connect() as c:
            return [tuple(r) for r in c.execute(
                select(EX.c.id, EX.c.packet_id).where(
                    EX.c.route == route, EX.c.state == State.SENT,
                    or_(EX.c.next_attempt_at.is_(None), EX.c.next_attempt_at <= now))
                .order_by(EX.c.id).limit(limit))]

    def settle_sent(self, results: Sequence[tuple[int, str]], *, status_poll: float) -> None:
        """Apply delivery-status answers: delivered ends the exchange; queued asks again
        later; unknown (the platform lost it) sends it again, with the same packet id."""
        now = utcnow()
        with self.engine.begin() as c:
            for ex_id, status in results:
                if status == "delivered":
                    values = dict(state=State.DELIVERED, delivered_at=now, next_attempt_at=None)
                elif status == "unknown":
                    values = dict(state=State.RETRY_WAIT, next_attempt_at=now,
                                  last_error="platform no longer knows the packet: resending")
                else:
                    values = dict(next_attempt_at=now + dt.timedelta(seconds=status_poll))
                if "state" in values:
                    states.check(State.SENT, values["state"])
                c.execute(update(EX).where(EX.c.id == ex_id, EX.c.state == State.SENT)
                          .values(updated_at=now, **values))
            evidence.append(c, [evidence.Event("delivery-status", "out", None, None, ex_id,
                                               None, None, None, {"status": status})
                                for ex_id, status in results if status != "queued"],
                            enabled=self.evidence)

    # ---- inbound ---------------------------------------------------------------------

    def add_inbound(self, route: str, *, packet_id: str, kind: str, peer: str,
                    payload: bytes) -> int:
        return self.add_inbound_many(route, [(packet_id, kind, peer, payload)])[packet_id]

    def add_inbound_many(self, route: str,
                         items: Sequence[tuple[str, str, str, bytes]]) -> dict[str, int]:
        """Store received packets durably, in one transaction, before anything else
        happens to them. Returns packet id -> exchange id (existing ones included)."""
        if not items:
            return {}
        now = utcnow()
        with self.engine.begin() as c:
            new = set(c.execute(self._insert(EX).on_conflict_do_nothing(
                index_elements=["packet_id"]).returning(EX.c.packet_id), [dict(
                    packet_id=pid, kind=kind, route=route, direction="in", peer=peer,
                    source_key=pid, source_version=0, state=State.PENDING, attempts=0,
                    created_at=now, updated_at=now) for pid, kind, peer, _ in items]).scalars())
            blobs = [dict(packet_id=pid, payload=data, sha256=hashlib.sha256(data).hexdigest())
                     for pid, _, _, data in items if pid in new]
            if blobs:
                c.execute(insert(PK), blobs)
            ids = dict(c.execute(select(EX.c.packet_id, EX.c.id).where(
                EX.c.packet_id.in_([i[0] for i in items]))).all())
            evidence.append(c, [evidence.Event("received", "in", peer, kind, ids[pid], pid,
                                               data) for pid, kind, peer, data in items
                                if pid in new], enabled=self.evidence)
            return ids

    def inbound_pending(self, route: str, limit: int) -> list[tuple[int, str, str, bytes]]:
        """Stored but not yet processed (a crash came between storing and importing)."""
        with self.engine.connect() as c:
            rows = c.execute(select(EX.c.id, EX.c.packet_id, EX.c.peer, PK.c.payload)
                             .join(PK, PK.c.packet_id == EX.c.packet_id)
                             .where(EX.c.route == route, EX.c.direction == "in",
                                    EX.c.state == State.PENDING)
                             .order_by(EX.c.id).limit(limit)).all()
        return [tuple(r) for r in rows]

    def finish_inbound(self, exchange_id: int, **kw) -> None:
        self.finish_inbound_many([dict(kw, exchange_id=exchange_id)])

    def finish_inbound_many(self, results: Sequence[dict]) -> None:
        """Record imports and quarantines: each dict has exchange_id, imported, error,
        signature and optionally source_key, source_version, started, duration_ms."""
        now = utcnow()
        with self.engine.begin() as c:
            attempts = []
            for r in results:
                target = State.DELIVERED if r["imported"] else State.FAILED
                states.check(State.PENDING, target, "in")
                values: dict = dict(state=target, updated_at=now, last_error=r.get("error"),
                                    signature=r.get("signature"), attempts=EX.c.attempts + 1)
                if r["imported"]:
                    values["delivered_at"] = now
                if r.get("source_key"):
                    values.update(source_key=r["source_key"][:80],
                                  source_version=r.get("source_version") or 0)
                c.execute(update(EX).where(EX.c.id == r["exchange_id"],
                                           EX.c.state == State.PENDING).values(**values))
                attempts.append(dict(exchange_id=r["exchange_id"], number=1,
                                     started_at=r.get("started") or now,
                                     duration_ms=r.get("duration_ms", 0),
                                     outcome="imported" if r["imported"] else "quarantined",
                                     error=r.get("error"), instance=self.instance))
            if attempts:
                c.execute(insert(AT), attempts)
            evidence.append(c, [evidence.Event(
                "imported" if r["imported"] else "quarantined", "in", None, None,
                r["exchange_id"], None, None, r.get("signature"),
                {k: v for k, v in dict(error=r.get("error"), source_key=r.get("source_key"),
                                       source_version=r.get("source_version")).items() if v})
                for r in results], enabled=self.evidence)

    def inbound_state(self, packet_id: str) -> tuple[int, str, str | None, str | None] | None:
        return self.inbound_states([packet_id]).get(packet_id)

    def inbound_states(self, packet_ids: Sequence[str]
                       ) -> dict[str, tuple[int, str, str | None, str | None]]:
        """packet id -> (exchange id, state, ack, last error) for those we have."""
        if not packet_ids:
            return {}
        with self.engine.connect() as c:
            rows = c.execute(select(EX.c.packet_id, EX.c.id, EX.c.state, EX.c.receipt_status,
                                    EX.c.last_error).where(EX.c.packet_id.in_(packet_ids))).all()
        return {r[0]: tuple(r[1:]) for r in rows}

    def mark_acknowledged(self, exchange_id: int, outcome: str) -> None:
        self.mark_acknowledged_many([(exchange_id, outcome)])

    def mark_acknowledged_many(self, acks: Sequence[tuple[int, str]]) -> None:
        if not acks:
            return
        now = utcnow()
        with self.engine.begin() as c:
            for ex_id, outcome in acks:
                c.execute(update(EX).where(EX.c.id == ex_id).values(
                    receipt_status=f"ack:{outcome}", updated_at=now))
            evidence.append(c, [evidence.Event("acknowledged", "in", None, None, ex_id, None,
                                               None, None, {"outcome": outcome})
                                for ex_id, outcome in acks], enabled=self.evidence)

    def save_breaker(self, endpoint: str, state: str, failures: int, opened_for: float) -> None:
        now = utcnow()
        stmt = self._insert(BreakerState.__table__).values(
            endpoint=endpoint, instance=self.instance, state=state, failures=failures,
            opened_for=int(opened_for), updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["endpoint", "instance"],
            set_=dict(state=state, failures=failures, opened_for=int(opened_for),
                      updated_at=now))
        with self.engine.begin() as c:
            c.execute(stmt)

    def breakers(self) -> list[tuple]:
        with self.engine.connect() as c:
            return [tuple(r) for r in c.execute(select(
                BreakerState.endpoint, BreakerState.instance, BreakerState.state,
                BreakerState.failures, BreakerState.opened_for, BreakerState.updated_at)
                .order_by(BreakerState.endpoint))]

    # ---- operators ---------------------------------------------------------------------

    def replay(self, ids: Sequence[int], *, actor: str, reason: str | None = None
               ) -> tuple[list[int], list[tuple[int, str]]]:
        """Send failed exchanges again with the same packet id and bytes (the receiver
        deduplicates), giving them a fresh retry budget. Returns (replayed, refused with why).
        One transaction per 500, each with its audit rows."""
        done: list[int] = []
        refused: list[tuple[int, str]] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            now = utcnow()
            with self.engine.begin() as c:
                rows = c.execute(select(EX.c.id, EX.c.packet_id, EX.c.state, EX.c.direction,
                                        EX.c.attempts, PK.c.packet_id.label("has_packet"))
                                 .outerjoin(PK, PK.c.packet_id == EX.c.packet_id)
                                 .where(EX.c.id.in_(chunk))).all()
                found = {r.id: r for r in rows}
                ok, audit = [], []
                for i in chunk:
                    r = found.get(i)
                    if r is None:
                        refused.append((i, "no such exchange"))
                    elif r.state != State.FAILED:
                        refused.append((i, f"is {r.state}, only failed exchanges are replayed"))
                    elif r.has_packet is None:
                        refused.append((i, "no packet was built: correct the record in the "
                                           "enforcement database (a new version is sent)"))
                    else:
                        ok.append(i)
                        audit.append(dict(at=now, actor=actor, action="replay", exchange_id=i,
                                          packet_id=r.packet_id, from_state=r.state,
                                          reason=reason))
                if ok:
                    c.execute(update(EX).where(EX.c.id.in_(ok), EX.c.state == State.FAILED)
                              .values(state=State.PENDING, next_attempt_at=None,
                                      lease_owner=None, lease_expires_at=None, updated_at=now,
                                      replayed_at=now, attempts_at_replay=EX.c.attempts))
                    c.execute(insert(OperatorAction.__table__), audit)
                    evidence.append(c, [evidence.Event(
                        "replay", None, None, None, a["exchange_id"], a["packet_id"], None,
                        None, {"actor": actor, "reason": reason, "from": a["from_state"]})
                        for a in audit], enabled=self.evidence)
                done += ok
        return done, refused

    def cancel(self, ids: Sequence[int], *, actor: str, reason: str
               ) -> tuple[list[int], list[tuple[int, str]]]:
        """Give up on exchanges that have not been delivered, recording who and why."""
        cancellable = (State.PENDING, State.RETRY_WAIT, State.FAILED)
        now = utcnow()
        done: list[int] = []
        refused: list[tuple[int, str]] = []
        with self.engine.begin() as c:
            rows = {r.id: r for r in c.execute(select(EX.c.id, EX.c.packet_id, EX.c.state)
                                               .where(EX.c.id.in_(list(ids))))}
            for i in ids:
                r = rows.get(i)
                if r is None:
                    refused.append((i, "no such exchange"))
                elif r.state not in cancellable:
                    refused.append((i, f"is {r.state}: only pending, retry_wait or failed "
                                       "exchanges can be cancelled"))
                else:
                    c.execute(update(EX).where(EX.c.id == i, EX.c.state == r.state).values(
                        state=State.CANCELLED, updated_at=now, next_attempt_at=None,
                        last_error=f"cancelled by {actor}: {reason}"))
                    c.execute(insert(OperatorAction.__table__).values(
                        at=now, actor=actor, action="cancel", exchange_id=i,
                        packet_id=r.packet_id, from_state=r.state, reason=reason))
                    evidence.append(c, [evidence.Event(
                        "cancel", None, None, None, i, r.packet_id, None, None,
                        {"actor": actor, "reason": reason, "from": r.state})],
                        enabled=self.evidence)
                    done.append(i)
        return done, refused

    def actions_of(self, exchange_id: int) -> list[tuple]:
        with self.engine.connect() as c:
            return [tuple(r) for r in c.execute(
                select(OperatorAction.at, OperatorAction.actor, OperatorAction.action,
                       OperatorAction.reason).where(OperatorAction.exchange_id == exchange_id)
                .order_by(OperatorAction.id))]

    def release_leases(self, owner: str | None = None) -> int:
        """Put `sending` exchanges back to the queue: all of them (when this process holds
        the exclusive instance lock) or those of one owner."""
        cond = [EX.c.state == State.SENDING]
        if owner:
            cond.append(EX.c.lease_owner == owner)
        with self.engine.begin() as c:
            return c.execute(update(EX).where(*cond).values(
                state=State.PENDING, lease_owner=None, lease_expires_at=None,
                updated_at=utcnow())).rowcount

    # ---- reading ---------------------------------------------------------------------

    def counts(self) -> dict[tuple[str, str], int]:
        with self.engine.connect() as c:
            rows = c.execute(select(EX.c.kind, EX.c.state, func.count())
                             .group_by(EX.c.kind, EX.c.state)).all()
        return {(k, s): n for k, s, n in rows}

    def outstanding(self, route: str | None = None) -> int:
        """Exchanges that are not final and not failed: work still to do."""
        cond = [EX.c.state.in_([State.PENDING, State.SENDING, State.SENT, State.RETRY_WAIT])]
        if route:
            cond.append(EX.c.route == route)
        with self.engine.connect() as c:
            return c.execute(select(func.count()).where(*cond)).scalar_one()

    def oldest_outstanding(self) -> dt.datetime | None:
        with self.engine.connect() as c:
            return c.execute(select(func.min(EX.c.created_at)).where(EX.c.state.in_(
                [State.PENDING, State.SENDING, State.RETRY_WAIT]))).scalar()

    def last_delivery(self) -> dict[str, dt.datetime]:
        with self.engine.connect() as c:
            rows = c.execute(select(EX.c.route, func.max(EX.c.delivered_at))
                             .where(EX.c.state == State.DELIVERED).group_by(EX.c.route)).all()
        return {r: t for r, t in rows}

    def next_due(self, route: str) -> dt.datetime | None:
        with self.engine.connect() as c:
            return c.execute(select(func.min(EX.c.next_attempt_at)).where(
                EX.c.route == route, EX.c.state == State.RETRY_WAIT)).scalar()

    def get(self, ident: str) -> Exchange | None:
        from sqlalchemy.orm import Session
        with Session(self.engine) as s:
            q = select(Exchange).where(or_(Exchange.packet_id == ident,
                                           Exchange.id == (int(ident) if ident.isdigit() else -1)))
            return s.execute(q).scalar_one_or_none()

    def attempts_of(self, exchange_id: int) -> list[Attempt]:
        from sqlalchemy.orm import Session
        with Session(self.engine) as s:
            return list(s.execute(select(Attempt).where(Attempt.exchange_id == exchange_id)
                                  .order_by(Attempt.id)).scalars())

    def record_status(self, report: recipients.ReportedStatus
                      ) -> recipients.StatusRecorded | None:
        """A recipient's status packet about a document we sent; None when we sent no
        such document."""
        with self.engine.begin() as c:
            ex_id = recipients.our_document(c, report.document_id)
            if ex_id is None:
                return None
            return recipients.record(c, ex_id, report, utcnow(), with_evidence=self.evidence)

    def recipients_of(self, exchange_id: int) -> list[recipients.RecipientTimeline]:
        with self.engine.connect() as c:
            return recipients.timelines(c, exchange_id)

    def payload_of(self, packet_id: str) -> bytes | None:
        with self.engine.connect() as c:
            return c.execute(select(PK.c.payload).where(PK.c.packet_id == packet_id)).scalar()
