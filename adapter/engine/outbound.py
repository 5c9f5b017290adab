"""The outbound pipeline: change capture -> prepared exchanges -> delivery.

Prepare reads source rows in batches, builds signed packets (inline or in worker
processes) and commits the new exchanges together with the advanced cursor: a crash before
the commit re-reads the same rows and derives the same packet ids. Delivery claims due
exchanges under a lease (committed), sends them concurrently outside any transaction, then
commits every attempt and the state it leads to in one batch.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from dataclasses import dataclass, field

from adapter.config import RouteSection
from adapter.engine.context import Context
from adapter.errors import AdapterError, RejectedByPeer, TransportError
from adapter.mapping import packet_id
from adapter.sources.changes import ChangeReader, SourceCursor
from adapter.store import states
from adapter.store.base import utcnow
from adapter.store.records import (
    AttemptOutcome,
    ClaimedExchange,
    DeliveryAnswer,
    SentExchange,
)
from adapter.transports.base import PlatformReceipt, SubmitItem

log = logging.getLogger("adapter.outbound")


@dataclass
class RoundStats:
    prepared: int = 0
    rejected: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    breaker_open: bool = False
    errors: list[str] = field(default_factory=list)


class OutboundEngine:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._breaker_shown: dict[str, bool] = {}

    # ---- prepare ---------------------------------------------------------------------

    def prepare(self, route: RouteSection, *, max_batches: int | None = None) -> RoundStats:
        ctx = self.ctx
        stats = RoundStats()
        reader = ChangeReader(ctx.source_engine, route.kind, ctx.settings.source.batch_size,
                              kinds=ctx.settings.kinds)
        start = SourceCursor.decode(ctx.store.cursor(route.name))
        made_elsewhere = ctx.settings.kinds[route.kind].made_on_receipt
        after = start.minus(ctx.settings.source.lookback_seconds)
        for n, batch in enumerate(reader.batches(after)):
            if ctx.stopping.is_set():
                break
            ids = {packet_id(r.kind, r.key, r.version): r for r in batch}
            # Packets prepared before are not built (signed) again. Of a kind only this
            # method makes, only the records at or before the stored cursor (the lookback
            # window) can have been: the cursor moves in the transaction that adds their
            # exchanges. Each id looked up is a read at a random place of the largest index.
            # A kind also made when a document is received (status replies) has every
            # record looked up. A race with another instance is settled by the
            # insert, which ignores a packet id it already has.
            known = ctx.store.existing_packet_ids(
                [pid for pid, r in ids.items() if made_elsewhere or r.cursor <= start])
            todo = [r for pid, r in ids.items() if pid not in known]
            built = ctx.build_many(todo, route.recipient or "")
            position = max(batch[-1].cursor, start).encode()
            added = ctx.store.add_exchanges(route.name, built, position)
            if len(added) < len(built):
                log.info("route %s: %d packets were already there (another instance made "
                         "them first): not added again", route.name, len(built) - len(added))
            for b in built:
                if b.packet_id not in added:
                    continue
                if b.error:
                    stats.rejected += 1
                    stats.errors.append(b.error)
                    log.warning("not sent: %s", ctx.mask(b.error))
                else:
                    stats.prepared += 1
            if max_batches is not None and n + 1 >= max_batches:
                break
        return stats

    # ---- deliver ---------------------------------------------------------------------

    def deliver(self, route: RouteSection, *, max_rounds: int | None = None) -> RoundStats:
        """Claim and send until nothing is due (or `max_rounds`)."""
        ctx = self.ctx
        stats = RoundStats()
        rounds = 0
        breaker = ctx.breaker(route.channel)
        while not ctx.stopping.is_set():
            allowed = breaker.allow()
            if allowed == 0:
                stats.breaker_open = True
                break  # the endpoint rests; exchanges wait, nothing is lost
            limit = route.batch_size if allowed < 0 else allowed
            claimed = ctx.store.claim(route.name, limit=limit,
                                      lease_seconds=ctx.settings.retry.lease_seconds)
            if not claimed:
                if allowed == 1:
                    breaker.success()  # nothing to probe with: try again normally
                break
            size = max(1, ctx.settings.lgsp.batch_size)
            chunks = [claimed[i:i + size] for i in range(0, len(claimed), size)]
            outcomes = [o for part in ctx.io_pool.map(
                functools.partial(self._send_chunk, route.channel), chunks) for o in part]
            policy = ctx.policy_for(route)
            lost = ctx.store.record_outcomes(outcomes, {c.id: c for c in claimed}, policy,
                                             status_poll=ctx.settings.lgsp.status_poll_seconds)
            if any(o.outcome != "transient" for o in outcomes):
                breaker.success()  # the endpoint answers (even a refusal is an answer)
            else:
                breaker.failure()
            by_id = {c.id: c for c in claimed}
            for o in outcomes:
                if o.exchange_id in lost:
                    continue  # another instance holds it now (logged by the store)
                if o.outcome in ("delivered", "duplicate", "sent"):
                    stats.delivered += 1
                    continue
                ex = by_id[o.exchange_id]
                decision = states.after_failure(permanent=o.permanent, attempts=ex.attempts,
                                                created_at=ex.created_at, now=utcnow(),
                                                policy=policy)
                if decision.state == states.State.FAILED:
                    stats.failed += 1
                    log.warning("exchange %s failed: %s", o.exchange_id, ctx.mask(o.error or ""))
                else:
                    stats.retrying += 1
            rounds += 1
            if max_rounds is not None and rounds >= max_rounds:
                break
            if stats.retrying and not stats.delivered:
                break  # the platform is struggling: let backoff work, come back later
        view = breaker.view()
        if view.state != "closed" or view.failures or \
                self._breaker_shown.get(route.channel, True):
            ctx.store.save_breaker(route.channel, view.state, view.failures, view.opened_for)
            self._breaker_shown[route.channel] = view.state != "closed" or view.failures > 0
            if view.state == "open":
                log.warning("circuit for %s is open: %d failed rounds in a row; next probe "
                            "in %.0fs", route.channel, view.failures,
                            max(0.0, ctx.settings.retry.breaker_open_seconds - view.opened_for))
        if route.channel == "lgsp":
            self.follow_up(route)  # axis documents are settled by the recipients' statuses
        return stats

    def follow_up(self, route: RouteSection) -> int:
        """Ask the platform about packets it had only queued; returns how many settled."""
        ctx = self.ctx
        due = ctx.store.sent_to_check(route.name, limit=route.batch_size)
        if not due:
            return 0

        def ask(item: SentExchange) -> DeliveryAnswer | None:
            try:
                return DeliveryAnswer(item.id, ctx.transport.query_status(item.packet_id).status)
            except AdapterError as exc:
                log.warning("delivery status of %s unavailable: %s", item.packet_id, exc)
                return None

        answers = [a for a in ctx.io_pool.map(ask, due) if a is not None]
        ctx.store.settle_sent(answers, status_poll=ctx.settings.lgsp.status_poll_seconds)
        return sum(1 for a in answers if a.status != "queued")

    def _send_chunk(self, channel: str, chunk: list[ClaimedExchange]) -> list[AttemptOutcome]:
        """One call for the chunk (or one per packet if the platform has no batch call);
        every exchange gets its own outcome and attempt record."""
        started = utcnow()
        t0 = time.perf_counter()
        ctx = self.ctx
        sender = ctx.settings.adapter.organisation_id
        items = [SubmitItem(ex.packet_id, ex.kind, sender, ex.payload) for ex in chunk]
        try:
            results: list = ctx.transport_for(channel).submit_many(items)
        except Exception as exc:  # the whole call failed: same outcome for every packet
            if not isinstance(exc, AdapterError):
                log.exception("unexpected error sending %d packets", len(chunk))
            results = [exc] * len(chunk)
        ms = int((time.perf_counter() - t0) * 1000)
        return [self._judge(ex, r, started, ms) for ex, r in zip(chunk, results, strict=True)]

    def _judge(self, ex: ClaimedExchange, result, started, ms: int) -> AttemptOutcome:
        def done(outcome: str, **kw) -> AttemptOutcome:
            return AttemptOutcome(ex.id, started, ms, outcome, **kw)

        if isinstance(result, PlatformReceipt):
            return self._judge_receipt(ex, result, done)
        if isinstance(result, RejectedByPeer):
            return done("rejected", error=str(result), permanent=True)
        if isinstance(result, TransportError):
            return done("transient", error=str(result))
        if isinstance(result, AdapterError):
            return done("error", error=str(result), permanent=result.permanent)
        # a bug must not lose the exchange: retry, and say what happened
        return done("transient", error=f"unexpected {result.__class__.__name__}: {result}")

    @staticmethod
    def _judge_receipt(ex: ClaimedExchange, r: PlatformReceipt, done) -> AttemptOutcome:
        ours = hashlib.sha256(ex.payload).hexdigest()
        kw = dict(platform_message_id=r.platform_message_id, receipt_status=r.status)
        if r.packet_id != ex.packet_id:
            return done("rejected", permanent=True, **kw,
                        error=f"receipt names packet {r.packet_id}, not ours")
        if r.sha256 and r.sha256.lower() != ours:
            return done("rejected", permanent=True, **kw,
                        error=f"platform holds other bytes for this packet id "
                              f"(sha256 {r.sha256[:12]}…, ours {ours[:12]}…)")
        outcome = {"accepted": "delivered", "duplicate": "duplicate", "queued": "sent"}.get(
            r.status, "sent")
        return done(outcome, **kw)
