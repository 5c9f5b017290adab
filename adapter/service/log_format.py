"""How the service's log lines look: readable text, or one JSON object per line.

JSON is for journald and ELK: fields stay fields (time, level, logger, message, pid,
thread, exception), so nothing has to be parsed back out of a sentence. In both formats
personal ID numbers are masked in the whole line, tracebacks included (adapter.privacy).
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from adapter.privacy import mask_ids

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class MaskedTextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return mask_ids(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; newlines inside a message or traceback stay escaped."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": mask_ids(record.getMessage()),
            "pid": record.process,
            "thread": record.threadName,
        }
        if record.exc_info:
            out["exception"] = mask_ids(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exception"] = mask_ids(record.exc_text)
        return json.dumps(out, ensure_ascii=False)


def formatter_for(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else MaskedTextFormatter()


def configure(settings) -> None:
    """Apply `[logging] format` and `[service] log_level` to the process's handlers (the
    CLI installed them before the configuration was read)."""
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(formatter_for(settings.logging.format))
    root.setLevel(settings.service.log_level)
