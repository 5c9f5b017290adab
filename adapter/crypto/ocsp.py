"""Ask an OCSP responder (RFC 6960) whether a certificate is revoked.

The request is built by cryptography.x509.ocsp and POSTed as DER; the answer is believed
only when it is signed by the certificate's issuer, or by a responder certificate the
issuer gave the OCSPSigning purpose, names the certificate asked about, and is current.
Answers are cached until their nextUpdate, so a responder is asked once per period.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

#: clock skew tolerated between us and the responder.
SKEW = dt.timedelta(minutes=5)
MAX_ANSWER = 1024 * 1024


class OcspUnavailable(Exception):
    """No usable answer (unreachable, malformed, unsigned, stale); the message says why."""


@dataclass(frozen=True)
class OcspAnswer:
    status: ocsp.OCSPCertStatus
    revocation_time: dt.datetime | None
    reason: str | None
    this_update: dt.datetime
    next_update: dt.datetime | None


@dataclass
class ResponderState:
    url: str
    last_fetched: dt.datetime | None = None
    next_update: dt.datetime | None = None
    reachable: bool | None = None
    error: str = ""
    requests: int = 0


def responder_url(cert: x509.Certificate) -> str | None:
    """The first http(s) OCSP responder the certificate names, if any."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for d in aia:
        if d.access_method == AuthorityInformationAccessOID.OCSP and \
                isinstance(d.access_location, x509.UniformResourceIdentifier) and \
                d.access_location.value.startswith(("http://", "https://")):
            return d.access_location.value
    return None


def verify_signature(key, signature: bytes, data: bytes, algorithm) -> None:
    """Raises InvalidSignature (or ValueError for a key type we do not accept)."""
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(algorithm))
    else:
        raise ValueError(f"unsupported responder key type {type(key).__name__}")


class OcspClient:
    """Asks responders and caches their answers per (issuer, serial) until nextUpdate."""

    def __init__(self, *, timeout: float = 10.0, retry_seconds: float = 60.0,
                 default_seconds: float = 3600.0, session: requests.Session | None = None
                 ) -> None:
        self.timeout, self.retry_seconds = timeout, retry_seconds
        self.default = dt.timedelta(seconds=default_seconds)
        self._session = session or _session()
        self._answers: dict[tuple[str, bytes, int], tuple[OcspAnswer, dt.datetime]] = {}
        self._failed: dict[str, tuple[dt.datetime, str]] = {}
        self.responders: dict[str, ResponderState] = {}
        self._lock = threading.Lock()

    def status(self, url: str, cert: x509.Certificate, issuer: x509.Certificate,
               now: dt.datetime) -> OcspAnswer:
        key = (url, issuer.fingerprint(hashes.SHA256()), cert.serial_number)
        with self._lock:
            state = self.responders.setdefault(url, ResponderState(url))
            cached = self._answers.get(key)
            if cached is not None and now < cached[1]:
                return cached[0]
            failed = self._failed.get(url)
            if failed and (now - failed[0]).total_seconds() < self.retry_seconds:
                raise OcspUnavailable(f"OCSP responder {url} unreachable: {failed[1]}")
            try:
                answer = self._ask(url, cert, issuer, now, state)
            except OcspUnavailable as exc:
                self._failed[url] = (now, str(exc).split(": ", 1)[-1])
                state.error = str(exc)
                raise
            self._failed.pop(url, None)
            until = answer.next_update or (now + self.default)
            self._answers[key] = (answer, until)
            state.last_fetched, state.next_update, state.error = now, answer.next_update, ""
            return answer

    def _ask(self, url: str, cert: x509.Certificate, issuer: x509.Certificate,
             now: dt.datetime, state: ResponderState) -> OcspAnswer:
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
        state.requests += 1
        try:
            r = self._session.post(url, data=request.public_bytes(serialization.Encoding.DER),
                                   headers={"Content-Type": "application/ocsp-request"},
                                   timeout=(self.timeout, self.timeout), stream=True)
            body = r.raw.read(MAX_ANSWER + 1, decode_content=True)
        except requests.RequestException as exc:
            state.reachable = False
            raise OcspUnavailable(f"OCSP responder {url} unreachable: {why(exc)}") from None
        if r.status_code != 200:
            state.reachable = False
            raise OcspUnavailable(f"OCSP responder {url} unreachable: HTTP {r.status_code}")
        state.reachable = True
        if len(body) > MAX_ANSWER:
            raise OcspUnavailable(f"OCSP responder {url}: answer larger than {MAX_ANSWER} bytes")
        try:
            resp = ocsp.load_der_ocsp_response(body)
        except ValueError as exc:
            raise OcspUnavailable(f"OCSP responder {url}: malformed answer ({exc})") from None
        if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise OcspUnavailable(f"OCSP responder {url}: answered "
                                  f"{resp.response_status.name.lower()}")
        self._check_signed(url, resp, issuer)
        return self._single(url, resp, request, now)

    @staticmethod
    def _check_signed(url: str, resp: ocsp.OCSPResponse, issuer: x509.Certificate) -> None:
        """Signed by the issuer, or by a certificate the issuer made an OCSP responder."""
        candidates = [issuer]
        for c in resp.certificates:
            try:
                c.verify_directly_issued_by(issuer)
                eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
                continue
            if ExtendedKeyUsageOID.OCSP_SIGNING in eku:
                candidates.append(c)
        for c in candidates:
            named = resp.responder_name == c.subject if resp.responder_name is not None else \
                resp.responder_key_hash == \
                x509.SubjectKeyIdentifier.from_public_key(c.public_key()).digest
            if not named:
                continue
            try:
                verify_signature(c.public_key(), resp.signature, resp.tbs_response_bytes,
                                 resp.signature_hash_algorithm)
                return
            except (InvalidSignature, ValueError):
                break
        raise OcspUnavailable(f"OCSP responder {url}: the answer is not signed by the issuer "
                              "or a responder it authorised")

    def _single(self, url: str, resp: ocsp.OCSPResponse, request: ocsp.OCSPRequest,
                now: dt.datetime) -> OcspAnswer:
        for single in resp.responses:
            if single.serial_number != request.serial_number or \
                    single.issuer_key_hash != request.issuer_key_hash or \
                    single.issuer_name_hash != request.issuer_name_hash:
                continue
            if single.this_update_utc > now + SKEW:
                raise OcspUnavailable(f"OCSP responder {url}: answer dated in the future "
                                      f"({_iso(single.this_update_utc)})")
            if single.next_update_utc is not None and single.next_update_utc + SKEW < now:
                raise OcspUnavailable(f"OCSP responder {url}: stale answer (nextUpdate "
                                      f"{_iso(single.next_update_utc)} has passed)")
            reason = None
            if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
                reason = single.revocation_reason.value if single.revocation_reason else \
                    "unspecified"
            return OcspAnswer(single.certificate_status, single.revocation_time_utc, reason,
                              single.this_update_utc, single.next_update_utc)
        raise OcspUnavailable(f"OCSP responder {url}: the answer is not about the certificate "
                              "asked for")


def why(exc: requests.RequestException) -> str:
    """A network failure in a few words, not urllib3's nested reprs."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    found = re.findall(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    if isinstance(exc, requests.ConnectionError):
        return f"cannot connect ({found[-1].strip()})" if found else "cannot connect"
    return type(exc).__name__


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # the environment's proxies are not ours to use
    return s


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
