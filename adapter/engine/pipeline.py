"""The inbound pipeline, written once for every channel:
list -> fetch -> store -> check (parse once, verify, read) -> import -> record -> acknowledge.

A received packet is stored durably before it is looked at, and acknowledged only after its
outcome is recorded, so a crash at any point neither loses a packet nor imports one twice:
the channel lists an unacknowledged packet again, the stored copy is processed again, and
the version rule of the import makes that harmless.

A round costs a fixed number of transactions, whatever its size: one on the state database
to store what was fetched, one on the enforcement database to import what passed the checks
(a SAVEPOINT per packet), one on the state database to record every outcome (with the status
reports and the answers to send back), and one to note what the channel took as our answer.

What differs between LGSP judgments and axis documents is a `Channel`: its packet ids, its
checks (verification returns the verified tree; business data is read only from it), its
import and the answer it gives the transport. Any exception while handling one packet
quarantines that packet with its reason (the traceback goes to the log); the round goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from adapter.config import RouteSection
from adapter.engine.context import Context
from adapter.engine.failures import reason_of, traceback_of
from adapter.errors import AdapterError, TransportError
from adapter.store.base import utcnow
from adapter.store.recipients import ReportedStatus
from adapter.store.records import (
    Acknowledgement,
    InboundOutcome,
    InboundState,
    NewExchange,
    ReceivedPacket,
    StoredPacket,
)
from adapter.transports.base import InboundTransport, PendingPacket, acknowledge_each, fetch_each


class Quarantine(AdapterError):
    """This packet must not be imported; the message says why."""


@dataclass(frozen=True)
class Accepted:
    """A packet that passed every check: what the channel imports (`item`)."""

    item: Any
    signature: str | None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refused:
    """A packet that failed a check, with the reason; `item` is what the channel still
    needs to answer it (an axis document's fields for its 02), or None."""

    reason: str
    signature: str | None = None
    flags: tuple[str, ...] = ()
    item: Any = None


Checked = Accepted | Refused


@dataclass(frozen=True)
class Concluded:
    """How one packet ends: its outcome, and what goes with it into the same transaction."""

    outcome: InboundOutcome
    report: ReportedStatus | None = None
    replies: tuple[NewExchange, ...] = ()


class Channel(Protocol):
    """What varies between inbound channels; the pipeline does the rest."""

    #: for log lines ("judgments", "axis")
    name: str

    def packet_id(self, item: PendingPacket) -> str:
        """Our packet id of a listed item (the exchange's, deterministic)."""
        ...

    def require(self) -> None:
        """Raise when the import cannot work at all (a missing table): no packet's fault,
        so nothing is fetched and nothing quarantined."""
        ...

    def check(self, p: StoredPacket) -> Checked:
        """Parse once (under the configured size limit), verify, read: everything before
        the import."""
        ...

    def import_many(self, accepted: Sequence[tuple[StoredPacket, Accepted]]
                    ) -> Sequence[Any]:
        """Import in one transaction (a SAVEPOINT each); per item its result or the
        exception that refused it alone."""
        ...

    def conclude(self, p: StoredPacket, checked: Checked, imported: Any) -> Concluded:
        ...

    def answer(self, state: InboundState) -> tuple[str, str | None]:
        """What the transport is told about a settled packet: (outcome, reason)."""
        ...

    def replies_route(self) -> str | None:
        """The outbound route the answers (status packets) go to, if any."""
        ...


@dataclass
class RoundStats:
    received: int = 0
    imported: int = 0
    quarantined: int = 0
    acknowledged: int = 0
    #: of `imported`: status reports recorded (axis)
    statuses: int = 0
    outcomes: list[InboundOutcome] = field(default_factory=list)


class InboundPipeline:
    def __init__(self, ctx: Context, transport: InboundTransport, channel: Channel,
                 log: logging.Logger) -> None:
        self.ctx, self.transport, self.channel, self.log = ctx, transport, channel, log

    def pull(self, route: RouteSection) -> RoundStats:
        ctx, ch, stats = self.ctx, self.channel, RoundStats()
        ch.require()
        limit = ctx.settings.inbound.max_packet_bytes
        work = ctx.store.inbound_pending(route.name, route.batch_size)
        listed = [] if ctx.stopping.is_set() else self.transport.list_pending(
            ctx.settings.adapter.organisation_id, route.batch_size)[: route.batch_size]
        ours = {i.packet_id: ch.packet_id(i) for i in listed}
        known = ctx.store.inbound_states(list(ours.values()))
        new = [i for i in listed if ours[i.packet_id] not in known]
        refused: dict[str, str] = {}
        for i in new:
            if i.size > limit:
                refused[ours[i.packet_id]] = (f"packet {i.packet_id}: {i.size} bytes exceed "
                                              f"the limit of {limit}")
        got = {} if ctx.stopping.is_set() else fetch_each(
            self.transport, [i.packet_id for i in new if ours[i.packet_id] not in refused])
        to_store = [ReceivedPacket(ours[i.packet_id], i.kind, i.sender, payload)
                    for i in new
                    if (payload := self._payload(i, ours[i.packet_id], got, refused, limit))
                    is not None]
        ids = ctx.store.add_inbound_many(route.name, to_store)  # durable before anything
        stats.received = len(to_store)
        results = [Concluded(InboundOutcome(ids[pid], False, reason))
                   for pid, reason in refused.items() if pid in ids]
        work += [StoredPacket(ids[p.packet_id], p.packet_id, p.kind, p.peer, p.payload)
                 for p in to_store if p.packet_id not in refused]
        results += self._process(work)
        final = ctx.store.finish_round(
            [r.outcome for r in results],
            reports={r.outcome.exchange_id: r.report for r in results if r.report},
            replies=[x for r in results for x in r.replies], replies_route=ch.replies_route())
        reported = {r.outcome.exchange_id for r in results if r.report}
        for o in final:
            if o.imported:
                stats.imported += 1
                stats.statuses += o.exchange_id in reported
            else:
                stats.quarantined += 1
                self.log.warning("quarantined: %s", ctx.mask(o.error or ""))
        stats.outcomes = final
        stats.acknowledged = self._answer(listed, ours)
        return stats

    def _payload(self, item: PendingPacket, pid: str, got: dict[str, Any],
                 refused: dict[str, str], limit: int) -> bytes | None:
        """The bytes to store for a new item; b"" (stored empty and quarantined) for one
        refused unread; None to leave it listed for the next round."""
        if pid in refused:
            return b""
        f = got.get(item.packet_id)
        if f is None:
            return None
        name = f"{self.channel.name} item {item.packet_id} from {item.sender}"
        if isinstance(f, TransportError):  # the channel is away: the item stays listed
            self.log.warning("%s: fetch failed (%s); next round", name, f)
            return None
        if isinstance(f, Exception):  # an answer that fails this item only
            refused[pid] = f"{name}: unreadable answer to fetch: {reason_of(f)}"
            return b""
        if len(f.payload) > limit:
            refused[pid] = f"{name}: {len(f.payload)} bytes exceed the limit of {limit}"
            return b""
        return bytes(f.payload)

    def _process(self, work: Sequence[StoredPacket]) -> list[Concluded]:
        """Check every packet, import the good ones in one transaction, conclude each."""
        started, t0 = utcnow(), time.perf_counter()
        checked = [(p, self._check_safely(p)) for p in work]
        ready = [(p, c) for p, c in checked if isinstance(c, Accepted)]
        imported = dict(zip([p.exchange_id for p, _ in ready],
                            self.channel.import_many(ready), strict=True))
        ms = int((time.perf_counter() - t0) * 1000 / max(1, len(work)))
        out = []
        for p, c in checked:
            try:
                done = self.channel.conclude(p, c, imported.get(p.exchange_id))
            except Exception as exc:  # one odd packet must not stop the round
                self.log.error("packet %s: unexpected error\n%s", p.packet_id,
                               traceback_of(exc))
                done = Concluded(InboundOutcome(p.exchange_id, False, self._unexpected(p, exc),
                                                c.signature))
            o = done.outcome
            for flag in o.flags:
                self.log.info("packet %s: %s", p.packet_id, flag)
            out.append(Concluded(InboundOutcome(
                o.exchange_id, o.imported, o.error, o.signature, o.source_key,
                o.source_version, started, ms, o.document_id, o.flags),
                done.report, done.replies))
        return out

    def _check_safely(self, p: StoredPacket) -> Checked:
        try:
            return self.channel.check(p)
        except Exception as exc:  # one odd packet must not stop the round
            self.log.error("packet %s: unexpected error while checking it\n%s", p.packet_id,
                           traceback_of(exc))
            return Refused(self._unexpected(p, exc))

    def _unexpected(self, p: StoredPacket, exc: Exception) -> str:
        return (f"{self.channel.name} packet {p.packet_id} from {p.peer}: unexpected error: "
                f"{reason_of(exc)}")

    def _answer(self, listed: Sequence[PendingPacket], ours: dict[str, str]) -> int:
        """Answer for every listed packet we have settled: new now, or earlier without
        our answer arriving."""
        if not listed:
            return 0
        states = self.ctx.store.inbound_states(list(ours.values()))
        answers = [(i.packet_id, *self.channel.answer(st), st.exchange_id)
                   for i in listed if (st := states.get(ours[i.packet_id])) is not None
                   and st.state in ("delivered", "failed")]
        if not answers:
            return 0
        try:
            taken = acknowledge_each(self.transport, [a[:3] for a in answers])
        except AdapterError as exc:  # unanswered: listed again, answered next round
            self.log.warning("%s: acknowledging failed (%s); next round", self.channel.name,
                             exc)
            return 0
        self.ctx.store.mark_acknowledged_many([Acknowledgement(a[3], a[1]) for a in answers
                                               if a[0] in taken])
        return len(taken)
