"""Field types of the declarative mappings: how a column value becomes XML text and back.

Each type validates on the way out (so a bad record fails with the column named, before
any XML exists) and parses on the way in. Values are checked here once; the XSD is the
second, independent line of defence.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapter.mapping.vntext import legacy_encoding_reason, to_nfc

VN_TZ = dt.timezone(dt.timedelta(hours=7), "ICT")

#: the first three digits of a CCCD: the province of registration.
CITIZEN_ID_PROVINCES = frozenset((
    "001 002 004 006 008 010 011 012 014 015 017 019 020 022 024 025 026 027 030 031 033 034 "
    "035 036 037 038 040 042 044 045 046 048 049 051 052 054 056 058 060 062 064 066 067 068 "
    "070 072 074 075 077 079 080 082 083 084 086 087 089 091 092 093 094 095 096").split())

_ORG_ID = re.compile(r"\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}")
_TAX = re.compile(r"\d{10}(-\d{3})?")
_DECISION = re.compile(r"\d{1,7}/(19|20)\d{2}/[^\s/]{1,40}")
_CODE = re.compile(r"[A-Za-z0-9./_\-]{1,40}")


class FieldValueError(ValueError):
    """A value is wrong for its type; the engine adds the packet and field."""


def _text(v: Any) -> str:
    if not isinstance(v, str):
        v = str(v)
    v = to_nfc(v.strip())
    if not v:
        raise FieldValueError("empty text")
    reason = legacy_encoding_reason(v)
    if reason:
        raise FieldValueError(reason)
    return v


def _code(v: Any) -> str:
    v = str(v).strip()
    if not _CODE.fullmatch(v):
        raise FieldValueError(f"{v!r} is not a code (letters, digits, . / _ -; 1-40 chars)")
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise FieldValueError(f"{v!r} is not a whole number")
    if isinstance(v, float):
        if not v.is_integer():
            raise FieldValueError(f"{v!r} is not a whole number of dong")
        return int(v)
    try:
        return int(str(v).strip())
    except ValueError:
        raise FieldValueError(f"{v!r} is not a whole number") from None


def _amount(v: Any) -> str:
    n = _int(v)
    if n <= 0:
        raise FieldValueError(f"amount must be greater than 0, got {n}")
    return str(n)


def _amount0(v: Any) -> str:
    n = _int(v)
    if n < 0:
        raise FieldValueError(f"amount must not be negative, got {n}")
    return str(n)


def _date(v: Any) -> str:
    if isinstance(v, dt.datetime):
        v = (v.astimezone(VN_TZ) if v.tzinfo else v).date()
    if isinstance(v, dt.date):
        return v.isoformat()
    try:
        return dt.date.fromisoformat(str(v).strip()[:10]).isoformat()
    except ValueError:
        raise FieldValueError(f"{v!r} is not a date (YYYY-MM-DD)") from None


def _datetime(v: Any) -> str:
    """Naive values are local time in Vietnam (how the enforcement databases store them)."""
    if isinstance(v, str):
        try:
            v = dt.datetime.fromisoformat(v.strip())
        except ValueError:
            raise FieldValueError(f"{v!r} is not a date-time (ISO 8601)") from None
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        v = dt.datetime.combine(v, dt.time())
    if not isinstance(v, dt.datetime):
        raise FieldValueError(f"{v!r} is not a date-time")
    v = v.replace(tzinfo=VN_TZ) if v.tzinfo is None else v.astimezone(VN_TZ)
    return v.replace(microsecond=0).isoformat()


def _org_id(v: Any) -> str:
    v = str(v).strip()
    if not _ORG_ID.fullmatch(v):
        raise FieldValueError(f"{v!r} is not a QCVN 102 organisation id (NNN.NN.NN.XNN)")
    return v


def _citizen_id(v: Any) -> str:
    v = str(v).strip()
    if len(v) == 9 and v.isdigit():
        return v
    if len(v) != 12 or not v.isdigit():
        raise FieldValueError("citizen id must be 12 digits (CCCD) or 9 (old ID card), got "
                              f"{len(v)} characters")
    if v[:3] not in CITIZEN_ID_PROVINCES:
        raise FieldValueError(f"citizen id opens with {v[:3]}, which is no province code")
    return v


def _tax_code(v: Any) -> str:
    v = str(v).strip()
    if not _TAX.fullmatch(v):
        raise FieldValueError(f"{v!r} is not a tax code (10 digits, or 10-3 for a branch)")
    return v


def _decision_number(v: Any) -> str:
    v = to_nfc(str(v).strip())
    if not _DECISION.fullmatch(v):
        raise FieldValueError(f"{v!r} is not a decision number like 1161/2025/QĐST-DS")
    return v


def _base64(v: Any) -> str:
    if isinstance(v, str):
        v = v.encode()
    return base64.b64encode(bytes(v)).decode("ascii")


def _sha256(v: Any) -> str:
    v = str(v).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", v):
        raise FieldValueError("not a hex SHA-256 digest")
    return v


@dataclass(frozen=True)
class FieldType:
    to_xml: Callable[[Any], str]
    from_xml: Callable[[str], Any]


def _parse_date(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def _parse_datetime(s: str) -> dt.datetime:
    """Back to the sources' convention: naive local time."""
    return dt.datetime.fromisoformat(s).astimezone(VN_TZ).replace(tzinfo=None)


FIELD_TYPES: dict[str, FieldType] = {
    "text": FieldType(_text, str),
    "code": FieldType(_code, str),
    "int": FieldType(lambda v: str(_int(v)), int),
    "amount": FieldType(_amount, int),
    "amount0": FieldType(_amount0, int),
    "date": FieldType(_date, _parse_date),
    "datetime": FieldType(_datetime, _parse_datetime),
    "org_id": FieldType(_org_id, str),
    "citizen_id": FieldType(_citizen_id, str),
    "tax_code": FieldType(_tax_code, str),
    "decision_number": FieldType(_decision_number, str),
    "base64": FieldType(_base64, lambda s: base64.b64decode(s, validate=False)),
    "sha256": FieldType(_sha256, str),
    # amount in words is checked against its amount by the engine (it needs both fields).
    "amount_words": FieldType(_text, str),
}
