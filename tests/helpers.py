"""Building blocks for tests: sample records and packets from the real generator and mapping."""

from __future__ import annotations

import copy
import datetime as dt

from lxml import etree

from adapter.mapping import MappingSet, PacketHeader, packet_id
from adapter.sources.synth import Generator, sample_notices

NS = "urn:thads-adapter:exchange:1"
N = f"{{{NS}}}"
_MAPPINGS = MappingSet()


def sample_record(kind: str, i: int = 1) -> dict:
    g = Generator(seed=7)
    if kind == "case":
        case, parties, obligations, _ = g.case(i)
        return dict(case, parties=parties, obligations=obligations)
    if kind == "receipt":
        for n in range(i, i + 50):
            case, parties, _, receipts = g.case(n)
            if receipts:
                return dict(receipts[0], case_code=case["case_code"])
    if kind == "judgment":
        j, parties, obligations = g.judgment(i)
        return dict(j, parties=parties, obligations=obligations)
    if kind == "debtor":
        return sample_notices(7, person=i % 2 == 1, start=i)[-1]
    raise ValueError(kind)


def root_of(kind: str) -> str:
    """The packet's root element in Clark notation (Case, Receipt, DebtorEntry, ...)."""
    return _MAPPINGS[kind].element


def header(kind: str, key: str = "K-1", version: int = 1) -> PacketHeader:
    return PacketHeader(packet_id(kind, key, version), key, version, "000.00.00.G15",
                        "000.00.00.G22", dt.datetime(2026, 3, 1, 2, 30, tzinfo=dt.UTC))


def build_packet(kind: str, record: dict | None = None, key: str = "K-1") -> etree._Element:
    rec = copy.deepcopy(record) if record is not None else sample_record(kind)
    return _MAPPINGS[kind].to_xml(rec, header(kind, key))


def install_roles_file(monkeypatch, directory, group: str | None = None, *, mode: int = 0o644):
    """A system roles file in `directory` naming `group` (default: this process's own group),
    put where the CLI looks, owned by whoever runs the tests (root in CI)."""
    import grp
    import os
    from pathlib import Path

    import adapter.roles

    d = Path(directory) / "etc-thads-adapter"
    d.mkdir(mode=0o755, exist_ok=True)
    d.chmod(0o755)
    f = d / "roles.toml"
    name = group if group is not None else grp.getgrgid(os.getgid()).gr_name
    f.write_text(f'auditor_group = "{name}"\n', encoding="utf-8")
    f.chmod(mode)
    monkeypatch.setattr(adapter.roles, "SYSTEM_ROLES_FILE", f)
    monkeypatch.setattr(adapter.roles, "ROOT_UID", os.getuid())
    return f


# ---- a canned SOAP platform (the batch and inbound fast paths' tests) --------------------

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
LGSP_TNS = "urn:thads-adapter:lgsp:1"


def soap_envelope(body: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}">'
            f"<soap:Body>{body}</soap:Body></soap:Envelope>").encode()


def soap_fault(who: str, detail: bool = True, code: str = "BUSINESS_REJECTED",
               retryable: str = "false") -> bytes:
    pf = (f'<detail><PlatformFault xmlns="{LGSP_TNS}"><code>{code}</code><reason>no such '
          f"recipient</reason><retryable>{retryable}</retryable></PlatformFault></detail>"
          if detail else "")
    return soap_envelope(f"<soap:Fault><faultcode>soap:{who}</faultcode>"
                         f"<faultstring>fault string</faultstring>{pf}</soap:Fault>")


class CannedPlatform:
    """A platform that answers whatever the test sets, over real HTTP."""

    def __init__(self) -> None:
        self.status, self.body = "200 OK", b""

    def __call__(self, environ, start_response):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response(self.status, [("Content-Type", "text/xml; charset=utf-8"),
                                     ("Content-Length", str(len(self.body)))])
        return [self.body]
