"""A demo schema of the enforcement databases: cases, parties, obligations, judgments,
receipts, enforcement decisions, received documents and the register of debtors without
conditions to pay.

Real deployments point the adapter at the ministry's own databases through the same
change-capture contract (rows with `updated_at` and `version`); this schema is what the demo,
the tests and the benchmarks generate.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class SourceBase(DeclarativeBase):
    pass


class _Changed:
    """Change marker: every write bumps `version` and sets `updated_at` (local time)."""

    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)


class CaseRow(_Changed, SourceBase):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_code: Mapped[str] = mapped_column(String(40), unique=True)
    acceptance_no: Mapped[str | None] = mapped_column(String(40))
    acceptance_date: Mapped[dt.date | None] = mapped_column(Date)
    office_code: Mapped[str | None] = mapped_column(String(20))
    kind: Mapped[str | None] = mapped_column(String(4))
    decision_no: Mapped[str | None] = mapped_column(String(60))
    decision_date: Mapped[dt.date | None] = mapped_column(Date)
    judgment_no: Mapped[str | None] = mapped_column(String(60))
    judgment_date: Mapped[dt.date | None] = mapped_column(Date)
    court_code: Mapped[str | None] = mapped_column(String(40))
    court_name: Mapped[str | None] = mapped_column(String(200))
    #: the QCVN 102 id of the court that judged: where enforcement decisions are sent
    court_org_id: Mapped[str | None] = mapped_column(String(20))
    #: the QCVN 102 id of the procuracy (Viện kiểm sát) that supervises the case's
    #: enforcement: decisions are shared with it as well
    procuracy_org_id: Mapped[str | None] = mapped_column(String(20))
    officer: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str | None] = mapped_column(String(8))
    collected_amount: Mapped[int | None] = mapped_column(BigInteger)
    __table_args__ = (Index("ix_cases_changed", "updated_at", "id"),)


class JudgmentRow(_Changed, SourceBase):
    __tablename__ = "judgments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    judgment_code: Mapped[str] = mapped_column(String(40), unique=True)
    court_code: Mapped[str | None] = mapped_column(String(40))
    court_name: Mapped[str | None] = mapped_column(String(200))
    number: Mapped[str | None] = mapped_column(String(60))
    issued_date: Mapped[dt.date | None] = mapped_column(Date)
    effective_date: Mapped[dt.date | None] = mapped_column(Date)
    case_type: Mapped[str | None] = mapped_column(String(8))
    instance: Mapped[str | None] = mapped_column(String(8))
    summary: Mapped[str | None] = mapped_column(Text)
    document_name: Mapped[str | None] = mapped_column(String(200))
    document_media_type: Mapped[str | None] = mapped_column(String(60))
    document_sha256: Mapped[str | None] = mapped_column(String(64))
    document: Mapped[bytes | None] = mapped_column(LargeBinary)
    __table_args__ = (Index("ix_judgments_changed", "updated_at", "id"),)


class PartyRow(SourceBase):
    __tablename__ = "parties"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    judgment_id: Mapped[int | None] = mapped_column(ForeignKey("judgments.id"), index=True)
    role: Mapped[str | None] = mapped_column(String(8))
    kind: Mapped[str | None] = mapped_column(String(4))
    full_name: Mapped[str | None] = mapped_column(String(200))
    citizen_id: Mapped[str | None] = mapped_column(String(20))
    tax_code: Mapped[str | None] = mapped_column(String(20))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    address: Mapped[str | None] = mapped_column(String(300))


class ObligationRow(SourceBase):
    __tablename__ = "obligations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    judgment_id: Mapped[int | None] = mapped_column(ForeignKey("judgments.id"), index=True)
    type: Mapped[str | None] = mapped_column(String(4))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    asset_description: Mapped[str | None] = mapped_column(String(500))


class ReceiptRow(_Changed, SourceBase):
    __tablename__ = "receipts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt_code: Mapped[str] = mapped_column(String(40), unique=True)
    form_code: Mapped[str | None] = mapped_column(String(20))
    series: Mapped[str | None] = mapped_column(String(20))
    number: Mapped[str | None] = mapped_column(String(12))
    issued_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    office_code: Mapped[str | None] = mapped_column(String(20))
    payer_name: Mapped[str | None] = mapped_column(String(200))
    payer_address: Mapped[str | None] = mapped_column(String(300))
    payer_citizen_id: Mapped[str | None] = mapped_column(String(20))
    payer_tax_code: Mapped[str | None] = mapped_column(String(20))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    amount_words: Mapped[str | None] = mapped_column(String(400))
    kind: Mapped[str | None] = mapped_column(String(8))
    method: Mapped[str | None] = mapped_column(String(4))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    court_case_code: Mapped[str | None] = mapped_column(String(40))
    collector: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str | None] = mapped_column(String(4))
    status_reason: Mapped[str | None] = mapped_column(String(300))
    replaces_code: Mapped[str | None] = mapped_column(String(40))
    __table_args__ = (Index("ix_receipts_changed", "updated_at", "id"),)


class DecisionRow(_Changed, SourceBase):
    """An enforcement decision (quyết định thi hành án) that leaves over the document axis."""

    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    decision_code: Mapped[str] = mapped_column(String(40), unique=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    code_number: Mapped[str | None] = mapped_column(String(20))
    code_notation: Mapped[str | None] = mapped_column(String(60))
    decision_date: Mapped[dt.date | None] = mapped_column(Date)
    place: Mapped[str | None] = mapped_column(String(100))
    type_name: Mapped[str | None] = mapped_column(String(100))
    subject: Mapped[str | None] = mapped_column(String(500))
    content: Mapped[str | None] = mapped_column(Text)
    signer_competence: Mapped[str | None] = mapped_column(String(100))
    signer_position: Mapped[str | None] = mapped_column(String(100))
    signer_name: Mapped[str | None] = mapped_column(String(100))
    document_name: Mapped[str | None] = mapped_column(String(200))
    document: Mapped[bytes | None] = mapped_column(LargeBinary)
    __table_args__ = (Index("ix_decisions_changed", "updated_at", "id"),)


class ReceivedDocumentRow(_Changed, SourceBase):
    """A document received over the axis, and how far the office has got with it: the
    clerk's software moves `progress` through 04, 05, 06 and the adapter reports each.
    Text columns hold what edXML allows (up to 4000 characters per element), so a
    schema-valid document always fits."""

    __tablename__ = "received_documents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(String(200), unique=True)
    sender: Mapped[str] = mapped_column(String(40))
    sender_name: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(Text)
    promulgation_date: Mapped[str | None] = mapped_column(String(10))
    subject: Mapped[str | None] = mapped_column(Text)
    content: Mapped[str | None] = mapped_column(Text)
    signer_name: Mapped[str | None] = mapped_column(Text)
    attachment_name: Mapped[str | None] = mapped_column(Text)
    attachment_type: Mapped[str | None] = mapped_column(String(60))
    attachment: Mapped[bytes | None] = mapped_column(LargeBinary)
    signature: Mapped[str | None] = mapped_column(String(12))
    progress: Mapped[str] = mapped_column(String(2))
    progress_note: Mapped[str | None] = mapped_column(String(500))
    __table_args__ = (Index("ix_received_documents_changed", "updated_at", "id"),)


class DebtorEntryRow(_Changed, SourceBase):
    """A notice to the register of judgment debtors without conditions to pay (QĐ 498):
    one row per version of an entry, never edited afterwards, so that the publish, every
    update and the withdrawal each travel, in order. The debtor is a person (name, citizen
    id, birth date) or an organisation (name, tax code); `phone` and `verification_note`
    are the office's own and are not mapped (docs/debtor-register.md)."""

    __tablename__ = "debtor_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_code: Mapped[str] = mapped_column(String(40))
    action: Mapped[str | None] = mapped_column(String(4))
    action_reason: Mapped[str | None] = mapped_column(String(300))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    office_code: Mapped[str | None] = mapped_column(String(20))
    person_name: Mapped[str | None] = mapped_column(String(200))
    citizen_id: Mapped[str | None] = mapped_column(String(20))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    organisation_name: Mapped[str | None] = mapped_column(String(200))
    tax_code: Mapped[str | None] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(300))
    phone: Mapped[str | None] = mapped_column(String(20))
    judgment_no: Mapped[str | None] = mapped_column(String(60))
    judgment_date: Mapped[dt.date | None] = mapped_column(Date)
    court_name: Mapped[str | None] = mapped_column(String(200))
    obligation_type: Mapped[str | None] = mapped_column(String(4))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    amount_words: Mapped[str | None] = mapped_column(String(400))
    finding_no: Mapped[str | None] = mapped_column(String(60))
    finding_date: Mapped[dt.date | None] = mapped_column(Date)
    ground: Mapped[str | None] = mapped_column(String(2))
    verified_on: Mapped[dt.date | None] = mapped_column(Date)
    next_verification_on: Mapped[dt.date | None] = mapped_column(Date)
    verification_note: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (UniqueConstraint("entry_code", "version", name="uq_debtor_entry_version"),
                      Index("ix_debtor_entries_changed", "updated_at", "id"))


def source_table(engine: Engine, reflected: MetaData, name: str) -> Table:
    """The demo schema's table, or the enforcement database's own, reflected once into
    `reflected` (the ministry's tables need no model class here)."""
    known = SourceBase.metadata.tables.get(name)
    if known is not None:
        return known
    if name not in reflected.tables:
        Table(name, reflected, autoload_with=engine)
    return reflected.tables[name]
