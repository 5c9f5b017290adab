"""Operator actions: replay and cancel, each recorded with who, when, why and the state it
left, in the same transaction as the change."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import cast

from sqlalchemy import Table, insert, select, update

from adapter.store import evidence, states
from adapter.store.base import StoreBase, utcnow
from adapter.store.models import Exchange, OperatorAction, Packet
from adapter.store.queries import ids_in_chunks
from adapter.store.records import (
    ExchangeFilter,
    OperatorActionRecord,
    OperatorResult,
    Refusal,
)
from adapter.store.states import State

EX = cast(Table, Exchange.__table__)
PK = cast(Table, Packet.__table__)


class OperatorActions(StoreBase):
    def replay(self, ids: Sequence[int], *, actor: str, reason: str | None = None
               ) -> OperatorResult:
        """Send failed exchanges again with the same packet id and bytes (the receiver
        deduplicates), giving them a fresh retry budget. One transaction per 500, each with
        its audit rows."""
        result = OperatorResult()
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            now = utcnow()
            with self.engine.begin() as c:
                rows = c.execute(select(EX.c.id, EX.c.packet_id, EX.c.state, EX.c.direction,
                                        EX.c.attempts, PK.c.exchange_id.label("has_packet"))
                                 .outerjoin(PK, PK.c.exchange_id == EX.c.id)
                                 .where(EX.c.id.in_(chunk))).all()
                found = {r.id: r for r in rows}
                ok, audit = [], []
                for i in chunk:
                    r = found.get(i)
                    if r is None:
                        result.refused.append(Refusal(i, "no such exchange"))
                    elif r.state != State.FAILED:
                        result.refused.append(Refusal(
                            i, f"is {r.state}, only failed exchanges are replayed"))
                    elif r.has_packet is None:
                        result.refused.append(Refusal(
                            i, "no packet was built: correct the record in the enforcement "
                               "database (a new version is sent)"))
                    else:
                        ok.append(i)
                        audit.append(dict(at=now, actor=actor, action="replay", exchange_id=i,
                                          packet_id=r.packet_id, from_state=r.state,
                                          reason=reason))
                if ok:
                    states.check(State.FAILED, State.PENDING)
                    c.execute(update(EX).where(EX.c.id.in_(ok), EX.c.state == State.FAILED)
                              .values(state=State.PENDING, next_attempt_at=None,
                                      lease_owner=None, lease_expires_at=None, updated_at=now,
                                      replayed_at=now, attempts_at_replay=EX.c.attempts))
                    c.execute(insert(OperatorAction), audit)
                    evidence.append(c, [evidence.Event(
                        "replay", None, None, None, a["exchange_id"], a["packet_id"], None,
                        None, {"actor": actor, "reason": reason, "from": a["from_state"]})
                        for a in audit], enabled=self.evidence)
                result.done += ok
        return result

    def replay_matching(self, f: ExchangeFilter, *, actor: str, reason: str | None = None,
                        chunk: int = 500, progress: Callable[[int], None] | None = None
                        ) -> OperatorResult:
        """Replay every failed exchange the filter selects, streamed in chunks of ids (one
        transaction each, with its audit rows), never loading the whole selection."""
        if f.state not in (None, State.FAILED):
            return OperatorResult()
        failed = dataclasses.replace(f, state=State.FAILED)
        result = OperatorResult()
        for ids in ids_in_chunks(self.engine, failed, chunk):
            r = self.replay(ids, actor=actor, reason=reason)
            result.done += r.done
            result.refused += r.refused
            if progress is not None:
                progress(len(result.done) + len(result.refused))
        return result

    def cancel(self, ids: Sequence[int], *, actor: str, reason: str) -> OperatorResult:
        """Give up on exchanges that have not been delivered, recording who and why."""
        cancellable = (State.PENDING, State.RETRY_WAIT, State.FAILED)
        now = utcnow()
        result = OperatorResult()
        with self.engine.begin() as c:
            rows = {r.id: r for r in c.execute(select(EX.c.id, EX.c.packet_id, EX.c.state)
                                               .where(EX.c.id.in_(list(ids))))}
            for i in ids:
                r = rows.get(i)
                if r is None:
                    result.refused.append(Refusal(i, "no such exchange"))
                elif r.state not in cancellable:
                    result.refused.append(Refusal(
                        i, f"is {r.state}: only pending, retry_wait or failed exchanges can "
                           "be cancelled"))
                else:
                    c.execute(update(EX).where(EX.c.id == i, EX.c.state == r.state).values(
                        state=State.CANCELLED, updated_at=now, next_attempt_at=None,
                        last_error=f"cancelled by {actor}: {reason}"))
                    c.execute(insert(OperatorAction).values(
                        at=now, actor=actor, action="cancel", exchange_id=i,
                        packet_id=r.packet_id, from_state=r.state, reason=reason))
                    evidence.append(c, [evidence.Event(
                        "cancel", None, None, None, i, r.packet_id, None, None,
                        {"actor": actor, "reason": reason, "from": r.state})],
                        enabled=self.evidence)
                    states.check(r.state, State.CANCELLED)
                    result.done.append(i)
        return result

    def actions_of(self, exchange_id: int) -> list[OperatorActionRecord]:
        with self.engine.connect() as c:
            return [OperatorActionRecord(*r) for r in c.execute(
                select(OperatorAction.at, OperatorAction.actor, OperatorAction.action,
                       OperatorAction.reason).where(OperatorAction.exchange_id == exchange_id)
                .order_by(OperatorAction.id))]
