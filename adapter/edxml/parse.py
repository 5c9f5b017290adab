"""Read an edXML packet: safe parse, schema, then the rules the schema cannot say.

Every rejection names the element and its line. What real packets get wrong but can be
lived with (malformed organisation ids when tolerated, a manifest that calls a ZIP a PDF,
an empty ResponseFor) becomes a warning on the result instead.

Fields are read only from the tree signature verification hands back (signature.py): the
signed content when there is a signature that matched, otherwise the packet without its
comments; and a field's text is all of its text, never the part before a comment or a
processing instruction.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from functools import cache
from pathlib import Path

from lxml import etree

from adapter.edxml.attachments import (
    ZipKept,
    ZipLimits,
    ZipRefused,
    library_zipped,
    unpack_library_zip,
)
from adapter.edxml.model import (
    EDXML_NS,
    Attachment,
    Business,
    EdocDocument,
    Organization,
    ParsedEdxml,
    ResponseFor,
    SignatureOutcome,
    StatusPacket,
)
from adapter.edxml.signature import EdxmlVerification, unverified_edxml
from adapter.errors import PacketError
from adapter.xml.safe import parse_untrusted
from adapter.xml.schema import SCHEMA_DIR, SchemaRegistry

E = f"{{{EDXML_NS}}}"
DEFAULT_ZIP_LIMITS = ZipLimits()
STRICT_ORGAN_ID = re.compile(r"\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}")
_ORG_FIELDS = {"OrganId": "organ_id", "OrganName": "name", "OrganizationInCharge": "in_charge",
               "OrganAdd": "address", "Email": "email", "Telephone": "telephone", "Fax": "fax",
               "Website": "website"}


class EdxmlError(PacketError):
    """The packet breaks a rule of QCVN 102:2016 that the adapter enforces."""


@cache
def edxml_schema() -> SchemaRegistry:
    return SchemaRegistry([Path(SCHEMA_DIR) / "edxml" / "edxml.xsd"])


def detect_type(data: bytes) -> str:
    """What the bytes are, whatever the manifest says."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return "application/zip"
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        return "application/msword"
    return "application/octet-stream"


def full_text(el: etree._Element | None) -> str:
    """An element's whole text, stripped: what lxml's `.text` gives only up to the first
    comment or processing instruction inside it (the schema allows no child elements in
    the fields read this way)."""
    return "" if el is None else "".join(el.itertext()).strip()


class _Reader:
    def __init__(self, name: str, tolerant_ids: bool) -> None:
        self.name, self.tolerant_ids = name, tolerant_ids
        self.warnings: list[str] = []

    def fail(self, el: etree._Element | None, reason: str) -> EdxmlError:
        where = None
        if el is not None:
            where = f"element {etree.QName(el).localname} (line {el.sourceline})"
        return EdxmlError(reason, packet=self.name, where=where)

    @staticmethod
    def text(el: etree._Element | None, tag: str) -> str:
        if el is None:
            return ""
        return full_text(el.find(E + tag))

    def organ_id(self, el: etree._Element, value: str) -> str:
        if not STRICT_ORGAN_ID.fullmatch(value):
            msg = f"organisation id {value!r} is not of the form NNN.NN.NN.XNN"
            if not self.tolerant_ids:
                raise self.fail(el, msg)
            self.warnings.append(f"line {el.sourceline}: {msg} (tolerated)")
        return value

    def organization(self, el: etree._Element) -> Organization:
        values = {attr: self.text(el, tag) for tag, attr in _ORG_FIELDS.items()}
        if not values["organ_id"]:
            raise self.fail(el, "OrganId is required")
        self.organ_id(el.find(E + "OrganId"), values["organ_id"])
        return Organization(**values)

    def date(self, el: etree._Element | None, value: str, what: str, *,
             not_future: bool = False) -> str:
        try:
            d = dt.datetime.strptime(value, "%Y/%m/%d").date()
        except ValueError:
            raise self.fail(el, f"{what} {value!r} is not a date (yyyy/MM/dd)") from None
        if not_future and d > dt.date.today():
            raise self.fail(el, f"{what} {value} lies in the future")
        return value


def parse_edxml(data: bytes, *, name: str = "<edxml>", tolerant_ids: bool = False,
                signature: SignatureOutcome | None = None,
                zip_limits: ZipLimits = DEFAULT_ZIP_LIMITS) -> ParsedEdxml:
    """Parse and check one edXML packet whose signature is not verified here: `signature`
    is the outcome when the caller verified it (otherwise recorded as not checked), and the
    fields are read from the packet without its comments. Callers that verify should use
    `read_edxml(verify_edxml(...))`, which reads from the signed content itself."""
    root = parse_untrusted(data, name=name)
    return read_edxml(unverified_edxml(root, signature or SignatureOutcome("not checked")),
                      name=name, tolerant_ids=tolerant_ids, zip_limits=zip_limits)


def read_edxml(verified: EdxmlVerification, *, name: str = "<edxml>",
               tolerant_ids: bool = False,
               zip_limits: ZipLimits = DEFAULT_ZIP_LIMITS) -> ParsedEdxml:
    """Check one edXML packet and read it from `verified.tree` (see signature.py), the only
    tree fields are taken from. Attachments the sender's library zipped are returned
    unpacked, within `zip_limits` (attachments.py)."""
    root = verified.tree
    if root.tag != E + "edXML":
        raise EdxmlError(f"root element is <{root.tag}>, not edXML in {EDXML_NS}",
                         packet=name, where="line 1")
    edxml_schema().check(root, packet=name)
    r = _Reader(name, tolerant_ids)
    header = root.find(f"{E}edXMLEnvelope/{E}edXMLHeader")
    mh = header.find(E + "MessageHeader")
    froms = mh.findall(E + "From")
    if len(froms) != 1:
        raise r.fail(mh, f"exactly one From is required, found {len(froms)}")
    sender = r.organization(froms[0])
    sig = verified.outcome
    if mh.find(E + "StatusCode") is not None:
        return ParsedEdxml("status", _status(r, mh, sender), sig, r.warnings)
    document = _document(r, root, header, mh, sender, zip_limits)
    return ParsedEdxml("edoc", document, sig, r.warnings)


def _response_for(r: _Reader, el: etree._Element) -> ResponseFor | None:
    values = [r.text(el, t) for t in ("OrganId", "Code", "PromulgationDate", "DocumentId")]
    if not any(values):
        r.warnings.append(f"line {el.sourceline}: empty ResponseFor ignored")
        return None
    organ, code, date, doc_id = values
    if not doc_id:
        raise r.fail(el, "ResponseFor needs a DocumentId")
    if organ:
        r.organ_id(el.find(E + "OrganId"), organ)
    if date:
        r.date(el.find(E + "PromulgationDate"), date, "ResponseFor PromulgationDate")
    return ResponseFor(organ, code, date, doc_id)


def _status(r: _Reader, mh: etree._Element, sender: Organization) -> StatusPacket:
    rf = [x for x in (_response_for(r, e) for e in mh.findall(E + "ResponseFor")) if x]
    if len(rf) != 1:
        raise r.fail(mh, "a status packet names exactly one document in ResponseFor")
    ts = r.text(mh, "Timestamp")
    if not ts:
        raise r.fail(mh, "a status packet needs a Timestamp")
    try:
        dt.datetime.strptime(ts, "%Y/%m/%d %H:%M:%S")
    except ValueError:
        raise r.fail(mh.find(E + "Timestamp"), f"Timestamp {ts!r} is not a time") from None
    staff_el = mh.find(E + "StaffInfo")
    staff = {etree.QName(c).localname: full_text(c)
             for c in (staff_el if staff_el is not None else []) if isinstance(c.tag, str)}
    return StatusPacket(sender, rf[0], r.text(mh, "StatusCode"), r.text(mh, "Description"), ts,
                        staff)


def _trace(r: _Reader, trace_list) -> tuple[list[tuple[str, str]], list[str]]:
    """The hops; one the axis added in transit without an organisation (no OrganId, or the
    text "null") is kept with OrganId "" and flagged, not refused."""
    trace: list[tuple[str, str]] = []
    flags: list[str] = []
    hops = trace_list.findall(E + "TraceHeader") if trace_list is not None else []
    for n, th in enumerate(hops, 1):
        organ = th.find(E + "OrganId")
        value = r.text(th, "OrganId")
        if organ is None or not value or value.lower() == "null":
            what = "no OrganId" if organ is None or not value else f"OrganId {value!r}"
            flag = (f"line {th.sourceline}: TraceHeader {n} has {what} (a hop added in "
                    "transit): kept, flagged")
            flags.append(flag)
            r.warnings.append(flag)
            value = ""
        else:
            r.organ_id(organ, value)
        trace.append((value, r.text(th, "Timestamp")))
    return trace, flags


def _document(r: _Reader, root, header, mh, sender: Organization,
              zip_limits: ZipLimits) -> EdocDocument:
    tos = [r.organization(t) for t in mh.findall(E + "To")]
    if not tos:
        raise r.fail(mh, "at least one To is required")
    ids = [t.organ_id for t in tos]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise r.fail(mh, f"recipient {dupes[0]} appears more than once in To")
    for t, el in zip(tos, mh.findall(E + "To"), strict=True):
        if not t.name or not t.address:
            raise r.fail(el, f"recipient {t.organ_id} needs OrganName and OrganAdd")
    if not sender.name:
        raise r.fail(mh.find(E + "From"), "From needs an OrganName")
    doc_id = r.text(mh, "DocumentId")
    if not doc_id:
        raise r.fail(mh, "DocumentId is required")
    code = mh.find(E + "Code")
    number, notation = r.text(code, "CodeNumber"), r.text(code, "CodeNotation")
    if code is None or not number or not notation:
        raise r.fail(code if code is not None else mh, "Code needs CodeNumber and CodeNotation")
    prom = mh.find(E + "PromulgationInfo")
    if prom is None:
        raise r.fail(mh, "PromulgationInfo is required")
    prom_date = r.date(prom.find(E + "PromulgationDate"), r.text(prom, "PromulgationDate"),
                       "PromulgationDate", not_future=True)
    dtype = mh.find(E + "DocumentType")
    if dtype is None or not r.text(dtype, "Type") or not r.text(dtype, "TypeName"):
        raise r.fail(dtype if dtype is not None else mh, "DocumentType needs Type and TypeName")
    if r.text(dtype, "Type") not in ("1", "2"):
        r.warnings.append(f"line {dtype.sourceline}: DocumentType/Type "
                          f"{r.text(dtype, 'Type')!r} is neither 1 nor 2")
    subject, content = r.text(mh, "Subject"), r.text(mh, "Content")
    if not subject or not content:
        raise r.fail(mh, "Subject and Content are required")
    expected_prefix = f"{sender.organ_id},"
    if not doc_id.startswith(expected_prefix):
        r.warnings.append(f"DocumentId {doc_id!r} does not follow "
                          "{sender OrganId},{yyyy/MM/dd},{CodeNumber}/{CodeNotation}")
    trace_list = header.find(E + "TraceHeaderList")
    trace, trace_flags = _trace(r, trace_list)
    if not trace:
        raise r.fail(header, "at least one TraceHeader is required")
    business = None
    buses = trace_list.findall(E + "Bussiness")
    if len(buses) > 1:
        raise r.fail(buses[1], "TraceHeaderList holds more than one Bussiness")
    if buses:
        bus = buses[0]
        business = Business(r.text(bus, "BussinessDocType"), r.text(bus, "DocumentId"),
                            r.text(bus, "BussinessDocReason"))
    signer = mh.find(E + "SignerInfo")
    other = mh.find(E + "OtherInfo")
    due = r.text(mh, "DueDate")
    if due:
        r.date(mh.find(E + "DueDate"), due, "DueDate")
    places = mh.find(E + "ToPlaces")
    return EdocDocument(
        sender=sender, recipients=tos, document_id=doc_id, code_number=number,
        code_notation=notation, place=r.text(prom, "Place"), promulgation_date=prom_date,
        doc_type=r.text(dtype, "Type"), type_detail=r.text(dtype, "TypeDetail"),
        type_name=r.text(dtype, "TypeName"), subject=subject, content=content,
        signer_competence=r.text(signer, "Competence"), signer_position=r.text(signer, "Position"),
        signer_name=r.text(signer, "FullName"), due_date=due,
        priority=r.text(other, "Priority"), steering_type=r.text(mh, "SteeringType"),
        response_for=[x for x in (_response_for(r, e) for e in mh.findall(E + "ResponseFor"))
                      if x],
        to_places=[full_text(p) for p in (places if places is not None else [])
                   if isinstance(p.tag, str)],
        trace=trace, trace_flags=trace_flags, business=business,
        attachments=_attachments(r, root, zip_limits))


def _attachments(r: _Reader, root, zip_limits: ZipLimits) -> list[Attachment]:
    manifest = {r.text(ref, "ContentId"): ref for ref in root.iterfind(
        f"{E}edXMLEnvelope/{E}edXMLBody/{E}edXMLManifest/{E}Reference")}
    out = []
    for att in root.iterfind(f"{E}AttachmentEncoded/{E}Attachment"):
        cid = r.text(att, "ContentId")
        encoded = att.find(E + "ContentTransferEncoded")
        try:
            if encoded is None:
                raise ValueError("no ContentTransferEncoded")
            data = base64.b64decode("".join("".join(encoded.itertext()).split()),
                                    validate=True)
        except (binascii.Error, ValueError):
            raise r.fail(encoded if encoded is not None else att,
                         f"attachment {cid or '?'} is not base64") from None
        declared = r.text(att, "ContentType") or r.text(manifest.get(cid), "ContentType")
        name = r.text(att, "AttachmentName")
        entry = ""
        if library_zipped(declared, name, data):
            try:
                entry, data = unpack_library_zip(data, zip_limits)
            except ZipRefused as exc:
                raise r.fail(att, f"attachment {cid or '?'} ({name}): {exc}") from None
            except ZipKept as exc:
                r.warnings.append(f"attachment {cid} ({name}): {exc}: kept as received")
            else:
                r.warnings.append(f"attachment {cid} ({name}): unpacked from the sender's zip "
                                  f"(entry {entry!r}, {len(data)} bytes)")
        detected = detect_type(data)
        if declared and declared != detected and not entry:
            r.warnings.append(f"attachment {cid}: declared {declared}, content is {detected}")
        out.append(Attachment(cid, name, r.text(att, "Description"), declared, data, detected,
                              entry))
    missing = sorted(set(manifest) - {a.content_id for a in out})
    if missing:
        raise r.fail(root.find(f"{E}edXMLEnvelope/{E}edXMLBody/{E}edXMLManifest"),
                     f"manifest names attachment {missing[0]} that the packet does not carry")
    return out
