"""packet validate | sign | verify FILE (offline tools)."""

from __future__ import annotations

import sys
from pathlib import Path

from adapter.cli.common import settings_of
from adapter.errors import PacketError


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
    c.add_argument("--ca", action="append", help="trust anchor PEM (default: configured ones)")
    c.set_defaults(handler=cmd_verify)


def _read(path: str) -> bytes:
    return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()


def cmd_validate(args) -> int:
    from adapter.xml.safe import parse_untrusted
    from adapter.xml.schema import SchemaRegistry

    try:
        root = parse_untrusted(_read(args.file), name=args.file)
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

    s = settings_of(args)
    builder = PacketBuilder(s)
    try:
        root = parse_untrusted(_read(args.file), name=args.file)
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
    from adapter.crypto.keys import load_certificates
    from adapter.crypto.verify import PacketVerifier

    s = settings_of(args)
    anchors = args.ca or s.signing.trust_anchors
    certs = [c for a in anchors for c in load_certificates(s.path(a) if not args.ca else Path(a))]
    try:
        result = PacketVerifier(certs).verify(_read(args.file), packet=args.file)
    except PacketError as exc:
        print(f"{args.file}: INVALID: {exc}")
        return 1
    print(f"{args.file}: signature valid")
    print(f"  signer:    {result.signer_subject}")
    print(f"  issuer:    {result.signer.issuer.rfc4514_string()}")
    print(f"  algorithm: {result.signature_method}")
    print(f"  valid to:  {result.signer.not_valid_after_utc:%Y-%m-%d}")
    return 0
