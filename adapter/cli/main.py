"""`thads-adapter`: the command-line contract of CLI.md.

Exit codes everywhere: 0 success/valid/intact; 1 the thing checked is invalid, failed,
tampered or not found; 2 usage, configuration or I/O error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from adapter.errors import AdapterError, ConfigError
from adapter.i18n import _, installed
from adapter.privacy import MaskingFilter

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (tests swap it; daemons redirect it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _setup_logging(level: str) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # max_instances=1 is deliberate: a round still running is not an event worth a warning.
    logging.getLogger("apscheduler.scheduler").addFilter(
        lambda r: "maximum number of running instances" not in r.getMessage())
    logging.getLogger("zeep").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    from adapter.cli import audit, certs, db, edxml, exchanges, packets, running

    p = argparse.ArgumentParser(prog="thads-adapter",
                                description=_("THADS exchange adapter (LGSP SOAP, document "
                                              "axis)"))
    p.add_argument("--config", help=_("configuration file (default: $THADS_ADAPTER_CONFIG, "
                                      "else config/adapter.toml)"))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    running.register(sub)
    exchanges.register(sub)
    packets.register(sub)
    certs.register(sub)
    edxml.register(sub)
    audit.register(sub)
    db.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """One command, in the language LANGUAGE/LC_ALL/LC_MESSAGES/LANG ask for (adapter.i18n):
    the messages are translated, never the names, JSON or exit codes scripts rely on."""
    with installed():
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors are exit 2 already
        return int(exc.code or 0)
    _setup_logging(getattr(args, "log_level", None) or "INFO")
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(_("configuration error: {error}").format(error=exc), file=sys.stderr)
        return EXIT_USAGE
    except AdapterError as exc:
        print(_("error: {error}").format(error=exc), file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(_("I/O error: {error}").format(error=exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `… | head`: the reader has all it wanted
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
