"""audit verify | checkpoint: the auditor's commands."""

from __future__ import annotations

from adapter.cli.common import print_field, print_json, settings_of


def register(sub) -> None:
    p = sub.add_parser("audit", help="the evidence log: verify it, sign its tip")
    ps = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    v = ps.add_parser("verify", help="recompute the chain, check packets and checkpoints")
    v.add_argument("--json", action="store_true")
    v.add_argument("--from", dest="from_seq", type=int, metavar="SEQ",
                   help="report problems from this entry on (the chain is still recomputed "
                        "from its start, or from the last archive)")
    v.add_argument("--to", dest="to_seq", type=int, metavar="SEQ")
    v.set_defaults(handler=cmd_verify)
    c = ps.add_parser("checkpoint", help="sign the chain's tip now")
    c.set_defaults(handler=cmd_checkpoint)
    e = ps.add_parser("export", help="a bundle that standard tools can check")
    e.add_argument("--out", required=True)
    e.set_defaults(handler=cmd_export)
    a = ps.add_parser("archive", help="move old, signed entries into a bundle (retention)")
    a.add_argument("--before", type=int, required=True, metavar="SEQ",
                   help="archive up to the last checkpoint at or before this entry")
    a.add_argument("--out", required=True)
    a.set_defaults(handler=cmd_archive)
    b = ps.add_parser("verify-bundle", help="check a bundle with nothing but the bundle")
    b.add_argument("file")
    b.set_defaults(handler=cmd_verify_bundle)


def _engine(s):
    from adapter.dbutil import make_engine
    return make_engine(s.url(s.adapter.state_db))


def cmd_verify(args) -> int:
    from adapter.audit.verify import verify_log
    from adapter.crypto.keys import load_certificates

    s = settings_of(args)
    files = dict.fromkeys([*s.signing.trust_anchors,
                           *(a for peer in s.peers for a in peer.trust_anchors)])
    anchors = [c for p in files for c in load_certificates(s.path(p))]
    rep = verify_log(_engine(s), anchors, tsa_ca=s.path(s.audit.tsa_ca_file))
    if args.from_seq is not None or args.to_seq is not None:
        lo, hi = args.from_seq or 0, args.to_seq if args.to_seq is not None else 10**18
        rep.problems = [p for p in rep.problems if p.seq is None or lo <= p.seq <= hi]
    if args.json:
        print_json(dict(intact=rep.intact, entries=rep.entries, checkpoints=rep.checkpoints,
                        last_checkpoint=rep.last_checkpoint_seq, unstamped=rep.unstamped,
                        signatures_verified=rep.signatures,
                        problems=[dict(seq=p.seq, what=p.what, detail=p.detail)
                                  for p in rep.problems], notes=rep.notes))
        return 0 if rep.intact else 1
    print_field("entries", rep.entries)
    print_field("checkpoints", f"{rep.checkpoints} (last at entry {rep.last_checkpoint_seq})")
    print_field("signatures", f"{rep.signatures} packet signatures verified again")
    if rep.intact:
        print_field("result", "INTACT: chain, packet bytes, head and checkpoints verify")
    else:
        print_field("result", f"BROKEN: {len(rep.problems)} problems, first: {rep.problems[0]}")
        for p in rep.problems[1:10]:
            print_field("also", str(p))
    for n in rep.notes:
        print_field("note", n)
    return 0 if rep.intact else 1


def cmd_checkpoint(args) -> int:
    from adapter.audit.checkpoint import make_checkpoint
    from adapter.engine.build import PacketBuilder

    s = settings_of(args)
    cp = make_checkpoint(_engine(s), PacketBuilder(s).identity)
    print(f"checkpoint signed at entry {cp.seq}" if cp else "the tip is already signed")
    return 0


def require_auditor(s) -> None:
    """Full packets (personal data) are for the auditor role: members of the configured OS
    group. The state database's file permissions (or a read-only PostgreSQL role) keep
    everyone else out of the raw tables."""
    import grp
    import os

    from adapter.errors import AdapterError

    group = s.audit.auditor_group
    if not group or os.geteuid() == 0:
        return
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise AdapterError(f"auditor group {group!r} does not exist") from None
    if gid not in os.getgroups() and os.getgid() != gid:
        raise AdapterError(f"full packets are for auditors: members of group {group!r}")


def cmd_export(args) -> int:
    from pathlib import Path

    from adapter.audit.bundle import export_bundle

    s = settings_of(args)
    require_auditor(s)
    counts = export_bundle(_engine(s), Path(args.out),
                           [s.path(p) for p in s.signing.trust_anchors])
    print(f"{args.out}: {counts['entries']} entries, {counts['packets']} packets, "
          f"{counts['checkpoints']} checkpoints; check it with: unzip it, then sh verify.sh")
    return 0


def cmd_verify_bundle(args) -> int:
    from pathlib import Path

    from adapter.audit.bundle import verify_bundle

    ok, last = verify_bundle(Path(args.file))
    print(f"{args.file}: {last}")
    return 0 if ok else 1


def cmd_archive(args) -> int:
    from pathlib import Path

    from adapter.audit.bundle import archive
    from adapter.errors import AdapterError

    s = settings_of(args)
    require_auditor(s)
    try:
        r = archive(_engine(s), Path(args.out), [s.path(p) for p in s.signing.trust_anchors],
                    before_seq=args.before)
    except ValueError as exc:
        raise AdapterError(str(exc)) from None
    print(f"entries up to {r['seq_to']} archived to {args.out} (sha256 {r['sha256']}): "
          f"{r['entries']} entries, {r['packets']} packets, {r['checkpoints']} checkpoints; "
          "what remains verifies from there")
    return 0
