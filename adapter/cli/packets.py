"""packet validate | sign | verify FILE (offline tools)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from adapter.cli.common import settings_of
from adapter.errors import AdapterError, PacketError, SignatureError
from adapter.i18n import N_, _

#: how an offline check is told its trust anchors (`--trust` is the same option)
ANCHOR_HELP = N_("trust anchor PEM, repeatable (default: the configured ones; with none, a "
                 "signature is reported as untrusted)")


def register(sub) -> None:
    p = sub.add_parser("packet", help=_("offline packet tools"))
    ps = p.add_subparsers(dest="packet_command", required=True, metavar="ACTION")
    v = ps.add_parser("validate", help=_("schema validation: each error with line, path, "
                                         "reason"))
    v.add_argument("file", help=_("the packet (- for standard input)"))
    v.set_defaults(handler=cmd_validate)
    s = ps.add_parser("sign", help=_("sign with the configured key"))
    s.add_argument("file", help=_("the packet (- for standard input)"))
    s.add_argument("-o", "--out", help=_("output file (default: stdout)"))
    s.set_defaults(handler=cmd_sign)
    c = ps.add_parser("verify", help=_("verify signature and certificate chain"))
    c.add_argument("file", help=_("the packet (- for standard input)"))
    c.add_argument("--ca", "--trust", dest="ca", action="append", metavar="PEM",
                   help=_(ANCHOR_HELP))
    c.set_defaults(handler=cmd_verify)


def offline_anchors(args, *, translate: bool = True) -> tuple[list, str]:
    """Trust anchors for an offline check, and what to tell the user when there are none
    (in English when `translate` is false: it goes into JSON for scripts).

    `--ca` files must be readable (exit 2 otherwise: the user named them). Without `--ca`,
    the configured anchors that exist are used; a fresh checkout (no configuration file
    given or found, or `init` not run so the dev CA is missing) has none, which makes a
    signature untrusted, never a configuration error."""
    from adapter.config import config_path
    from adapter.crypto.keys import load_certificates

    def say(message: str, **values: str) -> str:
        return (_(message) if translate else message).format(**values)

    if args.ca:
        return [c for a in args.ca for c in load_certificates(Path(a))], ""
    hint = say(N_("give --ca CA.pem, or run `thads-adapter init` for the dev PKI"))
    if args.config is None and not config_path().exists():
        return [], say(N_("no configuration file {file} and no --ca: {hint}"),
                       file=str(config_path()), hint=hint)
    s = settings_of(args)
    found, missing = [], []
    for anchor in s.signing.trust_anchors:
        path = s.path(anchor)
        if path.exists():
            found += load_certificates(path)
        else:
            missing.append(str(path))
    if found:
        return found, ""
    if missing:
        return [], say(N_("configured trust anchor {files} not found: {hint}"),
                       files=", ".join(missing), hint=hint)
    return [], say(N_("no trust anchor configured: {hint}"), hint=hint)


class InputTooLarge(AdapterError):
    """A file handed to an offline tool is bigger than any packet may be (exit 2)."""


def read_input(path: str, *, max_bytes: int | None = None) -> bytes:
    """The bytes of FILE (or stdin for "-"), its size checked before anything is read: a
    200 MB file costs a stat, not 200 MB of memory. Never more than `max_bytes` (default:
    the parser's own limit) + 1 bytes are read, so a file that grows or a pipe is bounded
    too."""
    from adapter.xml.safe import MAX_PACKET_BYTES

    max_bytes = MAX_PACKET_BYTES if max_bytes is None else max_bytes
    limit = _("the limit of {bytes} bytes ({mib} MiB) for one packet").format(
        bytes=max_bytes, mib=f"{max_bytes / 2**20:g}")
    if path == "-":
        data = sys.stdin.buffer.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise InputTooLarge(_("standard input: more than {limit}").format(limit=limit))
        return data
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise InputTooLarge(_("{file}: {size} bytes exceed {limit}").format(
                file=path, size=size, limit=limit))
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputTooLarge(_("{file}: more than {limit}").format(file=path, limit=limit))
    return data


def cmd_validate(args) -> int:
    from adapter.xml.safe import parse_untrusted
    from adapter.xml.schema import SchemaRegistry

    data = read_input(args.file)
    try:
        root = parse_untrusted(data, name=args.file)
        report = SchemaRegistry.default().report(root)
    except PacketError as exc:
        print(_("{file}: INVALID: {error}").format(file=args.file, error=exc))
        return 1
    if report.valid:
        print(_("{file}: valid ({root})").format(file=args.file, root=etree_name(root)))
        return 0
    print(_("{file}: INVALID ({summary})").format(file=args.file, summary=report.summary()))
    for issue in report.issues:
        print(f"  {issue}")
    if report.note:
        print(f"  ({report.note})")
    return 1


def etree_name(root) -> str:
    from lxml import etree
    q = etree.QName(root)
    return _("{name} in {namespace}").format(name=q.localname, namespace=q.namespace)


def cmd_sign(args) -> int:
    from adapter.engine.build import PacketBuilder
    from adapter.xml.safe import parse_untrusted

    data = read_input(args.file)
    s = settings_of(args)
    builder = PacketBuilder(s)
    try:
        root = parse_untrusted(data, name=args.file)
        builder.schemas.check(root, packet=args.file)
        signed = builder.signer.sign_bytes(root, packet=args.file)
    except PacketError as exc:
        print(_("{file}: not signed: {error}").format(file=args.file, error=exc),
              file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_bytes(signed)
        print(_("signed {file} -> {out} ({subject})").format(
            file=args.file, out=args.out, subject=builder.signer.identity.subject))
    else:
        sys.stdout.buffer.write(signed)
    return 0


def cmd_verify(args) -> int:
    from adapter.crypto.verify import PacketVerifier

    data = read_input(args.file)
    certs, no_anchor = offline_anchors(args)
    try:
        result = PacketVerifier(certs, integrity_only=not certs).verify(data, packet=args.file)
    except SignatureError as exc:
        if exc.outcome == "untrusted":
            print(_("{file}: UNTRUSTED: {error}").format(file=args.file, error=exc)
                  + (f" ({no_anchor})" if no_anchor else ""))
        else:
            print(_("{file}: INVALID: {error}").format(file=args.file, error=exc))
        return 1
    except PacketError as exc:
        print(_("{file}: INVALID: {error}").format(file=args.file, error=exc))
        return 1
    print(_("{file}: signature valid").format(file=args.file))
    rows = [(_("signer:"), result.signer_subject),
            (_("issuer:"), result.signer.issuer.rfc4514_string()),
            (_("algorithm:"), result.signature_method),
            (_("valid to:"), f"{result.signer.not_valid_after_utc:%Y-%m-%d}")]
    width = max(len(label) for label, _value in rows) + 1
    for label, value in rows:
        print(f"  {label:<{width}}{value}")
    return 0
