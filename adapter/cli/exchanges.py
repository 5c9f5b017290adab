"""exchanges list | show (operators). Personal ids are masked in everything printed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import os
import sys

from adapter.cli.common import print_json, print_table, settings_of
from adapter.errors import AdapterError
from adapter.i18n import _
from adapter.kinds import KINDS
from adapter.privacy import mask_ids
from adapter.store.records import ExchangeFilter
from adapter.store.states import State


def register(sub) -> None:
    p = sub.add_parser("exchanges", help=_("find and inspect exchanges"))
    ps = p.add_subparsers(dest="exchanges_command", required=True, metavar="ACTION")
    ls = ps.add_parser("list", help=_("find exchanges"))
    add_filters(ls)
    ls.add_argument("--limit", type=int, default=50,
                    help=_("at most this many, newest first (default 50)"))
    ls.add_argument("--json", action="store_true", help=_("machine-readable output"))
    ls.set_defaults(handler=cmd_list)
    sh = ps.add_parser("show", help=_("one exchange with its attempts"))
    sh.add_argument("id", help=_("exchange number or packet id"))
    sh.add_argument("--xml", action="store_true", help=_("print the packet (ids masked)"))
    sh.add_argument("--json", action="store_true", help=_("machine-readable output"))
    sh.set_defaults(handler=cmd_show)
    ca = ps.add_parser("cancel", help=_("give up on exchanges, with a reason (recorded)"))
    ca.add_argument("ids", nargs="+", type=int, metavar="ID")
    ca.add_argument("--reason", required=True, help=_("why (recorded with your name)"))
    ca.set_defaults(handler=cmd_cancel)

    rp = sub.add_parser("replay", help=_("send failed exchanges again, with the same packet "
                                         "id"))
    rp.add_argument("ids", nargs="*", type=int, metavar="ID")
    add_filters(rp)
    rp.add_argument("--dry-run", action="store_true", help=_("list what would be replayed"))
    rp.add_argument("--yes", action="store_true", help=_("no confirmation for bulk replay"))
    rp.add_argument("--reason", help=_("recorded with the replay"))
    rp.set_defaults(handler=cmd_replay)


def add_filters(p) -> None:
    p.add_argument("--state", choices=[s.value for s in State])
    p.add_argument("--kind", choices=KINDS.names())
    p.add_argument("--route")
    p.add_argument("--direction", choices=["in", "out"])
    p.add_argument("--since", help=_("updated at or after (ISO date or date-time, UTC)"))
    p.add_argument("--until", help=_("updated before (ISO date or date-time, UTC)"))
    p.add_argument("--search", help=_("text in source key or packet id"))


def _when(text: str, flag: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        raise AdapterError(_("{flag} {text} is not an ISO date or date-time").format(
            flag=flag, text=repr(text))) from None


def filtered(args, ids: list[int] | None = None) -> ExchangeFilter:
    """The command's filters (or the exchanges it names)."""
    if ids:
        return ExchangeFilter(ids=tuple(ids))
    return ExchangeFilter(
        state=args.state, kind=args.kind, route=args.route,
        direction=getattr(args, "direction", None),
        since=_when(args.since, "--since") if args.since else None,
        until=_when(args.until, "--until") if args.until else None, search=args.search)


def _store(args):
    from adapter.dbutil import make_engine
    from adapter.store.repository import ExchangeStore

    s = settings_of(args)
    return ExchangeStore(make_engine(s.url(s.adapter.state_db)))


def cmd_list(args) -> int:
    rows = _store(args).find(filtered(args), limit=args.limit)
    if args.json:
        print_json([dict(id=e.id, packet_id=e.packet_id, kind=e.kind, route=e.route,
                         direction=e.direction, signature=e.signature, state=e.state,
                         source_key=e.source_key, attempts=e.attempts,
                         updated_at=e.updated_at, last_error=mask_ids(e.last_error or "") or None)
                    for e in rows])
        return 0
    # headers are translated; the values (direction, kind, state) are names scripts use
    print_table([_("id"), _("dir"), _("kind"), _("state"), _("source"), _("tries"),
                 _("updated (UTC)"), _("last error")],
                [[e.id, e.direction, e.kind, e.state, e.source_key, e.attempts,
                  e.updated_at.strftime("%m-%d %H:%M:%S"), mask_ids(e.last_error or "")]
                 for e in rows])
    return 0


def cmd_show(args) -> int:
    store = _store(args)
    e = store.get(args.id)
    if e is None:
        print(_("no exchange {id}").format(id=args.id))
        return 1
    attempts = store.attempts_of(e.id)
    recipients = store.recipients_of(e.id)
    if args.json:
        print_json(dict(
            id=e.id, packet_id=e.packet_id, kind=e.kind, route=e.route, state=e.state,
            source_key=e.source_key, source_version=e.source_version, peer=e.peer,
            attempts=[dict(number=a.number, started_at=a.started_at, duration_ms=a.duration_ms,
                           outcome=a.outcome, error=mask_ids(a.error or "") or None)
                      for a in attempts],
            platform_message_id=e.platform_message_id, receipt_status=e.receipt_status,
            direction=e.direction, signature=e.signature, document_id=e.document_id,
            recipients=[dict(organ_id=r.organ_id, settled=r.settled, statuses=[
                dict(code=x.code, description=x.description, reported_at=x.reported_at,
                     received_at=x.received_at) for x in r.statuses]) for r in recipients],
            last_error=mask_ids(e.last_error or "") or None))
        return 0
    print(_("exchange {id}  packet {packet}").format(id=e.id, packet=e.packet_id))
    to = ", ".join(r.organ_id for r in recipients) if recipients and e.direction == "out" \
        else e.peer
    print("  " + (_("kind {kind}, route {route}, received from {peer}") if e.direction == "in"
                  else _("kind {kind}, route {route}, sent to {peer}")).format(
        kind=e.kind, route=e.route, peer=to))
    if e.document_id:
        print("  " + _("edXML document {id}").format(id=e.document_id))
    if e.signature:
        print("  " + _("signature as verified: {outcome}").format(outcome=e.signature))
    print("  " + _("source {key} version {version}").format(key=e.source_key,
                                                          version=e.source_version))
    print("  " + _("state {state}; created {created}Z, updated {updated}Z").format(
        state=e.state, created=f"{e.created_at:%Y-%m-%d %H:%M:%S}",
        updated=f"{e.updated_at:%Y-%m-%d %H:%M:%S}"))
    if e.platform_message_id:
        print("  " + _("platform receipt {id} ({status})").format(
            id=e.platform_message_id, status=e.receipt_status))
    elif e.receipt_status:
        print("  " + _("answered: {status}").format(status=e.receipt_status))
    if e.last_error:
        print("  " + _("last error: {error}").format(error=mask_ids(e.last_error)))
    if attempts:
        print()
        print_table(["#", _("started (UTC)"), "ms", _("outcome"), _("error")],
                    [[a.number, f"{a.started_at:%m-%d %H:%M:%S}", a.duration_ms, a.outcome,
                      mask_ids(a.error or "")] for a in attempts])
    actions = store.actions_of(e.id)
    if actions:
        print()
        print_table([_("operator action (UTC)"), _("by"), _("action"), _("reason")],
                    [[f"{a.at:%Y-%m-%d %H:%M:%S}", a.actor, a.action, a.reason or ""]
                     for a in actions])
    if recipients:
        print()
        print_table([_("recipient"), _("status"), _("reported"), _("description")],
                    [[r.organ_id, x.code, x.reported_at or "", x.description or ""]
                     for r in recipients for x in r.statuses]
                    + [[r.organ_id, "--", "", _("no answer yet")]
                       for r in recipients if not r.statuses])
    if args.xml:
        payload = store.payload_of(e.packet_id)
        print()
        print(mask_ids(payload.decode("utf-8")) if payload else _("(no packet was built)"))
    return 0


def actor() -> str:
    """The operator, as the OS knows them (through sudo too)."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _confirm(question: str, args) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise AdapterError(_("bulk changes need --yes when not run from a terminal"))
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_replay(args) -> int:
    store = _store(args)
    has_filter = any(getattr(args, f) for f in ("state", "kind", "route", "direction",
                                                  "since", "until", "search"))
    if not args.ids and not has_filter:
        raise AdapterError(_("name exchanges (ID…) or select them (--state failed …)"))
    selection = filtered(args, args.ids)
    # counted, not loaded: a selection of millions is streamed in chunks below
    matching, failed = store.match_counts(selection)
    if not matching:
        print(_("nothing matches"))
        return 1
    print(_("{count} exchanges match, {failed} of them failed (only those are "
            "replayed)").format(count=matching, failed=failed))
    refusals: list[tuple[int, str]] = []
    if args.ids:
        named = {e.id: e for e in store.find(selection)}
        refusals = [(i, _("no such exchange")) if i not in named else
                    (i, _("is {state}, only failed exchanges are replayed").format(
                        state=named[i].state))
                    for i in args.ids if i not in named or named[i].state != "failed"]
    for i, why in refusals:
        print("  " + _("{id}: not replayed: {reason}").format(id=i, reason=why))
    failed_only = dataclasses.replace(selection, state="failed")
    preview = store.find(failed_only, limit=20) if failed else []
    print_table([_("id"), _("kind"), _("source"), _("tries"), _("last error")],
                [[e.id, e.kind, e.source_key, e.attempts, mask_ids(e.last_error or "")]
                 for e in preview])
    if failed > 20:
        print(_("… and {count} more").format(count=failed - 20))
    if args.dry_run or not failed:
        return 1 if refusals else 0
    bulk = failed > 1 or not args.ids
    if bulk and not _confirm(_("Replay {count} exchanges?").format(count=failed), args):
        print(_("nothing replayed"))
        return 1
    result = store.replay_matching(selection, actor=actor(), reason=args.reason,
                                   progress=lambda n: _progress(n, failed))
    print(_("replayed {count} exchanges (recorded as {actor}); the service sends them with "
            "their packet ids, so the receiver keeps one copy").format(
        count=len(result.done), actor=actor()))
    for x in result.refused:
        print("  " + _("{id}: not replayed: {reason}").format(id=x.exchange_id,
                                                             reason=x.reason))
    return 0 if not (result.refused or refusals) else 1


def _progress(n: int, total: int, width: int = 40) -> None:
    filled = int(width * n / total) if total else width
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {n}/{total}")
    if n >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def cmd_cancel(args) -> int:
    store = _store(args)
    r = store.cancel(args.ids, actor=actor(), reason=args.reason)
    for i in r.done:
        print(_("{id}: cancelled ({reason})").format(id=i, reason=args.reason))
    for x in r.refused:
        print(_("{id}: not cancelled: {reason}").format(id=x.exchange_id, reason=x.reason))
    return 0 if not r.refused else 1
