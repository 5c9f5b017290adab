"""audit verify | checkpoint | export | archive | verify-bundle: the auditor's commands."""

from __future__ import annotations

from adapter.cli.common import print_field, print_json, settings_of
from adapter.i18n import _


def register(sub) -> None:
    p = sub.add_parser("audit", help=_("the evidence log: verify it, sign its tip"))
    ps = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    v = ps.add_parser("verify", help=_("recompute the chain, check packets and checkpoints"))
    v.add_argument("--json", action="store_true", help=_("machine-readable output"))
    v.add_argument("--from", dest="from_seq", type=int, metavar="SEQ",
                   help=_("report problems from this entry on (the chain is still "
                          "recomputed from its start, or from the last archive)"))
    v.add_argument("--to", dest="to_seq", type=int, metavar="SEQ",
                   help=_("report problems up to this entry"))
    v.add_argument("--expect-checkpoint", metavar="COUNT:TIP",
                   help=_("the newest checkpoint the last verify or export printed: "
                          "history shorter than that, or different, is reported"))
    v.add_argument("--signer-cert", action="append", default=[], metavar="PEM",
                   help=_("an earlier certificate of the adapter (after a key rotation) "
                          "whose checkpoints are genuine too; the configured signing cert "
                          "always is"))
    v.set_defaults(handler=cmd_verify)
    c = ps.add_parser("checkpoint", help=_("sign the chain's tip now"))
    c.set_defaults(handler=cmd_checkpoint)
    e = ps.add_parser("export", help=_("a bundle that standard tools can check"))
    e.add_argument("--out", required=True, metavar="FILE", help=_("the bundle to write (.zip)"))
    e.set_defaults(handler=cmd_export)
    a = ps.add_parser("archive", help=_("move old, signed entries into a bundle (retention)"))
    a.add_argument("--before", type=int, required=True, metavar="SEQ",
                   help=_("archive up to the last checkpoint at or before this entry"))
    a.add_argument("--out", required=True, metavar="FILE", help=_("the bundle to write (.zip)"))
    a.set_defaults(handler=cmd_archive)
    b = ps.add_parser("verify-bundle", help=_("check a bundle against the anchors you hold "
                                              "(runs the adapter's own checks, never the "
                                              "bundle's verify.sh)"))
    b.add_argument("file", help=_("the bundle (.zip)"))
    b.add_argument("--ca", required=True, metavar="PEM",
                   help=_("the trust anchors you hold (never a file from the bundle)"))
    b.add_argument("--tsa-ca", metavar="PEM",
                   help=_("the timestamp authority's CA: every checkpoint must carry a "
                          "token"))
    b.add_argument("--signer", metavar="PEM",
                   help=_("the adapter's checkpoint certificate: checkpoints signed by any "
                          "other certificate fail"))
    b.add_argument("--after", metavar="SEQ:HASH",
                   help=_("the tip printed for the previous bundle (omit for the first)"))
    b.set_defaults(handler=cmd_verify_bundle)


def _engine(s):
    from adapter.dbutil import make_engine
    return make_engine(s.url(s.adapter.state_db))


def cmd_verify(args) -> int:
    from adapter.audit.verify import Expectations, parse_expected, readonly_engine, verify_log
    from adapter.crypto.keys import load_certificates
    from adapter.errors import AdapterError

    s = settings_of(args)
    files = dict.fromkeys([*s.signing.trust_anchors,
                           *(a for peer in s.peers for a in peer.trust_anchors)])
    anchors = [c for p in files for c in load_certificates(s.path(p))]
    # our certificates, the next one of a rotation included; each checkpoint must be signed
    # by one of them that was valid (and fit to sign checkpoints) at the checkpoint's time
    signers = [c for p in [*s.signing.certificate_files(), *args.signer_cert]
               for c in load_certificates(s.path(p))]
    try:
        want = parse_expected(args.expect_checkpoint) if args.expect_checkpoint else None
        engine = readonly_engine(s.url(s.adapter.state_db))
    except (ValueError, FileNotFoundError) as exc:
        raise AdapterError(str(exc)) from None
    expect = Expectations(tuple(signers), want, s.path(s.audit.tsa_ca_file),
                          s.audit.tsa_grace_seconds if s.audit.tsa_url else None)
    rep = verify_log(engine, anchors, expect)
    engine.dispose()
    if args.from_seq is not None or args.to_seq is not None:
        lo, hi = args.from_seq or 0, args.to_seq if args.to_seq is not None else 10**18
        rep.problems = [p for p in rep.problems if p.seq is None or lo <= p.seq <= hi]
    latest = f"{rep.latest[0]}:{rep.latest[1]}" if rep.latest else None
    if args.json:
        print_json(dict(intact=rep.intact, entries=rep.entries, checkpoints=rep.checkpoints,
                        last_checkpoint=rep.last_checkpoint_seq, latest_checkpoint=latest,
                        unstamped=rep.unstamped, signatures_verified=rep.signatures,
                        problems=[dict(seq=p.seq, what=p.what, detail=p.detail)
                                  for p in rep.problems], notes=rep.notes))
        return 0 if rep.intact else 1
    # INTACT and BROKEN stay as they are in every language: scripts look for them
    print_field(_("entries"), rep.entries)
    print_field(_("checkpoints"), _("{count} (last at entry {seq})").format(
        count=rep.checkpoints, seq=rep.last_checkpoint_seq))
    print_field(_("signatures"), _("{count} packet signatures verified again").format(
        count=rep.signatures))
    if rep.intact:
        print_field(_("result"), _("INTACT: chain, packet bytes, head and checkpoints verify"))
    else:
        print_field(_("result"), _("BROKEN: {count} problems, first: {problem}").format(
            count=len(rep.problems), problem=rep.problems[0]))
        for p in rep.problems[1:10]:
            print_field(_("also"), str(p))
    for n in rep.notes:
        print_field(_("note"), n)
    if latest:  # one unwrapped line, to copy whole
        print(f"{_('keep:'):<17}--expect-checkpoint {latest}")
        print(f"{'':<17}" + _("(the newest checkpoint: pass it to the next audit verify)"))
    return 0 if rep.intact else 1


def cmd_checkpoint(args) -> int:
    from adapter.audit.checkpoint import make_checkpoint
    from adapter.engine.build import PacketBuilder

    s = settings_of(args)
    cp = make_checkpoint(_engine(s), PacketBuilder(s).identity)
    print(_("checkpoint signed at entry {seq}").format(seq=cp.seq) if cp
          else _("the tip is already signed"))
    return 0


def require_auditor() -> None:
    """Full packets (personal data) are for auditors, decided by adapter.roles from what the
    caller cannot change (never by the configuration or the environment)."""
    from adapter.roles import Roles

    Roles().require_auditor()


def cmd_export(args) -> int:
    from pathlib import Path

    from adapter.audit.bundle import export_bundle

    require_auditor()
    s = settings_of(args)
    counts = export_bundle(_engine(s), Path(args.out))
    print(_("{file}: {entries} entries, {packets} packets, {checkpoints} checkpoints (file "
            "mode 0600)").format(file=args.out, entries=counts.entries,
                                 packets=counts.packets, checkpoints=counts.checkpoints))
    print(_("tip: {tip} (the chain's last entry in the bundle)").format(tip=counts.tip))
    if counts.latest_checkpoint:
        print(_("keep: --expect-checkpoint {checkpoint} (for audit verify)").format(
            checkpoint=counts.latest_checkpoint))
    print(_("check it with: {command}").format(
        command="thads-adapter audit verify-bundle FILE --ca YOUR-CA.pem [--tsa-ca TSA-CA.pem] "
                "[--signer ADAPTER-CERT.pem] [--after PREVIOUS-TIP]"))
    return 0


def cmd_verify_bundle(args) -> int:
    from pathlib import Path

    from adapter.audit.bundle import verify_bundle

    v = verify_bundle(Path(args.file), ca=Path(args.ca),
                      tsa_ca=Path(args.tsa_ca) if args.tsa_ca else None,
                      signer=Path(args.signer) if args.signer else None, after=args.after)
    for line in v.output.splitlines()[:-1]:
        print(f"  {line}")
    print(f"{args.file}: {v.summary}")
    return 0 if v.intact else 1


def cmd_archive(args) -> int:
    from pathlib import Path

    from adapter.audit.bundle import archive
    from adapter.engine.build import PacketBuilder
    from adapter.errors import AdapterError

    require_auditor()
    s = settings_of(args)
    try:
        r = archive(_engine(s), Path(args.out), PacketBuilder(s).identity,
                    before_seq=args.before)
    except ValueError as exc:
        raise AdapterError(str(exc)) from None
    print(_("entries up to {seq} archived to {file} (sha256 {sha256}): {entries} entries, "
            "{packets} packets, {checkpoints} checkpoints; {freed} packet payloads freed; "
            "what remains verifies from there").format(
                seq=r["seq_to"], file=args.out, sha256=r["sha256"], entries=r["entries"],
                packets=r["packets"], checkpoints=r["checkpoints"], freed=r["packets_freed"]))
    print(_("tip: {tip} (pass it as --after when checking the next bundle)").format(
        tip=r["tip"]))
    return 0
