"""List, fetch and acknowledge without zeep: the hot path of inbound judgments.

zeep builds each request through its object model and reads each answer into objects: for
a round of 200 judgments its three calls cost about as much CPU in the adapter as verifying
a tenth of them. As for batches (adapter.transports.soap_batch), the request here is a
fixed envelope and the answer is read by the one safe parser and validated against the
WSDL's own schema (compiled once) before anything is read from it; SOAP faults are mapped
as on the zeep path (the batch path's `answer`, one implementation for both).

Used only when the WSDL's three inbound operations have the shape of the project's contract
(schemas/wsdl/lgsp.wsdl); for any other WSDL the transport keeps zeep.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

import requests
from lxml import etree

from adapter.transports.base import Ack, FetchedPacket, PendingPacket
from adapter.transports.soap_batch import (
    SOAP_NS,
    BatchOperation,
    BatchSubmitter,
    UnsupportedWsdl,
    post_envelope,
)

#: what each operation's request and answer items hold, in order (the contract's shape).
LIST_REQUEST = ("recipient", "max")
LIST_ITEM = ("packetId", "kind", "sender", "size")
FETCH_REQUEST = ("packetId",)
FETCH_ITEM = ("packetId", "kind", "sender", "packet")
ACK_ITEM = ("packetId", "outcome", "reason")
ACK_RESULT = ("packetId", "acknowledged")

#: characters XML 1.0 cannot carry (a reason quoting a control character from a packet)
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class _Shape:
    """One operation as the WSDL declares it: where it goes and what it carries."""

    operation: BatchOperation
    #: the request's direct children, and the answer's item element with its fields
    request_fields: tuple[str, ...]
    answer_item: str
    answer_fields: tuple[str, ...]


def _shape(binding_operation, address: str, fault_ns: str, request_fields: tuple[str, ...],
           answer_item: str, answer_fields: tuple[str, ...],
           request_item: tuple[str, tuple[str, ...]] | None = None) -> _Shape:
    """Read one operation from zeep's parsed WSDL (once, at start); UnsupportedWsdl when it
    is not shaped like the contract's."""
    name = getattr(binding_operation, "name", "?")
    try:
        request = binding_operation.input.body
        response = binding_operation.output.body
        fields = tuple(n for n, _ in request.type.elements)
        if request_item is not None:
            (item_name, item), = request.type.elements
            fields = (item_name, *(n for n, _ in item.type.elements))
            expected = (request_item[0], *request_item[1])
        else:
            expected = request_fields
        (result_name, result), = response.type.elements
        result_fields = tuple(n for n, _ in result.type.elements)
    except (ValueError, AttributeError, TypeError):
        raise UnsupportedWsdl(f"{name}: request or answer is not shaped like the "
                              "contract's") from None
    if fields != expected or result_name != answer_item or result_fields != answer_fields:
        raise UnsupportedWsdl(f"{name}: fields {fields} / {result_name} {result_fields} "
                              "differ from the contract's")
    return _Shape(BatchOperation(address, binding_operation.soapaction or "",
                                 etree.QName(request.qname), etree.QName(response.qname),
                                 fault_ns), request_fields, answer_item, answer_fields)


class _Call:
    """One operation: posts a fixed envelope, returns the answer's items, checked."""

    def __init__(self, session: requests.Session, shape: _Shape, schema: etree.XMLSchema,
                 timeout: tuple[float, float]) -> None:
        self.session, self.shape, self.timeout = session, shape, timeout
        op = shape.operation
        # the batch path's answer checks (safe parse, SOAP envelope, faults, schema)
        self.reader = BatchSubmitter(session, op, schema, timeout)
        ns = escape(op.request.namespace or "", {'"': "&quot;"})
        self._head = (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            f'<soap-env:Envelope xmlns:soap-env="{SOAP_NS}"><soap-env:Body>'
            f'<ns0:{op.request.localname} xmlns:ns0="{ns}">')
        self._tail = f"</ns0:{op.request.localname}></soap-env:Body></soap-env:Envelope>"
        self._headers = {"Content-Type": "text/xml; charset=utf-8",
                         "SOAPAction": f'"{op.soap_action}"'}
        rns = f"{{{op.response.namespace}}}" if op.response.namespace else ""
        self.item = rns + shape.answer_item
        self.fields = [rns + f for f in shape.answer_fields]

    def envelope(self, body: str) -> bytes:
        return (self._head + body + self._tail).encode()

    def call(self, body: str) -> list[list[str]]:
        """Per answer item, its fields' texts in the contract's order."""
        resp = post_envelope(self.session, self.shape.operation.address,
                             self.envelope(body), self._headers, self.timeout)
        return self.items(resp.status_code, resp.content)

    def items(self, status: int, content: bytes) -> list[list[str]]:
        answer = self.reader.answer(status, content)
        return [[item.findtext(f) or "" for f in self.fields]
                for item in answer.iterchildren(self.item)]


class InboundCalls:
    """The three inbound operations of the platform, without zeep."""

    def __init__(self, session: requests.Session, shapes: dict[str, _Shape],
                 schema: etree.XMLSchema, timeout: tuple[float, float]) -> None:
        self._list = _Call(session, shapes["list_pending"], schema, timeout)
        self._fetch = _Call(session, shapes["fetch"], schema, timeout)
        self._ack = _Call(session, shapes["acknowledge"], schema, timeout)

    @classmethod
    def from_zeep(cls, session: requests.Session, binding, operations: dict[str, str],
                  address: str, fault_ns: str, schema: etree.XMLSchema,
                  timeout: tuple[float, float]) -> InboundCalls:
        """`operations`: logical name -> the WSDL's operation name ([lgsp.operations])."""
        shapes = {
            "list_pending": _shape(binding.get(operations["list_pending"]), address,
                                   fault_ns, LIST_REQUEST, "item", LIST_ITEM),
            "fetch": _shape(binding.get(operations["fetch"]), address, fault_ns,
                            FETCH_REQUEST, "item", FETCH_ITEM),
            "acknowledge": _shape(binding.get(operations["acknowledge"]), address, fault_ns,
                                  ("ack",), "result", ACK_RESULT,
                                  request_item=("ack", ACK_ITEM)),
        }
        return cls(session, shapes, schema, timeout)

    # ---- requests ----------------------------------------------------------------------

    @staticmethod
    def list_body(recipient: str, limit: int) -> str:
        return (f"<ns0:recipient>{_text(recipient)}</ns0:recipient>"
                f"<ns0:max>{int(limit)}</ns0:max>")

    @staticmethod
    def fetch_body(packet_ids: Sequence[str]) -> str:
        return "".join(f"<ns0:packetId>{_text(p)}</ns0:packetId>" for p in packet_ids)

    @staticmethod
    def ack_body(acks: Sequence[Ack]) -> str:
        """An omitted reason is left out (minOccurs=0), as zeep leaves out None."""
        return "".join(
            f"<ns0:ack><ns0:packetId>{_text(pid)}</ns0:packetId>"
            f"<ns0:outcome>{_text(outcome)}</ns0:outcome>"
            + (f"<ns0:reason>{_text(reason)}</ns0:reason>" if reason is not None else "")
            + "</ns0:ack>" for pid, outcome, reason in acks)

    # ---- the calls -----------------------------------------------------------------------

    def list_pending(self, recipient: str, limit: int) -> list[PendingPacket]:
        return [PendingPacket(pid, kind, sender, int(size))
                for pid, kind, sender, size in self._list.call(self.list_body(recipient,
                                                                               limit))]

    def fetch_many(self, packet_ids: Sequence[str]) -> list[FetchedPacket]:
        return [FetchedPacket(pid, kind, sender, base64.b64decode(packet))
                for pid, kind, sender, packet in self._fetch.call(self.fetch_body(packet_ids))]

    def acknowledge_many(self, acks: Sequence[Ack]) -> set[str]:
        return {pid for pid, taken in self._ack.call(self.ack_body(acks))
                if taken.strip() in ("true", "1")}


def _text(value: str) -> str:
    """Element content: escaped, and any character XML cannot carry replaced."""
    return escape(_NOT_XML.sub("\ufffd", value))

