"""Is a signer's certificate revoked? CRLs per trust anchor, OCSP where a certificate names
a responder, one answer for every verifier (trust.verify_signer calls `check`).

- CRL files are re-read when they change; CRL URLs are fetched (with a timeout) and kept on
  disk until their nextUpdate, and never fetched again before it unless the copy is gone.
- A CRL is believed only when its issuer is the certificate's issuer and the issuer's key
  verifies its signature; a stale or unverifiable CRL counts as unavailable.
- A revocation counts for signatures made at or after its date (`at`, default now); a key
  compromise counts whatever the date, since the key may have signed anything.
- When no current source answers, the anchor's policy decides: reject (the signature is
  untrusted) or flag (accepted, logged and counted in `status()`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Literal

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.ocsp import OCSPCertStatus

from adapter.crypto import trust
from adapter.crypto.ocsp import OcspClient, OcspUnavailable, responder_url, why
from adapter.crypto.trust import Purpose, UntrustedCertificate
from adapter.errors import AdapterError

log = logging.getLogger("adapter.revocation")

Clock = Callable[[], dt.datetime]
Policy = Literal["reject", "flag"]
#: a CRL without nextUpdate (RFC 5280 requires one) is kept this long.
DEFAULT_CRL_LIFETIME = dt.timedelta(hours=24)
MAX_CRL_BYTES = 64 * 1024 * 1024
#: reasons after which no signature of the key is believed, whatever its date.
COMPROMISE = frozenset({x509.ReasonFlags.key_compromise, x509.ReasonFlags.ca_compromise,
                        x509.ReasonFlags.aa_compromise})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(t: dt.datetime | None) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else "-"


class CertificateRevoked(UntrustedCertificate):
    """A certificate of the chain is revoked; says when, why, and who said so."""

    def __init__(self, cert: x509.Certificate, when: dt.datetime | None, reason: str,
                 source: str) -> None:
        self.cert, self.when, self.reason, self.source = cert, when, reason, source
        super().__init__(f"certificate revoked on {iso(when)} ({reason}): "
                         f"{cert.subject.rfc4514_string()!r}, serial {cert.serial_number:#x}, "
                         f"according to {source}")


class RevocationUnknown(UntrustedCertificate):
    """No current source could say, and the anchor's policy is reject."""


class SourceUnavailable(Exception):
    """This source has no current CRL; the message says why."""


@dataclass
class SourceState:
    """What `status` and the metrics show of one revocation source."""

    anchor: str
    kind: str  # "crl-file" | "crl-url" | "ocsp"
    source: str
    last_fetched: dt.datetime | None = None
    next_update: dt.datetime | None = None
    reachable: bool | None = None
    error: str = ""
    fetches: int = 0
    flagged: int = 0

    def as_dict(self) -> dict:
        return dict(anchor=self.anchor, kind=self.kind, source=self.source,
                    last_fetched=self.last_fetched and iso(self.last_fetched),
                    next_update=self.next_update and iso(self.next_update),
                    reachable=self.reachable, error=self.error, fetches=self.fetches,
                    flagged=self.flagged)


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def _expires(crl: x509.CertificateRevocationList, got: dt.datetime) -> dt.datetime:
    return crl.next_update_utc or (got + DEFAULT_CRL_LIFETIME)


class CrlSource:
    """One configured CRL; `current(now)` is a CRL valid now or SourceUnavailable."""

    def __init__(self, state: SourceState) -> None:
        self.state = state
        self._crl: x509.CertificateRevocationList | None = None
        self._until: dt.datetime | None = None
        self._lock = threading.Lock()

    def current(self, now: dt.datetime) -> x509.CertificateRevocationList:
        raise NotImplementedError


class CrlFile(CrlSource):
    def __init__(self, path: Path, anchor: str) -> None:
        super().__init__(SourceState(anchor, "crl-file", str(path)))
        self.path = path
        self._stamp: int | None = None

    def current(self, now: dt.datetime) -> x509.CertificateRevocationList:
        with self._lock:
            try:
                stamp = os.stat(self.path).st_mtime_ns
                if stamp != self._stamp:
                    self._crl = load_crl(self.path.read_bytes())
                    self._stamp, self._until = stamp, _expires(self._crl, now)
                    self.state.last_fetched, self.state.fetches = now, self.state.fetches + 1
                    self.state.next_update = self._crl.next_update_utc
                self.state.reachable, self.state.error = True, ""
            except (OSError, ValueError) as exc:
                self.state.reachable = False
                self.state.error = f"cannot read CRL file {self.path}: {exc}"
                self._stamp = None
                raise SourceUnavailable(self.state.error) from None
            crl, until = self._crl, self._until
            # both are set by the load above, or by an earlier one of the same file stamp
            assert crl is not None and until is not None
            if now >= until:
                raise SourceUnavailable(f"CRL file {self.path} is out of date: its nextUpdate "
                                        f"{iso(until)} has passed")
            return crl


class CrlUrl(CrlSource):
    """A published CRL, kept in memory and on disk until its nextUpdate."""

    def __init__(self, url: str, anchor: str, cache_dir: Path, *, timeout: float,
                 retry_seconds: float, session: requests.Session) -> None:
        super().__init__(SourceState(anchor, "crl-url", url))
        self.url, self.timeout, self.retry_seconds = url, timeout, retry_seconds
        name = hashlib.sha256(url.encode()).hexdigest()[:24]
        self.cache = cache_dir / f"crl-{name}.der"
        self._meta = cache_dir / f"crl-{name}.json"
        self._session = session
        self._failed_at: dt.datetime | None = None

    def current(self, now: dt.datetime) -> x509.CertificateRevocationList:
        with self._lock:
            # _set gives _crl and _until together: both are None or neither is
            if self._crl is None or self._until is None or now >= self._until:
                self._load_cache()  # first use, or another instance fetched it already
            if self._crl is not None and self._until is not None and now < self._until:
                return self._crl
            if self._failed_at is not None and \
                    (now - self._failed_at).total_seconds() < self.retry_seconds:
                raise SourceUnavailable(self._unavailable())
            try:
                crl = self._fetch()
            except SourceUnavailable as exc:
                self._failed_at, self.state.reachable, self.state.error = now, False, str(exc)
                raise SourceUnavailable(self._unavailable()) from None
            self._failed_at, self.state.reachable, self.state.error = None, True, ""
            until = _expires(crl, now)
            if now >= until:
                self.state.error = f"CRL {self.url} as published is out of date"
                raise SourceUnavailable(f"CRL {self.url} as published is out of date: its "
                                        f"nextUpdate {iso(until)} has passed")
            self._store(crl, now)
            return crl

    def _unavailable(self) -> str:
        held = f"its cached copy expired at {iso(self._until)}" if self._crl is not None \
            else "no copy is cached"
        return f"{self.state.error}; {held}"

    def _fetch(self) -> x509.CertificateRevocationList:
        self.state.fetches += 1
        try:
            r = self._session.get(self.url, timeout=(self.timeout, self.timeout), stream=True)
            data = r.raw.read(MAX_CRL_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise SourceUnavailable(f"CRL {self.url} unreachable: {why(exc)}") from None
        if r.status_code != 200:
            raise SourceUnavailable(f"CRL {self.url} unreachable: HTTP {r.status_code}")
        if len(data) > MAX_CRL_BYTES:
            raise SourceUnavailable(f"CRL {self.url} is larger than {MAX_CRL_BYTES} bytes")
        try:
            return load_crl(data)
        except ValueError as exc:
            raise SourceUnavailable(f"CRL {self.url} is not a CRL: {exc}") from None

    def _store(self, crl: x509.CertificateRevocationList, now: dt.datetime) -> None:
        from cryptography.hazmat.primitives import serialization

        self._set(crl, now)
        try:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            for path, data in ((self.cache, crl.public_bytes(serialization.Encoding.DER)),
                               (self._meta, json.dumps({"url": self.url,
                                                        "fetched": iso(now)}).encode())):
                tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, path)
        except OSError as exc:  # kept in memory; fetched again after a restart
            log.warning("cannot keep CRL %s in %s: %s", self.url, self.cache.parent, exc)

    def _set(self, crl: x509.CertificateRevocationList, got: dt.datetime) -> None:
        self._crl, self._until = crl, _expires(crl, got)
        self.state.last_fetched, self.state.next_update = got, crl.next_update_utc

    def _load_cache(self) -> None:
        if not self.cache.exists():
            return
        try:
            crl = load_crl(self.cache.read_bytes())
            meta = json.loads(self._meta.read_text(encoding="utf-8"))
            got = dt.datetime.strptime(meta["fetched"], "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=dt.UTC)
        except (OSError, ValueError, KeyError, TypeError):
            return  # missing or damaged: fetched again
        self._set(crl, got)


@dataclass
class AnchorRevocation:
    """The revocation sources and policy of one trust anchor."""

    anchor: x509.Certificate
    crls: list[CrlSource] = field(default_factory=list)
    ocsp: bool = True
    unavailable: Policy = "reject"
    flagged: int = 0

    @property
    def name(self) -> str:
        return self.anchor.subject.rfc4514_string()


@dataclass(frozen=True)
class _Verdict:
    good: bool
    problems: tuple[str, ...] = ()


class RevocationChecker:
    """The process's answer to "is this chain revoked?" (a trust.RevocationCheck)."""

    def __init__(self, anchors: Iterable[AnchorRevocation], *, clock: Clock = _now,
                 ocsp: OcspClient | None = None) -> None:
        self.anchors = {a.anchor.fingerprint(hashes.SHA256()): a for a in anchors}
        self.clock = clock
        self.ocsp = ocsp or OcspClient()
        #: per CRL object held: serial -> entry, or None when the issuer did not sign it.
        self._index: dict[tuple[int, bytes], tuple[object, dict | None]] = {}
        self._lock = threading.Lock()

    # ---- the check -------------------------------------------------------------------

    def check(self, chain: Sequence[x509.Certificate], *, at: dt.datetime | None = None
              ) -> None:
        if len(chain) < 2:
            return  # an anchor used directly has nobody to revoke it
        entry = self.anchors.get(chain[-1].fingerprint(hashes.SHA256()))
        if entry is None:
            return  # no revocation configured for this anchor
        now = self.clock()
        at = at or now
        for cert, issuer in pairwise(chain):
            verdict = self._status(entry, cert, issuer, now, at)
            if not verdict.good:
                self._unknown(entry, cert, verdict.problems)

    def _status(self, entry: AnchorRevocation, cert: x509.Certificate,
                issuer: x509.Certificate, now: dt.datetime, at: dt.datetime) -> _Verdict:
        problems: list[str] = []
        covered = False
        for src in entry.crls:
            try:
                crl = src.current(now)
            except SourceUnavailable as exc:
                if self._may_cover(src, cert):
                    problems.append(str(exc))
                continue
            if crl.issuer != cert.issuer:
                continue
            revoked = self._revoked(crl, issuer)
            if revoked is None:
                problems.append(f"{src.state.source} is not signed by "
                                f"{issuer.subject.rfc4514_string()!r}")
                continue
            covered = True
            entry_ = revoked.get(cert.serial_number)
            if entry_ is not None:
                reason = _crl_reason(entry_)
                if _counts(entry_.revocation_date_utc, reason, at):
                    raise CertificateRevoked(cert, entry_.revocation_date_utc,
                                             reason.value, src.state.source)
        if covered:
            return _Verdict(True)
        url = responder_url(cert) if entry.ocsp else None
        if url:
            try:
                answer = self.ocsp.status(url, cert, issuer, now)
            except OcspUnavailable as exc:
                problems.append(str(exc))
            else:
                if answer.status == OCSPCertStatus.GOOD:
                    return _Verdict(True)
                if answer.status == OCSPCertStatus.REVOKED:
                    reason = x509.ReasonFlags(answer.reason or "unspecified")
                    if _counts(answer.revocation_time, reason, at):
                        raise CertificateRevoked(cert, answer.revocation_time, reason.value,
                                                 f"OCSP responder {url}")
                    return _Verdict(True)
                problems.append(f"OCSP responder {url} does not know the certificate")
        if not problems:
            problems.append(f"no configured CRL covers the issuer "
                            f"{issuer.subject.rfc4514_string()!r} and the certificate names no "
                            "OCSP responder")
        return _Verdict(False, tuple(problems))

    @staticmethod
    def _may_cover(src: CrlSource, cert: x509.Certificate) -> bool:
        """An unavailable source counts against a certificate unless its last CRL (if any)
        was another issuer's."""
        held = src._crl
        return held is None or held.issuer == cert.issuer

    def _revoked(self, crl: x509.CertificateRevocationList, issuer: x509.Certificate
                 ) -> dict[int, x509.RevokedCertificate] | None:
        """The CRL's entries by serial (built once per CRL), or None if `issuer` did not
        sign it."""
        key = (id(crl), issuer.fingerprint(hashes.SHA256()))
        with self._lock:
            held = self._index.get(key)
            if held is not None and held[0] is crl:
                return held[1]
            public = issuer.public_key()
            try:
                ok = trust.signs_certificates(public) and crl.is_signature_valid(public)
            except (TypeError, ValueError):
                ok = False
            index = {r.serial_number: r for r in crl} if ok else None
            if len(self._index) > 64:
                self._index.clear()
            self._index[key] = (crl, index)  # holding crl keeps its id from being reused
            return index

    def _unknown(self, entry: AnchorRevocation, cert: x509.Certificate,
                 problems: tuple[str, ...]) -> None:
        who = cert.subject.rfc4514_string()
        why = "; ".join(problems)
        if entry.unavailable == "reject":
            raise RevocationUnknown(f"revocation status of {who!r} is unknown ({why}); "
                                    "policy reject")
        with self._lock:
            entry.flagged += 1
            for src in entry.crls:
                if src.state.error:
                    src.state.flagged += 1
        log.warning("revocation status of %r is unknown (%s); accepted under policy flag",
                    who, why)

    # ---- what status and the metrics show ----------------------------------------------

    def refresh(self) -> list[SourceState]:
        """Bring every CRL source up to date (fetching only what is due) and return the
        states: `certs check`, and a periodic job of the service."""
        now = self.clock()
        for entry in self.anchors.values():
            for src in entry.crls:
                with contextlib.suppress(SourceUnavailable):  # recorded in its state
                    src.current(now)
        return self.status()

    def status(self) -> list[SourceState]:
        out: list[SourceState] = []
        for entry in self.anchors.values():
            out.extend(s.state for s in entry.crls)
            if not entry.crls and not entry.ocsp:
                out.append(SourceState(entry.name, "none", "-", error="no source configured"))
        for url, r in self.ocsp.responders.items():
            out.append(SourceState("*", "ocsp", url, r.last_fetched, r.next_update,
                                   r.reachable, r.error, r.requests))
        return out


def _crl_reason(revoked: x509.RevokedCertificate) -> x509.ReasonFlags:
    try:
        return revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return x509.ReasonFlags.unspecified


def _counts(when: dt.datetime | None, reason: x509.ReasonFlags, at: dt.datetime) -> bool:
    return reason in COMPROMISE or when is None or when <= at


# ---- the process's checker, from the settings -------------------------------------------

def _policies(settings) -> dict[bytes, Policy]:
    """Anchor fingerprint -> the policy of the peers naming it (reject wins)."""
    from adapter.crypto.keys import load_certificates

    out: dict[bytes, Policy] = {}
    for peer in settings.peers:
        for p in peer.trust_anchors:
            for c in load_certificates(settings.path(p)):
                fp = c.fingerprint(hashes.SHA256())
                if out.get(fp) != "reject":
                    out[fp] = peer.revocation_unavailable
    return out


def cache_dir_of(settings) -> Path:
    cfg = settings.revocation
    return settings.path(cfg.cache_dir or str(Path(settings.adapter.data_dir) / "revocation"))


def checker_from_settings(settings, *, clock: Clock = _now) -> RevocationChecker:
    """A checker for the `[[revocation.anchors]]` of the settings."""
    from adapter.crypto.keys import load_certificates

    cfg = settings.revocation
    session = requests.Session()
    session.trust_env = False
    policies = _policies(settings)
    cache = cache_dir_of(settings)
    entries = []
    for a in cfg.anchors:
        for cert in load_certificates(settings.path(a.anchor)):
            name = cert.subject.rfc4514_string()
            crls: list[CrlSource] = [CrlFile(settings.path(f), name) for f in a.crl_files]
            crls += [CrlUrl(u, name, cache, timeout=cfg.fetch_timeout_seconds,
                            retry_seconds=cfg.retry_seconds, session=session)
                     for u in a.crl_urls]
            policy = policies.get(cert.fingerprint(hashes.SHA256()), cfg.unavailable)
            entries.append(AnchorRevocation(cert, crls, a.ocsp, policy))
    ocsp = OcspClient(timeout=cfg.fetch_timeout_seconds, retry_seconds=cfg.retry_seconds,
                      session=session)
    return RevocationChecker(entries, clock=clock, ocsp=ocsp)


def configure(settings, *, clock: Clock = _now) -> RevocationChecker:
    """Build the checker of the settings and install it for every verifier of the process
    (the service at start, CLI commands that verify). Returns it."""
    checker = checker_from_settings(settings, clock=clock)
    trust.set_revocation_check(checker)
    return checker


def reset() -> None:
    """No revocation checking in this process (tests)."""
    trust.set_revocation_check(None)


def status() -> list[SourceState]:
    """The revocation sources of the process's checker, for the service's metrics."""
    checker = trust.revocation_check()
    return checker.status() if isinstance(checker, RevocationChecker) else []


def source_states(settings) -> list[SourceState]:
    """For `status` in a process of its own: the sources brought up to date (a CRL is
    fetched only when its cached copy is past nextUpdate) by a checker of the settings."""
    checker = trust.revocation_check()
    if isinstance(checker, RevocationChecker):
        return checker.refresh()
    return checker_from_settings(settings).refresh()


# ---- our own certificate ----------------------------------------------------------------

class OwnCertificateUnusable(AdapterError):
    """Our signing certificate is revoked or expired: nothing may be signed with it."""

    permanent = False


def check_own_certificate(settings, *, cert: x509.Certificate | None = None,
                          at: dt.datetime | None = None,
                          checker: RevocationChecker | None = None) -> None:
    """Called before each signing round: raises OwnCertificateUnusable, one line saying why
    signing stops, when our certificate (default `[signing] cert`) is revoked or expired.
    An unknown status only logs a warning: an unreachable CRL is no reason to stop."""
    from adapter.crypto.keys import load_certificates

    sig = settings.signing
    cert = cert or load_certificates(settings.path(sig.cert))[0]
    chain = [c for p in sig.chain for c in load_certificates(settings.path(p))]
    anchors = [c for p in sig.trust_anchors for c in load_certificates(settings.path(p))]
    now = at or _now()
    who = cert.subject.rfc4514_string()
    if cert.not_valid_after_utc <= now:
        raise OwnCertificateUnusable(f"signing stopped: our certificate {who!r} expired on "
                                     f"{iso(cert.not_valid_after_utc)}; configure a valid one "
                                     "in [signing] cert")
    check = checker or trust.revocation_check()
    if check is None:
        return
    try:
        validated = trust.validate_chain(cert, chain, anchors, Purpose.THADS_PACKET, at=now)
        check.check(validated, at=now)
    except CertificateRevoked as exc:
        raise OwnCertificateUnusable(
            f"signing stopped: our certificate {who!r} was revoked on {iso(exc.when)} "
            f"({exc.reason}) according to {exc.source}; configure a new certificate in "
            "[signing] cert") from None
    except UntrustedCertificate as exc:
        log.warning("our signing certificate could not be fully checked: %s", exc)
