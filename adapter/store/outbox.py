"""The outbox: change-capture cursors, prepared exchanges, claims under a lease, attempts
and the states they lead to. The SQL that matters for exactly-once delivery lives here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)

from adapter.dbutil import is_sqlite
from adapter.store import evidence, recipients, states
from adapter.store.base import StoreBase, utcnow
from adapter.store.models import Attempt, Cursor, Exchange, Packet
from adapter.store.records import (
    AttemptOutcome,
    ClaimedExchange,
    DeliveryAnswer,
    NewExchange,
    SentExchange,
)
from adapter.store.states import State

EX = cast(Table, Exchange.__table__)
PK = cast(Table, Packet.__table__)
AT = cast(Table, Attempt.__table__)
CU = cast(Table, Cursor.__table__)
log = logging.getLogger("adapter.store")


class Outbox(StoreBase):
    def cursor(self, route: str) -> str | None:
        with self.engine.connect() as c:
            return c.execute(select(CU.c.position).where(CU.c.route == route)).scalar()

    def existing_packet_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        with self.engine.connect() as c:
            return set(c.execute(select(EX.c.packet_id).where(EX.c.packet_id.in_(ids))).scalars())

    def add_exchanges(self, route: str, items: Iterable[NewExchange],
                      cursor_position: str | None) -> set[str]:
        """Insert new exchanges and move the route's cursor, in one transaction.

        Duplicates (same packet id) are ignored, so a re-read after a crash or an overlap
        window never creates a second exchange. Returns the packet ids that were new."""
        now = utcnow()
        with self.engine.begin() as c:
            new = add_in(c, self._insert, route, list(items), now, with_evidence=self.evidence)
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

    def claim(self, route: str, *, limit: int, lease_seconds: float,
              owner: str | None = None, now: dt.datetime | None = None) -> list[ClaimedExchange]:
        """Take up to `limit` due exchanges under a lease, committed before any network call.

        The due set is read as three index range scans that each stop after `limit` rows
        (pending by id, retry_wait by due time, sending with an expired lease by id), so a
        claim costs the same at 10 thousand rows as at 4 million: delivered rows are never
        read and nothing is sorted. The lowest ids of those candidates are taken, by one
        UPDATE that checks the due condition again per row. On PostgreSQL each scan locks
        its rows FOR UPDATE SKIP LOCKED (another instance's candidates are skipped); on
        SQLite, BEGIN IMMEDIATE serialises writers."""
        now = now or utcnow()
        owner = owner or self.instance
        due = or_(EX.c.state == State.PENDING,
                  and_(EX.c.state == State.RETRY_WAIT, EX.c.next_attempt_at <= now),
                  and_(EX.c.state == State.SENDING, EX.c.lease_expires_at < now))
        with self.engine.begin() as c:
            candidates: set[int] = set()
            for scan in _due_scans(route, limit, now, lock=not is_sqlite(self.engine)):
                candidates.update(c.execute(scan).scalars())
            if not candidates:
                return []
            chosen = sorted(candidates)[:limit]
            rows = list(c.execute(
                update(EX).where(EX.c.id.in_(chosen), due)
                .values(state=State.SENDING, lease_owner=owner, updated_at=now,
                        lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                        attempts=EX.c.attempts + 1)
                .returning(EX.c.id, EX.c.packet_id, EX.c.kind,
                           EX.c.attempts - EX.c.attempts_at_replay,
                           func.coalesce(EX.c.replayed_at, EX.c.created_at), EX.c.attempts)
            ).all())
            if not rows:
                return []
            payloads = {i: (p, h) for i, p, h in c.execute(
                select(PK.c.exchange_id, PK.c.payload, PK.c.sha256).where(
                    PK.c.exchange_id.in_([r[0] for r in rows])))}
        rows.sort(key=lambda r: r[0])
        return [ClaimedExchange(r[0], r[1], r[2], r[3], r[4], payload=payloads[r[0]][0],
                                number=r[5], sha256=payloads[r[0]][1]) for r in rows]

    def record_outcomes(self, outcomes: Sequence[AttemptOutcome],
                        claimed: dict[int, ClaimedExchange], policy: states.RetryPolicy,
                        owner: str | None = None, status_poll: float = 30.0) -> set[int]:
        """Write every attempt and the state it leads to, in one transaction: one
        executemany per kind of outcome (the same columns written), not one statement per
        exchange.

        Each row's update is conditional on our lease, so a late answer never overwrites
        what an instance that took the expired lease over has recorded. The row counts are
        checked: exchanges whose lease was lost are logged and returned (their attempt is
        still recorded: it happened)."""
        owner = owner or self.instance
        now = utcnow()
        groups: dict[tuple[str, ...], list[dict]] = {}
        for o in outcomes:
            values = _outcome_values(o, claimed[o.exchange_id], policy, now, status_poll)
            values.update(b_id=o.exchange_id, b_owner=owner, updated_at=now,
                          lease_owner=None, lease_expires_at=None)
            groups.setdefault(tuple(sorted(values)), []).append(values)
        lost: set[int] = set()
        with self.engine.begin() as c:
            for columns, rows in groups.items():
                stmt = (update(EX).where(EX.c.id == bindparam("b_id"),
                                         EX.c.state == State.SENDING,
                                         EX.c.lease_owner == bindparam("b_owner"))
                        .values({k: bindparam(k) for k in columns if not k.startswith("b_")}))
                written = c.execute(stmt, rows).rowcount
                if written != len(rows):
                    lost |= not_written(c, rows, now)
            recipients.settle_answered(c, [o.exchange_id for o in outcomes
                                           if o.outcome == "sent"
                                           and o.exchange_id not in lost], now)
            attempts = [dict(exchange_id=o.exchange_id, number=claimed[o.exchange_id].number,
                             started_at=o.started_at, duration_ms=o.duration_ms,
                             outcome=o.outcome, error=o.error, instance=owner)
                        for o in outcomes]
            if attempts:
                c.execute(insert(AT), attempts)
            evidence.append(c, [evidence.Event(
                "attempt", "out", None, claimed[o.exchange_id].kind, o.exchange_id,
                claimed[o.exchange_id].packet_id, None, None,
                {k: v for k, v in dict(outcome=o.outcome, error=o.error,
                                       platform_message_id=o.platform_message_id,
                                       receipt_status=o.receipt_status,
                                       sha256=_digest(claimed[o.exchange_id])
                                       ).items() if v is not None})
                for o in outcomes], enabled=self.evidence)
        for i in sorted(lost):
            log.warning("exchange %s (packet %s): lease lost before its outcome (%s) was "
                        "recorded; another instance holds it now, its state is left as that "
                        "instance records it", i, claimed[i].packet_id,
                        next(o.outcome for o in outcomes if o.exchange_id == i))
        return lost

    def sent_to_check(self, route: str, *, limit: int,
                      now: dt.datetime | None = None) -> list[SentExchange]:
        """Exchanges the platform has queued whose delivery status is due for a query.

        Read by due time through ix_exchanges_claim (two range scans, each stopping after
        `limit` rows), so exchanges queued but not yet due are not walked every round."""
        now = now or utcnow()
        base = select(EX.c.id, EX.c.packet_id).where(EX.c.route == route,
                                                     EX.c.state == State.SENT)
        scans = [base.where(EX.c.next_attempt_at.is_(None)).limit(limit),
                 base.where(EX.c.next_attempt_at <= now)
                 .order_by(EX.c.next_attempt_at).limit(limit)]
        with self.engine.connect() as c:
            found = {r[0]: r[1] for scan in scans for r in c.execute(scan)}
        return [SentExchange(i, found[i]) for i in sorted(found)[:limit]]

    def settle_sent(self, results: Sequence[DeliveryAnswer], *, status_poll: float) -> None:
        """Apply delivery-status answers: delivered ends the exchange; queued asks again
        later; unknown (the platform lost it) sends it again, with the same packet id."""
        now = utcnow()
        with self.engine.begin() as c:
            for ex_id, status in ((r.exchange_id, r.status) for r in results):
                values: dict[str, Any]
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
            evidence.append(c, [evidence.Event("delivery-status", "out", None, None,
                                               r.exchange_id, None, None, None,
                                               {"status": r.status})
                                for r in results if r.status != "queued"],
                            enabled=self.evidence)

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


def _digest(ex: ClaimedExchange) -> str:
    """The payload's SHA-256: as stored beside it (computed once, when it was built)."""
    return ex.sha256 or hashlib.sha256(ex.payload).hexdigest()


def _outcome_values(o: AttemptOutcome, ex: ClaimedExchange, policy: states.RetryPolicy,
                    now: dt.datetime, status_poll: float) -> dict:
    """The columns an attempt's outcome writes (beside the lease and updated_at)."""
    values: dict = {}
    if o.outcome in ("delivered", "duplicate"):
        values.update(state=State.DELIVERED, delivered_at=now, last_error=None)
    elif o.outcome == "sent":
        values.update(state=State.SENT, last_error=None,
                      next_attempt_at=now + dt.timedelta(seconds=status_poll))
    else:
        d = states.after_failure(permanent=o.permanent, attempts=ex.attempts,
                                 created_at=ex.created_at, now=now, policy=policy)
        values.update(state=d.state, next_attempt_at=d.next_attempt_at, last_error=o.error)
    states.check(State.SENDING, values["state"])
    if o.platform_message_id:
        values.update(platform_message_id=o.platform_message_id,
                      receipt_status=o.receipt_status)
    return values


def not_written(c: Connection, rows: list[dict], now: dt.datetime) -> set[int]:
    """Which rows of an executemany the lease or state condition refused: those not
    showing the state and time we wrote (inside the same transaction, so what we wrote is
    visible). Rows carry the exchange id as `b_id` and the state written as `state`."""
    found = {r.id: r for r in c.execute(select(EX.c.id, EX.c.state, EX.c.updated_at).where(
        EX.c.id.in_([r["b_id"] for r in rows])))}
    return {r["b_id"] for r in rows
            if (f := found.get(r["b_id"])) is None or f.state != r["state"]
            or f.updated_at != now}


def _due_scans(route: str, limit: int, now: dt.datetime, *, lock: bool) -> list[Select]:
    """The claim's reads: each an index range scan (ix_exchanges_queue or
    ix_exchanges_claim) that returns rows in index order and stops after `limit`."""
    out = EX.c.direction == "out"
    scans = [
        select(EX.c.id).where(EX.c.route == route, EX.c.state == State.PENDING, out)
        .order_by(EX.c.id),
        select(EX.c.id).where(EX.c.route == route, EX.c.state == State.RETRY_WAIT,
                              EX.c.next_attempt_at <= now, out)
        .order_by(EX.c.next_attempt_at),
        # rows in `sending` are the ones in flight: a handful per instance
        select(EX.c.id).where(EX.c.route == route, EX.c.state == State.SENDING,
                              EX.c.lease_expires_at < now, out)
        .order_by(EX.c.id),
    ]
    scans = [s.limit(limit) for s in scans]
    return [s.with_for_update(skip_locked=True) for s in scans] if lock else scans


def add_in(c: Connection, insert_of, route: str, items: list[NewExchange], now: dt.datetime,
           *, with_evidence: bool) -> set[str]:
    """add_exchanges inside the caller's transaction; returns the packet ids that were new."""
    if not items:
        return set()
    res = c.execute(insert_of(EX).on_conflict_do_nothing(
        index_elements=["packet_id"]).returning(EX.c.packet_id, EX.c.id), [dict(
            packet_id=it.packet_id, kind=it.kind, route=route, direction="out",
            peer=it.peer, source_key=it.source_key, source_version=it.source_version,
            state=State.FAILED if it.error is not None else State.PENDING, attempts=0,
            next_attempt_at=None, created_at=now, updated_at=now, last_error=it.error,
            document_id=it.document_id) for it in items])
    #: the new rows' ids come back with the insert: no second query to look them up
    ids: dict[str, int] = {pid: i for pid, i in res}
    fresh = [it for it in items if it.packet_id in ids]
    digests = {it.packet_id: hashlib.sha256(it.payload).hexdigest()
               for it in fresh if it.payload is not None}
    blobs = [dict(exchange_id=ids[pid], payload=it.payload, sha256=digests[pid])
             for it in fresh if (pid := it.packet_id) in digests]
    if blobs:
        c.execute(insert(PK), blobs)
    recipients.add(c, [(ids[it.packet_id], o) for it in fresh for o in it.recipients])
    evidence.append(c, [evidence.Event(
        "built" if it.error is None else "refused", "out", it.peer, it.kind,
        ids.get(it.packet_id), it.packet_id, it.payload,
        "valid" if it.payload is not None else None,
        {"source_key": it.source_key, "source_version": it.source_version,
         **({"recipients": list(it.recipients)} if it.recipients else {}),
         **({"error": it.error} if it.error else {})}, digests.get(it.packet_id))
        for it in fresh], enabled=with_evidence)
    return set(ids)
