"""The simulated register of judgment debtors without conditions to pay (QĐ 498).

What the ministry's register would refuse, written from the packet's meaning, never from
the adapter's code: a withdrawal (`rut`) for an entry it never held, a notice older than or
as old as the one it holds (versions come in order; gaps are allowed, since a source may
change twice between two reads), an update of a withdrawn entry (it must be published
again), and a withdrawal that does not say why. A resend of a notice already accepted is
a duplicate, never a refusal. The entries are kept in the simulator's own SQLite file, so
they survive a restart as the accepted packets do.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from lxml import etree

PKT_NS = "urn:thads-adapter:exchange:1"
N = f"{{{PKT_NS}}}"
#: the root element of a register notice
ENTRY = f"{N}DebtorEntry"
PUBLISH, UPDATE, WITHDRAW = "cong-bo", "cap-nhat", "rut"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS debtor_register (
  entry_id TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  action TEXT NOT NULL,
  office TEXT NOT NULL,
  packet_id TEXT NOT NULL
);
"""

T = TypeVar("T")


class DebtorRegister:
    """Entries by id: the last version accepted and what it did."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        #: one notice at a time: the check and the store must see the same register
        self.lock = threading.Lock()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            c.execute("PRAGMA busy_timeout=60000")
            self._local.conn = c
        return c

    def accept(self, root: etree._Element, packet_id: str, *, known: Callable[[], bool],
               store: Callable[[], T], refuse: Callable[[str], T]) -> T:
        """Check the notice against the register, store it (`store`) and record it, as one
        step; `known()` says the platform already holds this very packet (a resend)."""
        with self.lock:
            if known():
                return store()  # the original receipt comes back; the register is as it was
            problem = self.problem(root)
            if problem:
                return refuse(problem)
            stored = store()
            self._record(root, packet_id)
            return stored

    def problem(self, root: etree._Element) -> str | None:
        entry = (root.findtext(f"{N}EntryId") or "").strip()
        action = (root.findtext(f"{N}Action") or "").strip()
        version = int(root.findtext(f"{N}Header/{N}Version") or 0)
        held = self._conn().execute("SELECT version, action FROM debtor_register "
                                    "WHERE entry_id=?", (entry,)).fetchone()
        if action == WITHDRAW and not (root.findtext(f"{N}ActionReason") or "").strip():
            return f"entry {entry} version {version}: a withdrawal must give its reason"
        if held is None:
            if action == WITHDRAW:
                return (f"entry {entry} version {version}: withdrawal of an entry the register "
                        "never published")
            return None
        if version <= held[0]:
            return (f"entry {entry}: version {version} arrived after version {held[0]}; "
                    "notices must come in version order")
        if held[1] == WITHDRAW and action == UPDATE:
            return (f"entry {entry} version {version}: update of an entry withdrawn at version "
                    f"{held[0]}; publish it again instead")
        return None

    def _record(self, root: etree._Element, packet_id: str) -> None:
        self._conn().execute(
            "INSERT INTO debtor_register VALUES (?,?,?,?,?) ON CONFLICT(entry_id) DO UPDATE "
            "SET version=excluded.version, action=excluded.action, office=excluded.office, "
            "packet_id=excluded.packet_id",
            ((root.findtext(f"{N}EntryId") or "").strip(),
             int(root.findtext(f"{N}Header/{N}Version") or 0),
             (root.findtext(f"{N}Action") or "").strip(),
             (root.findtext(f"{N}OfficeCode") or "").strip(), packet_id))

    def summary(self) -> dict[str, int]:
        """Entries by their last action: how many the register shows and has withdrawn."""
        rows = self._conn().execute(
            "SELECT action, count(*) FROM debtor_register GROUP BY action").fetchall()
        return {action: n for action, n in rows}
