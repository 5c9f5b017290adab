"""certs dev-pki [revoke NAME] | check."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from adapter.cli.common import print_field, print_table, settings_of
from adapter.i18n import _, pgettext


def register(sub) -> None:
    from adapter.crypto.devpki import REASONS

    p = sub.add_parser("certs", help=_("development PKI and certificate checks"))
    ps = p.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    d = ps.add_parser("dev-pki", help=_("create a development CA and certificates"))
    d.add_argument("--out", help=_("directory (default: the configured certificate's "
                                   "directory)"))
    d.add_argument("--force", action="store_true", help=_("replace existing files"))
    d.add_argument("--crl-url", help=_("CRL distribution point written into the certificates "
                                       "issued now (e.g. {url}); default none").format(
                                           url="http://127.0.0.1:8741/crl/dev-ca.crl"))
    d.set_defaults(handler=cmd_dev_pki)
    ds = d.add_subparsers(dest="dev_pki_action", metavar="ACTION")
    r = ds.add_parser("revoke", help=_("revoke a dev certificate and publish the dev CA's "
                                       "CRL"))
    r.add_argument("name", metavar="NAME", help=_("certificate file stem (court, adapter, "
                                                  "...)"))
    r.add_argument("--reason", default="unspecified", choices=REASONS, metavar="REASON",
                   help=_("RFC 5280 reason: {reasons} (default unspecified)").format(
                       reasons=", ".join(REASONS)))
    r.add_argument("--out", dest="revoke_out", help=_("the dev PKI directory"))
    r.set_defaults(handler=cmd_dev_pki_revoke)
    c = ps.add_parser("check", help=_("validity, chain, revocation, days to expiry, key/cert "
                                      "match"))
    c.set_defaults(handler=cmd_check)


def _pki_dir(args, explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    s = settings_of(args)
    return s.path(s.signing.cert).parent


def cmd_dev_pki(args) -> int:
    from adapter.crypto.devpki import create_dev_pki

    out = _pki_dir(args, args.out)
    written = create_dev_pki(out, force=args.force, crl_url=args.crl_url)
    if not written:
        print(_("{dir}: dev PKI already present (use --force to replace it)").format(dir=out))
    for w in written:
        print(_("wrote {file}").format(file=w))
    return 0


def cmd_dev_pki_revoke(args) -> int:
    from adapter.crypto.devpki import CRL_NAME, revoke

    out = _pki_dir(args, args.revoke_out or args.out)
    try:
        r = revoke(out, args.name, reason=args.reason)
    except ValueError as exc:
        print(f"certs dev-pki revoke: {exc}")
        return 2
    print(_("revoked {name} ({subject}, serial {serial}) on {at} ({reason})").format(
        name=r.name, subject=r.subject, serial=f"{r.serial:#x}",
        at=r.revoked_at.strftime("%Y-%m-%dT%H:%M:%SZ"), reason=r.reason))
    print(_("published {crl} and {pem} (the simulator serves it at {path})").format(
        crl=out / CRL_NAME, pem=out / (CRL_NAME + ".pem"), path=f"/crl/{CRL_NAME}"))
    return 0


def cmd_check(args) -> int:
    from adapter.crypto import revocation
    from adapter.crypto.expiry import certificate_expiry
    from adapter.crypto.keys import configured_identity, load_certificates
    from adapter.crypto.trust import SIGNING_PURPOSES, UntrustedCertificate, verify_signer

    s = settings_of(args)
    ident = configured_identity(s)  # a file key or a token key, as configured
    anchors = [c for p in s.signing.trust_anchors for c in load_certificates(s.path(p))]
    checker = revocation.checker_from_settings(s)
    now = dt.datetime.now(dt.UTC)
    bad = False
    try:  # our key signs packets, edXML and checkpoints: it must pass every signing policy
        for purpose in SIGNING_PURPOSES:
            verify_signer(ident.cert, list(ident.chain), anchors, purpose, revocation=checker)
        chain = "ok"
    except UntrustedCertificate as exc:
        chain, bad = _("NOT TRUSTED: {error}").format(error=exc), True
    days = ident.days_to_expiry(now)
    bad |= days < 0
    # the role and level columns are names (as in `status --json` and the metrics): kept
    print_table([_("role"), pgettext("certificate", "subject"), _("days"), _("key"), _("chain")],
                [["signing", ident.subject, f"{days:.0f}", _("key matches"), chain]])
    print()
    expiry = certificate_expiry(s, at=now)
    bad |= any(e.level in ("expired", "unreadable") for e in expiry)
    print_table([_("days"), _("level"), pgettext("certificate", "subject"), _("role")],
                [["-" if e.days is None else f"{e.days:.0f}", e.level.upper()
                  if e.level != "ok" else "ok", e.subject or e.path, e.role] for e in expiry])
    sources = checker.refresh()
    print()
    if not sources:
        print_field(_("revocation"), _("not configured (no {table})").format(
            table="[[revocation.anchors]]"))
    for st in sources:
        state = _("reachable") if st.reachable else (_("UNREACHABLE") if st.reachable is False
                                                     else _("not asked yet"))
        nxt = st.next_update.strftime("%Y-%m-%dT%H:%M:%SZ") if st.next_update else "-"
        print_field(_("revocation"), _("{kind} {source} ({anchor}): {state}, nextUpdate "
                                       "{next}").format(kind=st.kind, source=st.source,
                                                        anchor=st.anchor, state=state, next=nxt)
                    + (f"; {st.error}" if st.error else ""))
    return 1 if bad else 0
