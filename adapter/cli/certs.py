"""certs dev-pki | check."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from adapter.cli.common import print_table, settings_of


def register(sub) -> None:
    p = sub.add_parser("certs", help="development PKI and certificate checks")
    ps = p.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    d = ps.add_parser("dev-pki", help="create a development CA and certificates")
    d.add_argument("--out", help="directory (default: the configured certificate's directory)")
    d.add_argument("--force", action="store_true", help="replace existing files")
    d.set_defaults(handler=cmd_dev_pki)
    c = ps.add_parser("check", help="validity, chain, days to expiry, key/cert match")
    c.set_defaults(handler=cmd_check)


def cmd_dev_pki(args) -> int:
    from adapter.crypto.devpki import create_dev_pki

    if args.out:
        out = Path(args.out)
    else:
        s = settings_of(args)
        out = s.path(s.signing.cert).parent
    written = create_dev_pki(out, force=args.force)
    if not written:
        print(f"{out}: dev PKI already present (use --force to replace it)")
    for w in written:
        print(f"wrote {w}")
    return 0


def cmd_check(args) -> int:
    from adapter.crypto.keys import load_certificates, load_identity
    from adapter.crypto.trust import SIGNING_PURPOSES, UntrustedCertificate, verify_signer

    s = settings_of(args)
    ident = load_identity(s.path(s.signing.key), s.path(s.signing.cert),
                          [s.path(p) for p in s.signing.chain])
    anchors = [c for p in s.signing.trust_anchors for c in load_certificates(s.path(p))]
    now = dt.datetime.now(dt.UTC)
    rows, bad = [], False
    try:  # our key signs packets, edXML and checkpoints: it must pass every signing policy
        for purpose in SIGNING_PURPOSES:
            verify_signer(ident.cert, list(ident.chain), anchors, purpose)
        chain = "ok"
    except UntrustedCertificate as exc:
        chain, bad = f"NOT TRUSTED: {exc}", True
    days = ident.days_to_expiry(now)
    bad |= days < 0
    rows.append(["signing", ident.subject, f"{days:.0f}", "key matches", chain])
    for a in anchors:
        d = (a.not_valid_after_utc - now).total_seconds() / 86400
        bad |= d < 0
        rows.append(["trust anchor", a.subject.rfc4514_string(), f"{d:.0f}", "", ""])
    print_table(["role", "subject", "days", "key", "chain"], rows)
    return 1 if bad else 0
