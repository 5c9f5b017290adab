"""What an unexpected exception while handling one packet becomes: a one-line reason for
the quarantine record and the operator, and a traceback for the log.

Database errors carry the statement's parameters (names, id numbers of the packet's
parties); they are hidden here, and the traceback goes through the same masking as every
log line.
"""

from __future__ import annotations

import traceback

from sqlalchemy.exc import StatementError

from adapter.privacy import mask_ids


def _hide_parameters(exc: BaseException) -> None:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, StatementError):
            e.hide_parameters = True
        e = e.__cause__ or e.__context__


def reason_of(exc: BaseException) -> str:
    """`ErrorClass: first line of the message`, as the quarantine reason."""
    _hide_parameters(exc)
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return mask_ids(f"{exc.__class__.__name__}: {lines[0] if lines else ''}")[:500]


def traceback_of(exc: BaseException) -> str:
    """The traceback for the log, statement parameters hidden, id numbers masked."""
    _hide_parameters(exc)
    return mask_ids("".join(traceback.format_exception(exc)).rstrip())
