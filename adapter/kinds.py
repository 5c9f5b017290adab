"""The packet-kind registry: what each kind of packet is made of and how it travels.

Every decision that depends on the kind of a packet (which source table and key column,
which mapping file and XSD, which channel in which direction, where its recipient comes
from, which child rows belong to a record) is read from one entry here, so adding a kind
is one mapping file, one XSD type and one `KindSpec` (see docs/extending.md). The module
imports nothing of ours: settings, sources, mapping and engine all look kinds up here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS_DIR = ROOT / "mappings"
SCHEMAS_DIR = ROOT / "schemas"

Direction = Literal["out", "in"]
#: transports a route can use; adding one is described in docs/extending.md.
CHANNELS: tuple[str, ...] = ("lgsp", "axis")
#: how a record becomes a packet: through its declarative mapping (THADS packets), or as an
#: edXML document or status packet (QCVN 102:2016, built by adapter.edxml).
Builder = Literal["mapped", "edxml-document", "edxml-status"]
#: where an outbound packet's recipient comes from: the route's `recipient`, the route's
#: `recipients` (several agencies), or the record itself (answers to a received document).
Addressing = Literal["recipient", "recipients", "record"]


@dataclass(frozen=True)
class ChildRows:
    """Rows of another table that belong to one record (a case's parties)."""

    #: the record key the rows are put under (the mapping's `rows:`).
    name: str
    table: str
    #: the child table's column that references the record's `id`.
    foreign_key: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Lookup:
    """One column of a referenced row, copied into the record (a receipt's case code)."""

    #: the record key the value is put under.
    name: str
    table: str
    column: str
    #: the record's column that references `table.id`.
    via: str
    #: an enforcement database without the column gives None (a route that addresses by
    #: the field then rejects the record, naming it) instead of failing every read.
    optional: bool = False


@dataclass(frozen=True)
class KindSpec:
    """One packet kind. Paths are relative to mappings/ and schemas/, or absolute."""

    name: str
    #: the source table (rows with `id`, `updated_at` and `version`) and its business key.
    table: str
    key: str
    #: channel per direction; None: the kind does not travel that way.
    outbound: str | None = None
    inbound: str | None = None
    builder: Builder = "mapped"
    #: mapping file (builder "mapped"), and the XSD declaring the mapping's root element.
    mapping: str | Path | None = None
    schema: str | Path | None = None
    addressing: Addressing = "recipient"
    #: the column whose value is the packet's version (one packet per record and version).
    version_column: str = "version"
    children: tuple[ChildRows, ...] = ()
    lookups: tuple[Lookup, ...] = ()

    def channel(self, direction: str) -> str | None:
        return self.outbound if direction == "out" else self.inbound

    @property
    def made_on_receipt(self) -> bool:
        """Some of its outbound packets are made when a document is received (the 01/03
        status replies, axis_inbound), outside its route's rounds and cursor."""
        return self.builder == "edxml-status"

    def directions(self) -> list[str]:
        return [d for d in ("out", "in") if self.channel(d)]

    def mapping_path(self) -> Path | None:
        return None if self.mapping is None else MAPPINGS_DIR / self.mapping

    def schema_path(self) -> Path | None:
        return None if self.schema is None else SCHEMAS_DIR / self.schema


class UnknownKind(KeyError):
    """A kind no registry entry describes; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


class KindRegistry:
    """Packet kinds by name; immutable, so every process and thread may share one."""

    def __init__(self, specs: Iterable[KindSpec]) -> None:
        self._specs: dict[str, KindSpec] = {}
        for s in specs:
            if s.name in self._specs:
                raise ValueError(f"packet kind {s.name!r} is registered twice")
            for d in s.directions():
                if s.channel(d) not in CHANNELS:
                    raise ValueError(f"packet kind {s.name!r}: unknown channel "
                                     f"{s.channel(d)!r} (known: {', '.join(CHANNELS)})")
            if s.builder == "mapped" and (s.mapping is None or s.schema is None):
                raise ValueError(f"packet kind {s.name!r}: a mapped kind needs a mapping file "
                                 "and a schema")
            self._specs[s.name] = s

    def __getitem__(self, name: str) -> KindSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownKind(f"unknown packet kind {name!r}: known kinds are "
                              f"{self.names_text()}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[KindSpec]:
        return iter(self._specs.values())

    def names(self) -> list[str]:
        return list(self._specs)

    def names_text(self) -> str:
        quoted = [repr(n) for n in self._specs]
        return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"

    def mapped(self) -> list[KindSpec]:
        """Kinds built and read through a declarative mapping (THADS packets)."""
        return [s for s in self._specs.values() if s.builder == "mapped"]

    def with_kinds(self, *specs: KindSpec) -> KindRegistry:
        """This registry plus more kinds (tests, and deployments with kinds of their own)."""
        return KindRegistry([*self._specs.values(), *specs])


_PARTIES = ("role", "kind", "full_name", "citizen_id", "tax_code", "birth_date", "address")
_OBLIGATIONS = ("type", "amount", "asset_description")


def _parties_and_obligations(foreign_key: str) -> tuple[ChildRows, ...]:
    return (ChildRows("parties", "parties", foreign_key, _PARTIES),
            ChildRows("obligations", "obligations", foreign_key, _OBLIGATIONS))


#: the kinds this adapter exchanges.
KINDS = KindRegistry([
    KindSpec("case", table="cases", key="case_code", outbound="lgsp",
             mapping="case.yaml", schema="thads/exchange.xsd",
             children=_parties_and_obligations("case_id")),
    KindSpec("receipt", table="receipts", key="receipt_code", outbound="lgsp",
             mapping="receipt.yaml", schema="thads/exchange.xsd",
             lookups=(Lookup("case_code", "cases", "case_code", via="case_id"),)),
    KindSpec("judgment", table="judgments", key="judgment_code", inbound="lgsp",
             mapping="judgment.yaml", schema="thads/exchange.xsd",
             children=_parties_and_obligations("judgment_id")),
    # enforcement decisions leave as edXML documents; received documents (and the status
    # packets answering ours) arrive over the same axis.
    KindSpec("edoc", table="decisions", key="decision_code", outbound="axis", inbound="axis",
             builder="edxml-document", addressing="recipients",
             # the court that judged and the procuracy supervising the case: recipients a
             # route may address by (`recipient_fields`, docs/debtor-register.md)
             lookups=(Lookup("court_org_id", "cases", "court_org_id", via="case_id"),
                      Lookup("procuracy_org_id", "cases", "procuracy_org_id",
                             via="case_id", optional=True))),
    # one status packet per received document and progress code (04, 05, 06).
    KindSpec("status", table="received_documents", key="document_id", outbound="axis",
             builder="edxml-status", addressing="record", version_column="progress"),
    # the register of debtors without conditions to pay (QĐ 498): one row per notice.
    KindSpec("debtor", table="debtor_entries", key="entry_code", outbound="lgsp",
             mapping="debtor.yaml", schema="thads/debtor.xsd",
             lookups=(Lookup("case_code", "cases", "case_code", via="case_id"),)),
])
