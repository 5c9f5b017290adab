"""PKCS#11 URIs (RFC 7512) as `[signing] key` names a key held on a token or an HSM.

Parsed strictly, because a URI that silently selects "some key on some token" signs a
ministry's packets with the wrong identity: unknown or repeated attributes, bad percent
escapes, a PIN written into the URI (`pin-value`) and a missing module path are all refused
with the reason. Only what the adapter needs is accepted: the module by path, the token by
label, serial or slot id, the key by label (`object`) and/or `id`, and the PIN by
`pin-source=file:/path` or `pin-source=env:VARIABLE`.

Kept free of the PKCS#11 library itself, so configuration checks it without loading one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

SCHEME = "pkcs11:"

#: path attributes understood (RFC 7512 section 2.3); the others would be silently ignored
#: by us yet change the meaning for the operator who wrote them, so they are refused.
_PATH_ATTRS = {"token", "serial", "slot-id", "object", "id", "type", "manufacturer"}
_QUERY_ATTRS = {"module-path", "pin-source"}
#: a percent escape, or a character RFC 7512 allows unescaped in a path or query value.
_PATH_VALUE = re.compile(r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9\-._~:\[\]@!$'()*+,=&])*")
_QUERY_VALUE = re.compile(r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9\-._~:\[\]@!$'()*+,=/?|])*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class PinSource:
    """Where the PIN is read at start, by each process: a file or an environment variable."""

    kind: str  # "file" or "env"
    where: str  # the file path or the variable name

    def __str__(self) -> str:
        return f"file {self.where}" if self.kind == "file" else f"variable {self.where}"


@dataclass(frozen=True)
class Pkcs11Uri:
    text: str
    module_path: str
    pin: PinSource
    token: str | None = None
    serial: str | None = None
    slot_id: int | None = None
    manufacturer: str | None = None
    object: str | None = None
    id: bytes | None = None

    @property
    def token_name(self) -> str:
        """The token as an operator names it in messages."""
        if self.token is not None:
            return repr(self.token)
        if self.serial is not None:
            return f"with serial {self.serial!r}"
        return f"in slot {self.slot_id}"

    @property
    def key_name(self) -> str:
        parts = [f"label {self.object!r}" if self.object is not None else "",
                 f"id {self.id.hex()}" if self.id is not None else ""]
        return " and ".join(p for p in parts if p)


def is_pkcs11_uri(value: str) -> bool:
    return value[: len(SCHEME)].lower() == SCHEME


def _decode(name: str, raw: str, pattern: re.Pattern[str]) -> bytes:
    if not pattern.fullmatch(raw):
        for i, ch in enumerate(raw):
            piece = raw[i:i + 3] if ch == "%" else ch
            if not pattern.fullmatch(piece):
                what = f"{piece!r} is not a percent escape" if ch == "%" else \
                    f"character {ch!r} must be percent-encoded"
                raise ValueError(f"PKCS#11 URI attribute {name}: {what} (RFC 7512)")
    return unquote_to_bytes(raw)


def _text(name: str, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"PKCS#11 URI attribute {name}: not UTF-8 once decoded") from None


def _pairs(part: str, sep: str, known: set[str], pattern: re.Pattern[str],
           where: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for item in part.split(sep) if part else []:
        name, eq, raw = item.partition("=")
        if not eq or not name:
            raise ValueError(f"PKCS#11 URI {where} element {item!r} is not name=value")
        if name == "pin-value":
            raise ValueError("the PIN must not be written in the configuration (pin-value): "
                             "use pin-source=file:/path/to/pin or pin-source=env:VARIABLE")
        if name == "module-name":
            raise ValueError("module-name is not supported: name the library with "
                             "module-path=/absolute/path/to/module.so")
        if name not in known:
            raise ValueError(f"PKCS#11 URI attribute {name!r} is not supported here "
                             f"(known {where} attributes: {', '.join(sorted(known))})")
        if name in out:
            raise ValueError(f"PKCS#11 URI attribute {name!r} is given twice")
        out[name] = _decode(name, raw, pattern)
    return out


def _pin_source(value: str) -> PinSource:
    kind, colon, where = value.partition(":")
    if kind == "file" and colon and where:
        path = where[2:] if where.startswith("///") else where
        if not path.startswith("/") or path.startswith("//"):
            raise ValueError(f"pin-source {value!r}: the PIN file must be an absolute path")
        return PinSource("file", path)
    if kind == "env" and colon and _ENV_NAME.fullmatch(where):
        return PinSource("env", where)
    raise ValueError(f"pin-source {value!r} is not file:/absolute/path or env:VARIABLE")


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """The URI's parts; ValueError with the reason when it is not one the adapter can use."""
    if not is_pkcs11_uri(text):
        raise ValueError("not a PKCS#11 URI (it must start with pkcs11:)")
    if any(ch.isspace() for ch in text):
        raise ValueError("PKCS#11 URI contains whitespace (percent-encode it as %20)")
    body = text[len(SCHEME):]
    if "#" in body:
        raise ValueError("PKCS#11 URI must not have a fragment (#)")
    path, _, query = body.partition("?")
    attrs = _pairs(path, ";", _PATH_ATTRS, _PATH_VALUE, "path")
    q = _pairs(query, "&", _QUERY_ATTRS, _QUERY_VALUE, "query")
    s = {k: _text(k, v) for k, v in attrs.items() if k != "id"}
    if "type" in s and s["type"] != "private":
        raise ValueError(f"type={s['type']}: the signing key is a private key (type=private)")
    module = _text("module-path", q["module-path"]) if "module-path" in q else ""
    if not module:
        raise ValueError("module-path is missing: name the token's PKCS#11 library, e.g. "
                         "module-path=/usr/lib/softhsm/libsofthsm2.so")
    if not module.startswith("/"):
        raise ValueError(f"module-path {module!r} must be an absolute path")
    if not ({"token", "serial", "slot-id"} & s.keys()):
        raise ValueError("no token named: add token=LABEL (or serial=, slot-id=)")
    if "object" not in s and "id" not in attrs:
        raise ValueError("no key named: add object=KEY-LABEL and/or id=%01")
    if "pin-source" not in q:
        raise ValueError("no PIN source: add ?pin-source=file:/etc/thads/token.pin or "
                         "pin-source=env:VARIABLE (never the PIN itself)")
    slot = None
    if "slot-id" in s:
        if not s["slot-id"].isdigit():
            raise ValueError(f"slot-id {s['slot-id']!r} is not a decimal number")
        slot = int(s["slot-id"])
    if "id" in attrs and not attrs["id"]:
        raise ValueError("id is empty")
    return Pkcs11Uri(text=text, module_path=module,
                     pin=_pin_source(_text("pin-source", q["pin-source"])),
                     token=s.get("token"), serial=s.get("serial"), slot_id=slot,
                     manufacturer=s.get("manufacturer"),
                     object=s.get("object"), id=attrs.get("id"))
