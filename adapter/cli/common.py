"""Helpers shared by the commands: settings loading and table printing for 80 columns."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from adapter.config import Settings, load_settings


def settings_of(args) -> Settings:
    return load_settings(args.config)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, width: int = 80) -> None:
    """A plain table that fits `width` columns: the widest column is shortened first."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    while sum(widths) + 2 * (len(widths) - 1) > width and max(widths) > 8:
        widths[widths.index(max(widths))] -= 1
    for n, r in enumerate(cells):
        line = "  ".join((c if len(c) <= w else c[: w - 1] + "…").ljust(w)
                         for c, w in zip(r, widths, strict=True))
        print(line.rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def print_field(label: str, value: object, *, width: int = 80) -> None:
    """`label:  value`, wrapped under the value's column so nothing passes `width`."""
    import textwrap

    head = f"{label + ':':<17}"
    print(textwrap.fill(str(value), width=width, initial_indent=head,
                        subsequent_indent=" " * len(head), break_long_words=True))
