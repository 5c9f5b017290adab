"""Vietnamese text rules: NFC, legacy-encoding detection, amounts in words.

Legacy TCVN3 (ABC) and VNI text decoded as if it were Unicode shows Latin-1 letters that
Vietnamese never uses (TCVN3: ¸ µ ¶ · ¹ ¨ ©…; VNI: ø ö ï ñ ë ä å û…). Such text must never
leave as mojibake: it is reported naming the record and field.
"""

from __future__ import annotations

import re
import unicodedata

# Every precomposed letter of Vietnamese (NFC), upper and lower case.
_VN_LOWER = (
    "aàáảãạăằắẳẵặâầấẩẫậbcdđeèéẻẽẹêềếểễệghiìíỉĩịklmnoòóỏõọôồốổỗộơờớởỡợpqrstuùúủũụưừứửữựvxyỳýỷỹỵ"
    "fjwz"
)
VIETNAMESE_LETTERS = frozenset(_VN_LOWER + _VN_LOWER.upper())

# Characters TCVN3 and VNI produce when misread; used only to name the likely encoding.
_TCVN3_MARKS = set("¸µ¶·¹¨©ª«¬®¯°±²³´¼½¾ÆÇË×ØÞßåæçëîïðñòóôöøûüþÿ")
_VNI_MARKS = set("øöïñëäåûüØÖÏÑËÄÅÛÜ")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


#: a Latin-1 or Latin Extended letter that is not Vietnamese (one C scan finds the first)
_NOT_VIETNAMESE = re.compile("[" + "".join(
    re.escape(chr(c)) for c in range(0x80, 0x250) if chr(c) not in VIETNAMESE_LETTERS) + "]")


def legacy_encoding_reason(text: str) -> str | None:
    """Why `text` looks like legacy TCVN3/VNI (or holds control characters), else None."""
    control = _CONTROL.search(text)
    if control:
        return f"control character U+{ord(control.group()):04X} in text"
    if text.isascii() or not _NOT_VIETNAMESE.search(text):
        return None
    odd = [ch for ch in text if "\u0080" <= ch <= "\u024f" and ch not in VIETNAMESE_LETTERS]
    if not odd:
        return None
    sample = "".join(dict.fromkeys(odd))[:6]
    vni = sum(ch in _VNI_MARKS for ch in odd)
    tcvn = sum(ch in _TCVN3_MARKS for ch in odd)
    guess = "VNI" if vni > tcvn / 2 and vni else "TCVN3 (ABC)"
    return (f"text looks {guess}-encoded, not Unicode (characters {sample!r} are not "
            "Vietnamese); convert the source data to Unicode")


def to_nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


# ---- amounts in words -------------------------------------------------------------------

_DIGITS = ["không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín"]


def _read_group(n: int, full: bool) -> list[str]:
    """Read 0-999; `full` when a higher group precedes it (so 5 reads 'không trăm linh năm')."""
    h, t, u = n // 100, n // 10 % 10, n % 10
    words: list[str] = []
    if full or h:
        words += [_DIGITS[h], "trăm"]
    if t == 0:
        if u:
            if words:
                words.append("linh")
            words.append(_DIGITS[u])
    elif t == 1:
        words.append("mười")
        if u:
            words.append("lăm" if u == 5 else _DIGITS[u])
    else:
        words += [_DIGITS[t], "mươi"]
        if u:
            words.append({1: "mốt", 4: "tư", 5: "lăm"}.get(u, _DIGITS[u]))
    return words


def _read_below_billion(n: int, full: bool) -> list[str]:
    words: list[str] = []
    for group, unit in ((n // 1_000_000, "triệu"), (n // 1000 % 1000, "nghìn"), (n % 1000, "")):
        if group:
            words += _read_group(group, full=full or bool(words))
            if unit:
                words.append(unit)
    return words


def _read(n: int) -> list[str]:
    """Blocks of nine digits close with "tỷ": 5e12 is "năm nghìn tỷ"."""
    if n >= 1_000_000_000:
        high, low = divmod(n, 1_000_000_000)
        return [*_read(high), "tỷ", *(_read_below_billion(low, True) if low else [])]
    return _read_below_billion(n, False) or ["không"]


def amount_in_words(amount: int) -> str:
    """'Một triệu hai trăm nghìn đồng' for 1200000: the form receipts print."""
    if amount < 0:
        raise ValueError("amount must not be negative")
    text = " ".join([*_read(amount), "đồng"])
    return text[0].upper() + text[1:]


_EQUIVALENTS = {"lẻ": "linh", "ngàn": "nghìn", "tỉ": "tỷ", "bốn": "tư", "nhăm": "lăm",
                "vnđ": "đồng", "vnd": "đồng"}


def _canonical_words(text: str) -> list[str]:
    text = unicodedata.normalize("NFC", text).lower()
    text = re.sub(r"[.,;:!()/]", " ", text)
    words = [_EQUIVALENTS.get(w, w) for w in text.split()]
    while words and words[-1] in ("chẵn", "./"):
        words.pop()
    # "bốn" and "tư" are both heard in the units place after mươi; elsewhere only "bốn".
    return ["bốn" if w == "tư" and (i == 0 or words[i - 1] != "mươi") else w
            for i, w in enumerate(words)]


def words_match_amount(words: str, amount: int) -> bool:
    """True when `words` reads `amount`, tolerating the usual regional variants."""
    return _canonical_words(words) == _canonical_words(amount_in_words(amount))
