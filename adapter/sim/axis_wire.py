"""The simulated axis's reading of a request, written from the wire format as documented
(EDXML.md, "The axis web service"), independently of the adapter's client.

What it accepts, because the official SDK sends it:
- header names in any case; signed JSON keys prefixed `XroadVnpt-` and matched without case;
  the key list bare and in any order; signed names beyond what the call needs (a long-lived
  SDK client keeps signing names from earlier calls, even its local `filePath`);
- the timestamp `ddMMyyyy'T'HHmmss+SSSS` whose last four digits are milliseconds, repeated
  from call to call (the SDK sets it once per client): freshness is checked only when a
  replay window is configured;
- `hash-file` in the SDK's unpadded hex or in ordinary 64-digit hex.

What it refuses: a missing or malformed signature, an unknown system, an HMAC made with
another key or over other values, a header whose value differs from its signed value, and a
stale timestamp when a window is set.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

SIGN_PREFIX = "xroadvnpt-"
VN_TZ = dt.timezone(dt.timedelta(hours=7))
_TIMESTAMP = re.compile(r"(\d{2})(\d{2})(\d{4})T(\d{2})(\d{2})(\d{2})\+(\d{4})")

#: the signed names each call needs, besides systemid and timestamp (lower case)
CALL_NAMES: dict[str, tuple[str, ...]] = {
    "sendEdoc": ("from", "servicetype", "messagetype", "hash-file"),
    "getReceivedEdocList": ("servicetype", "messagetype"),
    "getEdoc": ("docid",),
    "updateStatus": ("docid", "status"),
    "getSentEdocList": ("servicetype", "messagetype"),
    "countReceiveEdoc": (),
    "countReceiveStatus": (),
}


class WireRefusal(Exception):
    """The request cannot be served; `code` is the ErrorCode the axis answers with."""

    def __init__(self, code: str, desc: str, http: int = 200) -> None:
        super().__init__(desc)
        self.code, self.desc, self.http = code, desc, http


def refuse_auth(desc: str) -> WireRefusal:
    return WireRefusal("401", desc, 401)


@dataclass(frozen=True)
class Signed:
    system_id: str
    #: signed values by lower-case bare name
    values: dict[str, str]
    sent_at: dt.datetime

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name.lower(), default)


def parse_sdk_timestamp(text: str) -> dt.datetime:
    """`ddMMyyyy'T'HHmmss+SSSS`: Vietnam wall time and milliseconds (0000-0999)."""
    m = _TIMESTAMP.fullmatch(text)
    if not m or int(m[7]) > 999:
        raise ValueError(text)
    day, month, year, hh, mm, ss, ms = (int(x) for x in m.groups())
    return dt.datetime(year, month, day, hh, mm, ss, ms * 1000, tzinfo=VN_TZ)


def hash_file_forms(data: bytes) -> set[str]:
    """Both spellings of the file's SHA-256: 64-digit hex, and the SDK's per-byte unpadded."""
    digest = hashlib.sha256(data).digest()
    return {digest.hex(), "".join(format(b, "x") for b in digest)}


def authenticate(headers: Mapping[str, str], call: str,
                 secret_of: Callable[[str], bytes | None], *,
                 replay_window: float | None = None,
                 now: dt.datetime | None = None) -> Signed:
    """Check one request's `XroadVnpt-*` headers (`headers`: names in lower case)."""
    text = headers.get(SIGN_PREFIX + "sign-header")
    keys = headers.get(SIGN_PREFIX + "sign-header-key")
    mac = headers.get(SIGN_PREFIX + "hash-header")
    if not text or not keys or not mac:
        raise refuse_auth("missing XroadVnpt-sign-header, -sign-header-key or -hash-header")
    try:
        obj = json.loads(text)
    except ValueError:
        raise refuse_auth("XroadVnpt-sign-header is not JSON") from None
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise refuse_auth("XroadVnpt-sign-header must be a JSON object of strings")
    values: dict[str, str] = {}
    for key, value in obj.items():
        if not key.lower().startswith(SIGN_PREFIX):
            raise refuse_auth(f"signed key {key!r} lacks the XroadVnpt- prefix")
        name = key[len(SIGN_PREFIX):].lower()
        if name in values:
            raise refuse_auth(f"signed name {name!r} appears twice")
        values[name] = value
    listed = [n.strip().lower() for n in keys.split(";") if n.strip()]
    if sorted(listed) != sorted(values):
        raise refuse_auth("XroadVnpt-sign-header-key does not list the signed names "
                          f"(listed {';'.join(listed)}, signed {';'.join(values)})")
    missing = [n for n in ("systemid", "timestamp", *CALL_NAMES.get(call, ()))
               if n not in values]
    if missing:
        raise refuse_auth(f"signed headers lack {', '.join(missing)}")
    secret = secret_of(values["systemid"])
    if secret is None:
        raise refuse_auth(f"unknown systemid {values['systemid']!r}")
    expected = hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, mac.strip().lower()):
        raise refuse_auth("XroadVnpt-hash-header does not match (wrong key or altered values)")
    for name, value in values.items():
        for header in (SIGN_PREFIX + name, name):
            if header in headers and _differs(name, headers[header], value):
                raise refuse_auth(f"header {header} differs from its signed value")
    try:
        sent_at = parse_sdk_timestamp(values["timestamp"])
    except ValueError:
        raise refuse_auth(f"timestamp {values['timestamp']!r} is not "
                          "ddMMyyyy'T'HHmmss+SSSS (SSSS: milliseconds)") from None
    if replay_window is not None:
        skew = abs(((now or dt.datetime.now(VN_TZ)) - sent_at).total_seconds())
        if skew > replay_window:
            raise refuse_auth(f"timestamp is {skew:.0f}s away from the axis's clock "
                              f"(replay window {replay_window:.0f}s): stale or replayed")
    return Signed(values["systemid"], values, sent_at)


def _differs(name: str, sent: str, signed: str) -> bool:
    if name == "content-type":  # the plain header may carry parameters the HTTP stack adds
        return sent.split(";")[0].strip().lower() != signed.split(";")[0].strip().lower()
    return sent != signed
