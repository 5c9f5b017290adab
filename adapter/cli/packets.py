"""packet validate | sign | verify FILE (offline tools)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from adapter.cli.common import settings_of
from adapter.errors import AdapterError, PacketError, SignatureError

#: how an offline check is told its trust anchors (`--trust` is the same option)
ANCHOR_HELP = ("trust anchor PEM, repeatable (default: the configured ones; with none, "
               "a signature is reported as untrusted)")


def register(sub) -> None:
    p = sub.add_parser("packet", help="offline packet tools")
    ps = p.add_subparsers(dest="packet_command", required=True, metavar="ACTION")
    v = ps.add_parser("validate", help="schema validation: each error with line, path, reason")
    v.add_argument("file")
    v.set_defaults(handler=cmd_validate)
    s = ps.add_parser("sign", help="sign with the configured key")
    s.add_argument("file")
    s.add_argument("-o", "--out", help="output file (default: stdout)")
    s.set_defaults(handler=cmd_sign)
    c = ps.add_parser("verify", help="verify signature and certificate chain")
    c.add_argument("file")
    c.add_argument("--ca", "--trust", dest="ca", action="append", metavar="PEM",
                   help=ANCHOR_HELP)
    c.set_defaults(handler=cmd_verify)


def offline_anchors(args) -> tuple[list, str]:
    """Trust anchors for an offline check, and what to tell the user when there are none.

    `--ca` files must be readable (exit 2 otherwise: the user named them). Without `--ca`,
    the configured anchors that exist are used; a fresh checkout (no configuration file
    given or found, or `init` not run so the dev CA is missing) has none, which makes a
    signature untrusted, never a configuration error."""
    from adapter.config import config_path
    from adapter.crypto.keys import load_certificates

    if args.ca:
        return [c for a in args.ca for c in load_certificates(Path(a))], ""
    hint = "give --ca CA.pem, or run `thads-adapter init` for the dev PKI"
    if args.config is None and not config_path().exists():
        return [], f"no configuration file {config_path()} and no --ca: {hint}"
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
        return [], f"configured trust anchor {', '.join(missing)} not found: {hint}"
    return [], f"no trust anchor configured: {hint}"


class InputTooLarge(AdapterError):
    """A file handed to an offline tool is bigger than any packet may be (exit 2)."""


def read_input(path: str, *, max_bytes: int | None = None) -> bytes:
    """The bytes of FILE (or stdin for "-"), its size checked before anything is read: a
    200 MB file costs a stat, not 200 MB of memory. Never more than `max_bytes` (default:
    the parser's own limit) + 1 bytes are read, so a file that grows or a pipe is bounded
    too."""
    from adapter.xml.safe import MAX_PACKET_BYTES

    max_bytes = MAX_PACKET_BYTES if max_bytes is None else max_bytes
    limit = f"the limit of {max_bytes} bytes ({max_bytes / 2**20:g} MiB) for one packet"
    if path == "-":
        data = sys.stdin.buffer.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise InputTooLarge(f"standard input: more than {limit}")
        return data
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise InputTooLarge(f"{path}: {size} bytes exceed {limit}")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputTooLarge(f"{path}: more than {limit}")
    return data


def cmd_validate(args) -> int:
    from adapter.xml.safe import parse_untrusted
    from adapter.xml.schema import SchemaRegistry

    data = read_input(args.file)
    try:
        root = parse_untrusted(data, name=args.file)
        report = SchemaRegistry.default().report(root)
    except PacketError as exc:
        print(f"{args.file}: INVALID: {exc}")
        return 1
    if report.valid:
        print(f"{args.file}: valid ({etree_name(root)})")
        return 0
    print(f"{args.file}: INVALID ({report.summary()})")
    for issue in report.issues:
        print(f"  {issue}")
    if report.note:
        print(f"  ({report.note})")
    return 1


def etree_name(root) -> str:
    from lxml import etree
    q = etree.QName(root)
    return f"{q.localname} in {q.namespace}"


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
        print(f"{args.file}: not signed: {exc}", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_bytes(signed)
        print(f"signed {args.file} -> {args.out} ({builder.signer.identity.subject})")
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
            print(f"{args.file}: UNTRUSTED: {exc}" + (f" ({no_anchor})" if no_anchor else ""))
        else:
            print(f"{args.file}: INVALID: {exc}")
        return 1
    except PacketError as exc:
        print(f"{args.file}: INVALID: {exc}")
        return 1
    print(f"{args.file}: signature valid")
    print(f"  signer:    {result.signer_subject}")
    print(f"  issuer:    {result.signer.issuer.rfc4514_string()}")
    print(f"  algorithm: {result.signature_method}")
    print(f"  valid to:  {result.signer.not_valid_after_utc:%Y-%m-%d}")
    return 0
