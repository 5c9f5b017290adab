"""edxml inspect FILE: what an edXML packet is, whether it is valid, what its signature is."""

from __future__ import annotations

from adapter.cli.common import print_field, print_json
from adapter.cli.packets import ANCHOR_HELP, offline_anchors, read_input
from adapter.errors import PacketError
from adapter.i18n import _, pgettext
from adapter.privacy import mask_ids


def register(sub) -> None:
    p = sub.add_parser("edxml", help=_("edXML (QCVN 102:2016) tools"))
    ps = p.add_subparsers(dest="edxml_command", required=True, metavar="ACTION")
    i = ps.add_parser("inspect", help=_("summary, validation and signature outcome"))
    i.add_argument("file", help=_("the edXML document or status packet (- for standard "
                                  "input)"))
    i.add_argument("--tolerant", action="store_true",
                   help=_("accept malformed organisation ids (with a warning)"))
    i.add_argument("--profile", choices=["default", "legacy"], default="default",
                   help=_("signature algorithms accepted (legacy adds RSA-SHA1)"))
    i.add_argument("--ca", "--trust", dest="ca", action="append", metavar="PEM",
                   help=_(ANCHOR_HELP))
    i.add_argument("--policy", choices=["reject", "flag"], default="reject",
                   help=_("what a signature that is not valid leads to (default: reject)"))
    i.add_argument("--json", action="store_true", help=_("machine-readable output"))
    i.set_defaults(handler=cmd_inspect)


def cmd_inspect(args) -> int:
    from adapter.edxml import read_edxml, verify_edxml
    from adapter.edxml.model import StatusPacket
    from adapter.xml.safe import parse_untrusted

    data = read_input(args.file)
    anchors, no_anchor = offline_anchors(args, translate=not args.json)  # JSON: English
    try:
        root = parse_untrusted(data, name=args.file)
        verified = verify_edxml(root, anchors, profile=args.profile)
        if no_anchor and verified.outcome.outcome == "untrusted":
            verified.outcome.detail = no_anchor
        parsed = read_edxml(verified, name=args.file, tolerant_ids=args.tolerant)
    except PacketError as exc:
        if args.json:
            print_json({"file": args.file, "accepted": False, "reason": str(exc)})
        else:
            print_field(_("file"), args.file)
            print_field(_("outcome"), _("REJECTED: {error}").format(error=exc))
        return 1
    p, s = parsed.packet, parsed.signature
    accepted, verdict = parsed.verdict(args.policy)
    summary = {"file": args.file, "accepted": accepted, "verdict": verdict, "kind": parsed.kind,
               "from": p.sender.organ_id, "signature": s.outcome,
               "signature_detail": s.detail, "signature_algorithm": s.algorithm,
               "signature_in_dsig_namespace": s.in_dsig_namespace, "signer": s.signer,
               "warnings": parsed.warnings}
    if isinstance(p, StatusPacket):  # parsed.kind == "status"
        summary.update(status=p.status_code, meaning=p.meaning,
                       document=p.response_for.document_id, timestamp=p.timestamp)
    else:
        summary.update(document=p.document_id, code=f"{p.code_number}/{p.code_notation}",
                       to=[t.organ_id for t in p.recipients], subject=p.subject,
                       business=p.business.doc_type if p.business else None,
                       attachments=[{"name": a.name, "declared": a.declared_type,
                                     "detected": a.detected_type, "bytes": len(a.data)}
                                    for a in p.attachments])
    if args.json:
        print_json(summary)
        return 0 if accepted else 1
    print_field(_("file"), args.file)
    print_field(_("structure"), _("valid {kind} (QCVN 102:2016 schema and rules)").format(
        kind=parsed.kind))
    print_field(_("from"), f"{p.sender.organ_id} {p.sender.name}")
    if isinstance(p, StatusPacket):
        print_field(_("status"), f"{p.status_code} ({p.meaning})")
        print_field(_("document"), p.response_for.document_id)
        print_field(_("time"), p.timestamp)
    else:
        print_field(_("document"), p.document_id)
        print_field(_("to"), ", ".join(t.organ_id for t in p.recipients))
        print_field(pgettext("edXML document", "subject"), mask_ids(p.subject))
        for a in p.attachments:
            print_field(_("attachment"), _("{name}: {size} bytes, declared {declared}, "
                                           "content {detected}").format(
                name=a.name, size=len(a.data), declared=a.declared_type or "-",
                detected=a.detected_type))
    where = "" if s.in_dsig_namespace else " " + _("(Signature outside the XML-DSig namespace)")
    print_field(_("signature"), f"{s.outcome}{where}{': ' + s.detail if s.detail else ''}")
    if s.signer:
        print_field(_("signer"), s.signer)
    for w in parsed.warnings:
        print_field(_("warning"), w)
    print_field(_("outcome"), verdict)
    return 0 if accepted else 1
