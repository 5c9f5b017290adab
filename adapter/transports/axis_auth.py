"""The axis's request authentication: HMAC-SHA256 over a compact JSON of the signed headers.

Client and server share this module, so both sides compute exactly the same string. The
server side is strict: the listed names must be exactly the JSON's keys and include what the
call needs, every `XroadVnpt-<name>` header must equal its value in the JSON (an altered
header is caught even though the JSON is intact), the HMAC is compared in constant time, and
the timestamp must be fresh.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping

PREFIX = "XroadVnpt-"
VERSION = "3.0.201608"
VN_TZ = dt.timezone(dt.timedelta(hours=7))
#: the call's own keys, besides systemid, timestamp and content-type
CALL_KEYS = {
    "/sendEdoc": ("from", "servicetype", "messagetype", "hash-file"),
    "/getReceivedEdocList": ("servicetype",),
    "/getEdoc": ("docid",),
    "/updateStatus": ("docid", "status"),
    "/getSentEdocList": ("servicetype",),
}


class AxisAuthError(Exception):
    """The request's authentication headers are missing, altered, stale or wrongly keyed."""


def timestamp(now: dt.datetime | None = None) -> str:
    """ddMMyyyy'T'HHmmss+ZZZZ in Vietnam time, as the axis expects."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(VN_TZ)
    return now.strftime("%d%m%YT%H%M%S%z")


def parse_timestamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%d%m%YT%H%M%S%z")


def compact(values: Mapping[str, str]) -> str:
    return json.dumps(dict(values), separators=(",", ":"), ensure_ascii=False)


def sign_headers(values: Mapping[str, str], secret: bytes) -> dict[str, str]:
    """The HTTP headers that carry and authenticate `values`."""
    body = compact(values)
    headers = {f"{PREFIX}{k}": v for k, v in values.items()}
    headers[f"{PREFIX}sign-header-key"] = ";".join(values)
    headers[f"{PREFIX}sign-header"] = body
    headers[f"{PREFIX}hash-header"] = hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()
    headers[f"{PREFIX}version"] = VERSION
    return headers


def check_headers(headers: Mapping[str, str], path: str, secret_of, *,
                  max_skew: float = 300.0, now: dt.datetime | None = None) -> dict[str, str]:
    """Return the authenticated values, or raise AxisAuthError saying what is wrong.
    `headers` keys are matched case-insensitively; `secret_of(systemid)` gives the key."""
    h = {k.lower(): v for k, v in headers.items()}
    p = PREFIX.lower()
    body = h.get(f"{p}sign-header")
    names = h.get(f"{p}sign-header-key")
    mac = h.get(f"{p}hash-header")
    if not body or not names or not mac:
        raise AxisAuthError("missing XroadVnpt-sign-header, -sign-header-key or -hash-header")
    try:
        values = json.loads(body)
    except ValueError:
        raise AxisAuthError("XroadVnpt-sign-header is not JSON") from None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise AxisAuthError("XroadVnpt-sign-header must be an object of strings")
    if names.split(";") != list(values):
        raise AxisAuthError("XroadVnpt-sign-header-key does not list the signed headers")
    needed = ("systemid", "timestamp", "content-type", *CALL_KEYS.get(path, ()))
    missing = [n for n in needed if n not in values]
    if missing:
        raise AxisAuthError(f"signed headers lack {', '.join(missing)}")
    secret = secret_of(values["systemid"])
    if secret is None:
        raise AxisAuthError(f"unknown systemid {values['systemid']!r}")
    expected = hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, mac.lower()):
        raise AxisAuthError("XroadVnpt-hash-header does not match (wrong key or altered)")
    for name, value in values.items():
        if h.get(f"{p}{name}") != value:
            raise AxisAuthError(f"header XroadVnpt-{name} differs from its signed value")
    try:
        sent = parse_timestamp(values["timestamp"])
    except ValueError:
        raise AxisAuthError(f"timestamp {values['timestamp']!r} is not ddMMyyyyTHHmmss+ZZZZ") \
            from None
    skew = abs(((now or dt.datetime.now(dt.UTC)) - sent).total_seconds())
    if skew > max_skew:
        raise AxisAuthError(f"timestamp is {skew:.0f}s away from the server's clock "
                            f"(limit {max_skew:.0f}s): stale or replayed")
    return values
