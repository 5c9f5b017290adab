"""exchanges list | show (operators). Personal ids are masked in everything printed."""

from __future__ import annotations

from sqlalchemy import or_, select

from adapter.cli.common import print_json, print_table, settings_of
from adapter.privacy import mask_ids


def register(sub) -> None:
    p = sub.add_parser("exchanges", help="find and inspect exchanges")
    ps = p.add_subparsers(dest="exchanges_command", required=True, metavar="ACTION")
    ls = ps.add_parser("list", help="find exchanges")
    ls.add_argument("--state")
    ls.add_argument("--kind")
    ls.add_argument("--route")
    ls.add_argument("--direction", choices=["in", "out"])
    ls.add_argument("--search", help="text in source key or packet id")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_list)
    sh = ps.add_parser("show", help="one exchange with its attempts")
    sh.add_argument("id", help="exchange number or packet id")
    sh.add_argument("--xml", action="store_true", help="print the packet (ids masked)")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(handler=cmd_show)


def _store(args):
    from adapter.dbutil import make_engine
    from adapter.store.repository import ExchangeStore

    s = settings_of(args)
    return ExchangeStore(make_engine(s.url(s.adapter.state_db)))


def cmd_list(args) -> int:
    from adapter.store.models import Exchange

    store = _store(args)
    q = select(Exchange).order_by(Exchange.id.desc()).limit(args.limit)
    if args.state:
        q = q.where(Exchange.state == args.state)
    if args.kind:
        q = q.where(Exchange.kind == args.kind)
    if args.route:
        q = q.where(Exchange.route == args.route)
    if args.direction:
        q = q.where(Exchange.direction == args.direction)
    if args.search:
        like = f"%{args.search}%"
        q = q.where(or_(Exchange.source_key.like(like), Exchange.packet_id.like(like)))
    from sqlalchemy.orm import Session
    with Session(store.engine) as s:
        rows = list(s.execute(q).scalars())
    if args.json:
        print_json([dict(id=e.id, packet_id=e.packet_id, kind=e.kind, route=e.route,
                         direction=e.direction, signature=e.signature, state=e.state,
                         source_key=e.source_key, attempts=e.attempts,
                         updated_at=e.updated_at, last_error=mask_ids(e.last_error or "") or None)
                    for e in rows])
        return 0
    print_table(["id", "dir", "kind", "state", "source", "tries", "updated (UTC)", "last error"],
                [[e.id, e.direction, e.kind, e.state, e.source_key, e.attempts,
                  e.updated_at.strftime("%m-%d %H:%M:%S"), mask_ids(e.last_error or "")]
                 for e in rows])
    return 0


def cmd_show(args) -> int:
    store = _store(args)
    e = store.get(args.id)
    if e is None:
        print(f"no exchange {args.id}")
        return 1
    attempts = store.attempts_of(e.id)
    reports = _reports(store, e.id)
    if args.json:
        print_json(dict(
            id=e.id, packet_id=e.packet_id, kind=e.kind, route=e.route, state=e.state,
            source_key=e.source_key, source_version=e.source_version, peer=e.peer,
            attempts=[dict(number=a.number, started_at=a.started_at, duration_ms=a.duration_ms,
                           outcome=a.outcome, error=mask_ids(a.error or "") or None)
                      for a in attempts],
            platform_message_id=e.platform_message_id, receipt_status=e.receipt_status,
            direction=e.direction, signature=e.signature, document_id=e.document_id,
            status_reports=[dict(organ_id=o, code=c, description=d, reported_at=t)
                            for o, c, d, t in reports],
            last_error=mask_ids(e.last_error or "") or None))
        return 0
    print(f"exchange {e.id}  packet {e.packet_id}")
    way = "received from" if e.direction == "in" else "sent to"
    print(f"  kind {e.kind}, route {e.route}, {way} {e.peer}")
    if e.document_id:
        print(f"  edXML document {e.document_id}")
    if e.signature:
        print(f"  signature as verified: {e.signature}")
    print(f"  source {e.source_key} version {e.source_version}")
    print(f"  state {e.state}; created {e.created_at:%Y-%m-%d %H:%M:%S}Z, "
          f"updated {e.updated_at:%Y-%m-%d %H:%M:%S}Z")
    if e.platform_message_id:
        print(f"  platform receipt {e.platform_message_id} ({e.receipt_status})")
    elif e.receipt_status:
        print(f"  answered: {e.receipt_status}")
    if e.last_error:
        print(f"  last error: {mask_ids(e.last_error)}")
    if attempts:
        print()
        print_table(["#", "started (UTC)", "ms", "outcome", "error"],
                    [[a.number, f"{a.started_at:%m-%d %H:%M:%S}", a.duration_ms, a.outcome,
                      mask_ids(a.error or "")] for a in attempts])
    if reports:
        print()
        print_table(["from", "status", "reported", "description"],
                    [[o, c, t, d] for o, c, d, t in reports])
    if args.xml:
        payload = store.payload_of(e.packet_id)
        print()
        print(mask_ids(payload.decode("utf-8")) if payload else "(no packet was built)")
    return 0


def _reports(store, exchange_id: int) -> list[tuple]:
    from adapter.store.models import StatusReport
    with store.engine.connect() as c:
        return [tuple(r) for r in c.execute(
            select(StatusReport.organ_id, StatusReport.code, StatusReport.description,
                   StatusReport.reported_at).where(StatusReport.exchange_id == exchange_id)
            .order_by(StatusReport.id))]
