"""Days until each configured certificate expires, and the warnings at 30 and 7 days.

One list for the log, `status`, the metrics and `certs check`: our signing certificate and
its chain, every trust anchor (ours and the peers'), the peers' pinned signer certificates,
the timestamp authority's CA and the TLS certificates. A certificate named in several
places is listed once, with all its roles.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes

log = logging.getLogger("adapter.certificates")

WARNING_DAYS = 30
CRITICAL_DAYS = 7
Level = Literal["ok", "warning", "critical", "expired", "unreadable"]


@dataclass(frozen=True)
class CertificateExpiry:
    role: str
    path: str
    subject: str = ""
    not_after: dt.datetime | None = None
    days: float | None = None
    level: Level = "ok"
    error: str = ""

    def as_dict(self) -> dict:
        return dict(role=self.role, path=self.path, subject=self.subject,
                    not_after=self.not_after and self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    days=None if self.days is None else round(self.days, 1),
                    level=self.level, error=self.error)

    @property
    def line(self) -> str:
        if self.level == "unreadable":
            return f"certificate {self.path} ({self.role}) is unreadable: {self.error}"
        when = self.not_after.strftime("%Y-%m-%d") if self.not_after else "?"
        if self.level == "expired":
            return f"certificate {self.subject!r} ({self.role}) EXPIRED on {when}"
        return (f"certificate {self.subject!r} ({self.role}) expires in {self.days:.0f} days, "
                f"on {when}")


def level_of(days: float) -> Level:
    if days < 0:
        return "expired"
    if days <= CRITICAL_DAYS:
        return "critical"
    if days <= WARNING_DAYS:
        return "warning"
    return "ok"


def _configured(settings) -> list[tuple[str, str]]:
    """(role, path) of every certificate file the settings name."""
    s = settings
    out = [("our signing certificate", s.signing.cert)]
    out += [("our signing chain", p) for p in s.signing.chain]
    out += [("our trust anchor", p) for p in s.signing.trust_anchors]
    for peer in s.peers:
        out += [(f"trust anchor of peer {peer.name}", p) for p in peer.trust_anchors]
        out += [(f"pinned signer of peer {peer.name}", p) for p in peer.signer_certificates]
    if s.audit.tsa_url:
        out.append(("timestamp authority CA", s.audit.tsa_ca_file))
    for role, p in (("LGSP TLS CA", s.lgsp.ca_file), ("LGSP TLS client", s.lgsp.client_cert),
                    ("axis TLS CA", s.axis.ca_file)):
        if p:
            out.append((role, p))
    return out


def certificate_expiry(settings, *, at: dt.datetime | None = None) -> list[CertificateExpiry]:
    """Days to expiry of every configured certificate at `at` (default now), soonest first."""
    now = at or dt.datetime.now(dt.UTC)
    found: dict[bytes, tuple[list[str], str, x509.Certificate]] = {}
    bad: list[CertificateExpiry] = []
    for role, path in _configured(settings):
        p = settings.path(path)
        try:
            certs = x509.load_pem_x509_certificates(p.read_bytes())
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            bad.append(CertificateExpiry(role, str(p), level="unreadable", error=str(why)))
            continue
        for c in certs:
            roles, _, _ = found.setdefault(c.fingerprint(hashes.SHA256()), ([], str(p), c))
            if role not in roles:
                roles.append(role)
    out = []
    for roles, path, c in found.values():
        days = (c.not_valid_after_utc - now).total_seconds() / 86400
        out.append(CertificateExpiry(", ".join(roles), path, c.subject.rfc4514_string(),
                                     c.not_valid_after_utc, days, level_of(days)))
    out.sort(key=lambda e: e.days if e.days is not None else -1e9)
    return bad + out


def log_expiry_warnings(settings, *, at: dt.datetime | None = None) -> list[CertificateExpiry]:
    """Log a warning for each certificate within 30 days, an error within 7 days, expired
    or unreadable; returns those logged (the service calls this at start and daily)."""
    due = [e for e in certificate_expiry(settings, at=at) if e.level != "ok"]
    for e in due:
        if e.level == "warning":
            log.warning("%s", e.line)
        else:
            log.error("%s", e.line)
    return due
