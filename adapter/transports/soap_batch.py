"""`SubmitPacketBatch` without zeep: the hot path of outbound delivery.

zeep builds the request through its object model and parses the answer into objects:
~0.13 ms of the main process per packet, which on 8 cores is a large part of what caps the
backfill. Here the request is a fixed envelope with the packet bytes base64-encoded, and
the answer is parsed by the one safe parser (adapter.xml.safe: no DTD, no entities, no
network, bounded size) and validated against the WSDL's own schema (compiled once, lxml)
before anything is read from it. SOAP faults are mapped exactly as the zeep path maps them.
zeep stays for the rare operations (status queries, inbound list/fetch/acknowledge).

The fast path is used only when the WSDL's batch operation has the shape of the project's
contract (schemas/wsdl/lgsp.wsdl); for any other WSDL the transport keeps zeep.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import requests
from lxml import etree

from adapter.errors import RejectedByPeer, TransportError, UnsafeXmlError
from adapter.transports.base import ItemOutcome, PlatformReceipt, SubmitItem
from adapter.xml.safe import parse_untrusted

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
_XS = "http://www.w3.org/2001/XMLSchema"
_WSDL = "http://schemas.xmlsoap.org/wsdl/"
#: the answer to 500 packets is a few hundred KB; anything far larger is not an answer
MAX_ANSWER_BYTES = 16 * 1024 * 1024
_ITEM_FIELDS = ("packetId", "kind", "sender", "packet")
_RECEIPT_FIELDS = ("platformMessageId", "packetId", "status", "receivedAt", "sha256")


class UnsupportedWsdl(Exception):
    """The WSDL's batch operation is not shaped like the contract: keep zeep."""


@dataclass(frozen=True)
class BatchOperation:
    """What the WSDL says about the batch call: where, which SOAPAction, which elements."""

    address: str
    soap_action: str
    request: etree.QName
    response: etree.QName
    #: the fault detail's namespace (PlatformFault)
    fault_ns: str

    @classmethod
    def from_zeep(cls, binding_operation, address: str, fault_ns: str) -> BatchOperation:
        """Read from zeep's parsed WSDL (once, at start) and check the contract's shape."""
        request = binding_operation.input.body
        response = binding_operation.output.body
        try:
            (item_name, item), = request.type.elements
            fields = [name for name, _ in item.type.elements]
            (result_name, _), = response.type.elements
        except (ValueError, AttributeError, TypeError):
            raise UnsupportedWsdl("batch request or response is not a list of items") from None
        if item_name != "item" or fields != list(_ITEM_FIELDS) or result_name != "result":
            raise UnsupportedWsdl(f"batch item fields {fields} differ from the contract's")
        return cls(address, binding_operation.soapaction or "", etree.QName(request.qname),
                   etree.QName(response.qname), fault_ns)


def wsdl_schema(wsdl: Path) -> etree.XMLSchema:
    """The XML Schema embedded in the WSDL's types, compiled once by libxml2."""
    root = parse_untrusted(wsdl.read_bytes(), name=str(wsdl))
    schemas = root.findall(f"{{{_WSDL}}}types/{{{_XS}}}schema")
    if len(schemas) != 1:
        raise UnsupportedWsdl(f"{len(schemas)} schemas in the WSDL's types, expected one")
    # a document of its own, declaring every namespace in scope in the WSDL: the schema's
    # QName values (type="tns:Receipt") use prefixes the WSDL's root declares
    src = schemas[0]
    schema = etree.Element(src.tag, attrib=dict(src.attrib), nsmap=src.nsmap)
    schema.extend(copy.deepcopy(child) for child in src)
    try:
        return etree.XMLSchema(schema)
    except etree.XMLSchemaParseError as exc:
        raise UnsupportedWsdl(f"the WSDL's schema does not compile: {exc}") from None


class BatchSubmitter:
    """Posts a fixed envelope; returns one outcome per item, in item order."""

    def __init__(self, session: requests.Session, operation: BatchOperation,
                 schema: etree.XMLSchema, timeout: tuple[float, float]) -> None:
        self.session, self.op, self.timeout = session, operation, timeout
        self._schema = schema
        #: validation reports its errors on the schema object: one validation at a time
        self._schema_lock = threading.Lock()
        ns = operation.request.namespace or ""
        self._head = (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            f'<soap-env:Envelope xmlns:soap-env="{SOAP_NS}"><soap-env:Body>'
            f'<ns0:{operation.request.localname} xmlns:ns0="{escape(ns, {chr(34): "&quot;"})}">'
        ).encode()
        self._tail = (f"</ns0:{operation.request.localname}></soap-env:Body>"
                      "</soap-env:Envelope>").encode()
        self._headers = {"Content-Type": "text/xml; charset=utf-8",
                         "SOAPAction": f'"{operation.soap_action}"'}
        rns = f"{{{operation.response.namespace}}}" if operation.response.namespace else ""
        self._result, self._packet_id = rns + "result", rns + "packetId"
        self._receipt, self._refusal = rns + "receipt", rns + "refusal"
        self._rns = rns

    def envelope(self, items: list[SubmitItem]) -> bytes:
        parts = [self._head]
        for it in items:
            parts.append(
                f"<ns0:item><ns0:packetId>{escape(it.packet_id)}</ns0:packetId>"
                f"<ns0:kind>{escape(it.kind)}</ns0:kind>"
                f"<ns0:sender>{escape(it.sender)}</ns0:sender><ns0:packet>".encode())
            parts.append(base64.b64encode(it.payload))
            parts.append(b"</ns0:packet></ns0:item>")
        parts.append(self._tail)
        return b"".join(parts)

    def submit_many(self, items: list[SubmitItem]) -> list[ItemOutcome]:
        """Per-item outcomes; raises TransportError or RejectedByPeer when the whole call
        failed (as the zeep path does)."""
        resp = post_envelope(self.session, self.op.address, self.envelope(items),
                             self._headers, self.timeout)
        return self.outcomes(items, resp.status_code, resp.content)

    def outcomes(self, items: list[SubmitItem], status: int, content: bytes
                 ) -> list[ItemOutcome]:
        """The platform's answer (HTTP status and body) as one outcome per item."""
        answer = self.answer(status, content)
        by_id = {r.findtext(self._packet_id): r for r in answer.iterchildren(self._result)}
        out: list[ItemOutcome] = []
        for it in items:
            r = by_id.get(it.packet_id)
            if r is None:
                out.append(TransportError("platform answered nothing for this packet"))
            elif (receipt := r.find(self._receipt)) is not None:
                out.append(self._platform_receipt(receipt))
            else:
                refusal = r.find(self._refusal)
                code = refusal.findtext(self._rns + "code")
                reason = refusal.findtext(self._rns + "reason")
                if _boolean(refusal.findtext(self._rns + "retryable")):
                    out.append(TransportError(f"platform refusal {code}: {reason}"))
                else:
                    out.append(RejectedByPeer(reason or "", code))
        return out

    def answer(self, status: int, content: bytes) -> etree._Element:
        """The response element, checked: safe to parse, a SOAP envelope, not a fault,
        valid against the WSDL's schema. Anything else raises with the reason."""
        if not content:
            raise TransportError(f"HTTP {status} from platform (no content)")
        try:
            envelope = parse_untrusted(content, name="platform answer",
                                       max_bytes=MAX_ANSWER_BYTES)
        except UnsafeXmlError as exc:
            raise TransportError(f"unreadable answer from platform: {exc}") from None
        if envelope.tag != f"{{{SOAP_NS}}}Envelope":
            raise TransportError(f"unreadable answer from platform: root element "
                                 f"{envelope.tag} is not a SOAP 1.1 Envelope")
        body = envelope.find(f"{{{SOAP_NS}}}Body")
        fault = body.find(f"{{{SOAP_NS}}}Fault") if body is not None else None
        if fault is not None:
            raise self._fault(fault)
        if status != 200:
            raise TransportError(f"HTTP {status} from platform without a SOAP fault")
        children = [c for c in (body if body is not None else []) if isinstance(c.tag, str)]
        if len(children) != 1 or children[0].tag != self.op.response.text:
            found = ", ".join(str(c.tag) for c in children) or "nothing"
            raise TransportError(f"unreadable answer from platform: expected "
                                 f"{self.op.response.text} in the SOAP Body, found {found}")
        with self._schema_lock:
            if not self._schema.validate(children[0]):
                e = self._schema.error_log.last_error
                raise TransportError(f"unreadable answer from platform: line {e.line}: "
                                     f"{e.message}")
        return children[0]

    def _fault(self, fault: etree._Element) -> Exception:
        """A SOAP fault as the zeep path maps it: Server or retryable -> transient."""
        message = fault.findtext("faultstring")
        soap_code = (fault.findtext("faultcode") or "").split(":")[-1]
        code, reason, retryable = None, message or "no reason given", False
        pf = fault.find(f"detail/{{{self.op.fault_ns}}}PlatformFault")
        if pf is not None:
            ns = f"{{{self.op.fault_ns}}}"
            code = pf.findtext(ns + "code")
            reason = pf.findtext(ns + "reason") or message or ""
            retryable = (pf.findtext(ns + "retryable") or "").strip() == "true"
        if soap_code == "Server" or retryable:
            return TransportError(f"platform fault {code or soap_code}: {reason}")
        return RejectedByPeer(reason, code or soap_code)

    def _platform_receipt(self, r: etree._Element) -> PlatformReceipt:
        v = {name: r.findtext(self._rns + name) or "" for name in _RECEIPT_FIELDS}
        return PlatformReceipt(platform_message_id=v["platformMessageId"],
                               packet_id=v["packetId"], status=v["status"],
                               received_at=_datetime(v["receivedAt"]), sha256=v["sha256"])


def _boolean(text: str | None) -> bool:
    return (text or "").strip() in ("true", "1")


def _datetime(text: str) -> dt.datetime | None:
    """xs:dateTime as zeep reads it (the schema already checked its form)."""
    try:
        return dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def post_envelope(session: requests.Session, address: str, envelope: bytes,
                  headers: dict[str, str], timeout: float | tuple[float, float]
                  ) -> requests.Response:
    """POST one SOAP envelope; what goes wrong on the way is a TransportError, as on the
    zeep path (the answer's status and faults are the caller's to read)."""
    try:
        return session.post(address, data=envelope, headers=headers, timeout=timeout)
    except requests.exceptions.Timeout as exc:
        raise TransportError(f"timed out: {exc.__class__.__name__}") from None
    except requests.exceptions.ConnectionError as exc:
        raise TransportError(f"cannot reach platform: {_short(exc)}") from None
    except requests.exceptions.RequestException as exc:
        raise TransportError(f"HTTP error: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:197] + "..."
