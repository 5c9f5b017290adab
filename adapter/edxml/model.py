"""edXML packets as plain data: a document (edoc) or a status packet."""

from __future__ import annotations

from dataclasses import dataclass, field

EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"

STATUS_CODES = {
    "01": "arrived, not yet handled by the clerk",
    "02": "rejected",
    "03": "accepted and registered",
    "04": "assigned for handling",
    "05": "being processed",
    "06": "finished",
    "13": "the sender asks to take the document back",
    "15": "the recipient agrees to the update or take-back",
    "16": "the recipient refuses it",
}
BUSINESS_DOC_TYPES = {"0": "new", "1": "revoke", "2": "update", "3": "replace"}


@dataclass
class Organization:
    organ_id: str
    name: str = ""
    in_charge: str = ""
    address: str = ""
    email: str = ""
    telephone: str = ""
    fax: str = ""
    website: str = ""


@dataclass
class ResponseFor:
    organ_id: str
    code: str
    promulgation_date: str
    document_id: str


@dataclass
class Attachment:
    content_id: str
    name: str
    description: str
    declared_type: str
    data: bytes
    #: what the bytes are, by their first bytes: application/pdf, application/zip, ...
    detected_type: str
    #: the zip entry `data` was unpacked from, when the sender's library zipped the file
    #: (the packet as received, zip included, stays in the evidence log)
    unpacked_from: str = ""


@dataclass
class Business:
    doc_type: str
    document_id: str = ""
    reason: str = ""


@dataclass
class EdocDocument:
    sender: Organization
    recipients: list[Organization]
    document_id: str
    code_number: str
    code_notation: str
    place: str
    promulgation_date: str
    doc_type: str
    type_detail: str
    type_name: str
    subject: str
    content: str
    signer_competence: str
    signer_position: str
    signer_name: str
    due_date: str
    priority: str
    steering_type: str
    response_for: list[ResponseFor] = field(default_factory=list)
    to_places: list[str] = field(default_factory=list)
    #: (OrganId, Timestamp) per hop; OrganId "" where a hop added in transit has none
    trace: list[tuple[str, str]] = field(default_factory=list)
    #: one note per hop kept although it names no organisation
    trace_flags: list[str] = field(default_factory=list)
    business: Business | None = None
    attachments: list[Attachment] = field(default_factory=list)


@dataclass
class StatusPacket:
    sender: Organization
    response_for: ResponseFor
    status_code: str
    description: str
    timestamp: str
    staff: dict[str, str] = field(default_factory=dict)

    @property
    def meaning(self) -> str:
        return STATUS_CODES.get(self.status_code, "unknown")


@dataclass
class SignatureOutcome:
    #: valid | invalid | absent | untrusted
    outcome: str
    detail: str = ""
    algorithm: str = ""
    signer: str = ""
    in_dsig_namespace: bool = True


@dataclass
class ParsedEdxml:
    kind: str  # "edoc" or "status"
    packet: EdocDocument | StatusPacket
    signature: SignatureOutcome
    warnings: list[str] = field(default_factory=list)

    def verdict(self, policy: str) -> tuple[bool, str]:
        """Accept or refuse under a peer's policy (reject | flag). Status packets usually
        travel unsigned, so an absent signature on one is not held against it."""
        outcome = self.signature.outcome
        if outcome == "valid" or (self.kind == "status" and outcome in ("absent",
                                                                        "not checked")):
            return True, "accepted"
        if policy == "flag":
            return True, f"accepted and flagged: signature {outcome}"
        return False, f"refused under policy 'reject': signature {outcome}" + (
            f" ({self.signature.detail})" if self.signature.detail else "")
