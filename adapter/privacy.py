"""Masking of personal ID numbers (Decree 13/2023/NĐ-CP) in logs and operator output.

Citizen ids (12 digits), old ID cards (9 digits) and tax codes of persons are shown as
`079*******34`: enough for an operator to tell records apart, not enough to identify anyone.
Full packets are for the auditor role only.
"""

from __future__ import annotations

import logging
import re

#: a run of 9 to 12 digits; not the text of an XML element whose name ends in `Amount`
#: (a sum of money in `exchanges show --xml` is no personal id, and an operator needs it).
_ID = re.compile(r"(?<![\d-])(?<!Amount>)(\d{3})(\d{4,7})(\d{2})(?![\d-])")


def mask_ids(text: str) -> str:
    return _ID.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)


class MaskingFilter(logging.Filter):
    """Masks every log record, whatever logger wrote it."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        masked = mask_ids(msg)
        if masked != msg:
            record.msg, record.args = masked, None
        return True
