"""The client side of the axis's `XroadVnpt-*` authentication, byte for byte as the official
SDK (SDKVXP 2.0.1) sends it, so the shared axis cannot tell us from an agency's SDK client.

- Every signed name goes out as a header `XroadVnpt-<name>`, in the SDK's case (`docId`,
  `Content-Type`), and into a compact JSON object whose keys are the *prefixed* names.
- `XroadVnpt-sign-header-key` lists the *bare* names joined by `;`.
- `XroadVnpt-hash-header` is the lower-case hex HMAC-SHA256 of that JSON string, keyed with
  the secret's UTF-8 bytes.
- The timestamp is `ddMMyyyy'T'HHmmss+SSSS`: local (Vietnam) wall time, then `+` and four
  digits of *milliseconds* (Java's `SimpleDateFormat`), not a zone offset.
- `hash-file` is SHA-256 in the SDK's hex, one `Integer.toHexString` per byte: no zero
  padding, so usually fewer than 64 characters.

The simulated axis (adapter/sim) checks requests from its own reading of the wire format and
never imports this module.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence

PREFIX = "XroadVnpt-"
VERSION = "3.0.201608"
VN_TZ = dt.timezone(dt.timedelta(hours=7))

Clock = Callable[[], dt.datetime]


def vietnam_now() -> dt.datetime:
    return dt.datetime.now(VN_TZ)


def sdk_timestamp(now: dt.datetime) -> str:
    """`ddMMyyyy'T'HHmmss+SSSS` in Vietnam wall time; SSSS are milliseconds."""
    local = now.astimezone(VN_TZ) if now.tzinfo else now
    return f"{local:%d%m%YT%H%M%S}+{local.microsecond // 1000:04d}"


def sdk_hash_file(data: bytes) -> str:
    """SHA-256 of `data` as the SDK writes it: each byte as hex without zero padding."""
    return "".join(format(b, "x") for b in hashlib.sha256(data).digest())


def sign_json(values: Sequence[tuple[str, str]]) -> str:
    """The signed string: a compact JSON object of the prefixed names, in order (as Gson's
    JsonObject.toString() writes it: no spaces, non-ASCII kept as is)."""
    return json.dumps({PREFIX + k: v for k, v in values}, separators=(",", ":"),
                      ensure_ascii=False)


def signed_headers(values: Sequence[tuple[str, str]], secret: bytes) -> dict[str, str]:
    """The request headers that carry and authenticate `values` (bare names, in order;
    `Content-Type` among them is also sent as the plain Content-Type header)."""
    names = [k for k, _ in values]
    if len({n.lower() for n in names}) != len(names):
        raise ValueError(f"a signed name appears twice: {names}")
    text = sign_json(values)
    headers: dict[str, str] = {}
    for name, value in values:
        if name == "Content-Type":
            headers["Content-Type"] = value
        headers[PREFIX + name] = value
    headers[PREFIX + "sign-header-key"] = ";".join(names)
    headers[PREFIX + "sign-header"] = text
    headers[PREFIX + "hash-header"] = hmac.new(secret, text.encode("utf-8"),
                                               hashlib.sha256).hexdigest()
    headers[PREFIX + "version"] = VERSION
    return headers
