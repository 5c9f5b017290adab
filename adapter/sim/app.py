"""WSGI application of the simulated ministry platform.

It behaves like a strict platform: parses with the one safe parser, verifies the signature
against its own trust store, validates the schema, checks the business rules it can
(receipt words against the amount; the debtor register's order of notices, register.py),
deduplicates by packet id (a duplicate gets its original receipt back) and stores what it
accepts durably. It can be told to misbehave
(errors, lost answers, latency, timeouts, outages, rejections) through `POST /control`.

Endpoints: POST /lgsp (SOAP), GET /report (JSON), GET /health, GET|POST /control,
GET /crl/<name>.crl (the dev CA's CRL, when build_app found the dev PKI).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

from adapter.errors import PacketError, SchemaInvalidError, SignatureError, UnsafeXmlError
from adapter.mapping.vntext import words_match_amount
from adapter.sim.axis import AxisDesk
from adapter.sim.court import CourtDesk
from adapter.sim.dsig import PlatformSignatureCheck
from adapter.sim.register import ENTRY, DebtorRegister
from adapter.sim.store import Incoming, SimStore, Stored
from adapter.xml.safe import parse_untrusted
from adapter.xml.schema import SchemaRegistry

if TYPE_CHECKING:
    from adapter.sim.crl import CrlDesk
    from adapter.sim.tsa import TimestampAuthority

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "urn:thads-adapter:lgsp:1"
PKT_NS = "urn:thads-adapter:exchange:1"
MAX_REQUEST = 32 * 1024 * 1024


@dataclass(frozen=True)
class Refusal:
    code: str
    reason: str
    retryable: bool = False


@dataclass(frozen=True)
class Accepted:
    """A packet that passed every check: its signed tree and what the store keeps."""

    root: etree._Element
    record: Incoming


@dataclass
class Faults:
    """What the simulator does wrong, on purpose. Rates are probabilities per request."""

    error_rate: float = 0.0          # answer HTTP 500 with a Server fault, store nothing
    lost_response_rate: float = 0.0  # store the packet, then answer 500 (the answer "got lost")
    reject_rate: float = 0.0         # refuse with a business rejection (permanent)
    timeout_rate: float = 0.0        # sleep `timeout_seconds` before answering
    timeout_seconds: float = 30.0
    latency_ms: float = 0.0          # added to every answer
    spike_rate: float = 0.0          # now and then a much slower answer...
    spike_ms: float = 0.0            # ...this much slower
    reset_rate: float = 0.0          # drop the connection mid-answer (nothing stored)
    tsa_down: float = 0.0            # nonzero: the timestamp authority answers 503
    down_until: float = 0.0          # epoch seconds: answer 503 until then
    #: an outage asked for begins with the next request, so that it is certain to be seen
    #: however long the client takes to start (a spawned sign worker warming up, a slow CI)
    down_pending: float = 0.0
    deferred_seconds: float = -1.0   # >= 0: receipts say "queued", delivered after this delay
    seed: int | None = None

    def update(self, data: dict) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        for k, v in data.items():
            if k == "down_for_seconds":
                self.down_pending, self.down_until = float(v), 0.0
            elif k == "seed":
                self.seed = None if v is None else int(v)
            elif k in names:
                setattr(self, k, float(v))
            else:
                raise KeyError(k)


class SimulatorApp:
    def __init__(self, store: SimStore, verifier: PlatformSignatureCheck, schemas: SchemaRegistry,
                 faults: Faults | None = None, court: CourtDesk | None = None,
                 axis: AxisDesk | None = None) -> None:
        self.store, self.verifier, self.schemas, self.court = store, verifier, schemas, court
        self.axis = axis
        self.debtors = DebtorRegister(store.path)
        #: set by build_app: the TSA when the dev PKI has its key, the dev CA's CRL desk
        self.tsa: TimestampAuthority | None = None
        self.crl: CrlDesk | None = None
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)
        self._rng_lock = threading.Lock()
        #: SOAP operations run one at a time. The checks are CPU-bound Python and lxml, which
        #: drops and retakes the GIL many times per packet: threads checking side by side
        #: convoy on it (the replay bench: 0.46 ms of CPU per packet with one worker thread,
        #: 0.7 with two, 0.94 with eight). The HTTP threads still read requests, sleep
        #: through simulated faults and serve /report concurrently.
        self._work_lock = threading.Lock()
        #: SOAP requests served since start, faults included (for breaker tests)
        self.requests = 0

    # ---- WSGI ------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/health":
            return self._json(start_response, {"status": "ok"})
        if path == "/report":
            return self._json(start_response, dict(
                self.store.report(), requests=self.requests,
                debtor_register=self.debtors.summary(),
                axis=self.axis.report() if self.axis is not None else None))
        if path == "/control":
            if method == "POST":
                try:
                    self.faults.update(json.loads(self._body(environ) or b"{}"))
                    with self._rng_lock:
                        self._rng = random.Random(self.faults.seed)
                except (KeyError, ValueError, TypeError) as exc:
                    return self._json(start_response, {"error": f"bad control: {exc}"}, "400")
            return self._json(start_response, dataclasses.asdict(self.faults))
        if path == "/lgsp" and method == "POST":
            return self._soap(environ, start_response)
        if path.startswith("/axis/") and method in ("POST", "GET") and self.axis is not None:
            try:
                body = self._body(environ)
            except UnsafeXmlError as exc:
                return self._json(start_response, {"status": "FAIL", "ErrorDesc": str(exc)},
                                  "413")
            return self.axis(path[len("/axis"):], environ, body, start_response)
        if path == "/tsa" and method == "POST":
            return self._tsa(environ, start_response)
        if path.startswith("/crl/") and method == "GET" and self.crl is not None:
            return self.crl(path, start_response)
        if path.startswith("/outbox"):
            return self._outbox(path, method, environ, start_response)
        if path == "/lgsp" and method == "GET":
            return self._respond(start_response, "405 Method Not Allowed", b"POST SOAP here",
                                 "text/plain")
        return self._respond(start_response, "404 Not Found", b"not found", "text/plain")

    def _outbox(self, path: str, method: str, environ: dict, start_response):
        """Test and demo control of what the platform holds for the adapter."""
        from urllib.parse import parse_qs

        if path == "/outbox" and method == "GET":
            return self._json(start_response, self.store.outbox_report())
        if path == "/outbox/judgments" and method == "POST":
            if self.court is None:
                return self._json(start_response, {"error": "no court key configured"}, "400")
            req = json.loads(self._body(environ) or b"{}")
            made = self.court.judgments(int(req.get("count", 1)), start=int(req.get("start", 1)),
                                        seed=int(req.get("seed", 7)),
                                        version=int(req.get("version", 1)))
            for pid, data in made:
                self.store.put_outbox(pid, "judgment", self.court.court_id,
                                      self.court.recipient, data)
            return self._json(start_response, {"packet_ids": [p for p, _ in made]})
        if path == "/outbox/raw" and method == "POST":
            q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            self.store.put_outbox(q["packet_id"], q.get("kind", "judgment"),
                                  q.get("sender", ""), q["recipient"], self._body(environ))
            return self._json(start_response, {"packet_id": q["packet_id"]})
        if path == "/outbox/redeliver" and method == "POST":
            return self._json(start_response, {"redelivered": self.store.redeliver()})
        return self._respond(start_response, "404 Not Found", b"not found", "text/plain")

    def _tsa(self, environ: dict, start_response):
        if self.tsa is None or self.faults.tsa_down:
            return self._respond(start_response, "503 Service Unavailable", b"TSA down",
                                 "text/plain")
        try:
            reply = self.tsa.reply(self._body(environ))
        except Exception as exc:
            return self._respond(start_response, "400 Bad Request", str(exc).encode(),
                                 "text/plain")
        return self._respond(start_response, "200 OK", reply, "application/timestamp-reply")

    def _chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._rng_lock:
            return self._rng.random() < rate

    @staticmethod
    def _body(environ: dict) -> bytes:
        try:
            n = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            n = 0
        if n > MAX_REQUEST:
            raise UnsafeXmlError(f"request of {n} bytes exceeds {MAX_REQUEST}")
        return environ["wsgi.input"].read(n) if n else b""

    @staticmethod
    def _respond(start_response, status: str, body: bytes, ctype: str):
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    def _json(self, start_response, data, code: str = "200"):
        body = json.dumps(data, ensure_ascii=False).encode()
        return self._respond(start_response, f"{code} {'OK' if code == '200' else 'Error'}",
                             body, "application/json")

    # ---- SOAP ------------------------------------------------------------------------

    def _soap(self, environ: dict, start_response) -> Iterable[bytes]:
        with self._rng_lock:
            self.requests += 1
        f = self.faults
        if f.latency_ms:
            time.sleep(f.latency_ms / 1000)
        if self._chance(f.spike_rate):
            time.sleep(f.spike_ms / 1000)
        if self._chance(f.reset_rate):
            # promise more bytes than are sent: the server closes the connection and the
            # client sees it dropped mid-answer, as after a reset
            start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", "4096")])
            return [b"<?xml version='1.0'?><soap:Envelope"]
        if f.down_pending:
            with self._rng_lock:
                if f.down_pending:
                    f.down_until, f.down_pending = time.time() + f.down_pending, 0.0
        if f.down_until and time.time() < f.down_until:
            return self._fault(start_response, "Server", "UNAVAILABLE",
                               "platform down for maintenance", True, "503 Service Unavailable")
        if self._chance(f.timeout_rate):
            time.sleep(f.timeout_seconds)
        if self._chance(f.error_rate):
            return self._fault(start_response, "Server", "INTERNAL", "simulated server error",
                               True)
        try:
            request = self._body(environ)
        except UnsafeXmlError as exc:
            return self._fault(start_response, "Client", "MALFORMED", str(exc), False)
        with self._work_lock:
            return self._operation(request, start_response)

    def _operation(self, request: bytes, start_response) -> Iterable[bytes]:
        """Parse the SOAP request and run its operation (under the work lock)."""
        try:
            env = parse_untrusted(request, name="SOAP request")
        except UnsafeXmlError as exc:
            return self._fault(start_response, "Client", "MALFORMED", str(exc), False)
        body = env.find(f"{{{SOAP_NS}}}Body")
        op = body[0] if body is not None and len(body) else None
        if op is None:
            return self._fault(start_response, "Client", "MALFORMED", "no SOAP body", False)
        name = etree.QName(op).localname
        if name == "SubmitPacketRequest":
            return self._submit(op, start_response)
        if name == "SubmitPacketBatchRequest":
            return self._submit_batch(op, start_response)
        if name == "QueryDeliveryStatusRequest":
            return self._query(op, start_response)
        if name == "ListPendingPacketsRequest":
            return self._list_pending(op, start_response)
        if name == "FetchPacketRequest":
            return self._fetch(op, start_response)
        if name == "AcknowledgePacketRequest":
            return self._acknowledge(op, start_response)
        return self._fault(start_response, "Client", "UNKNOWN_OPERATION", name, False)

    def _submit(self, op: etree._Element, start_response) -> Iterable[bytes]:
        t = f"{{{TNS}}}"
        result = self._accept(op)
        if isinstance(result, Refusal):
            return self._fault(start_response, "Client", result.code, result.reason,
                               result.retryable)
        if self._chance(self.faults.lost_response_rate):
            return self._fault(start_response, "Server", "INTERNAL",
                               "simulated failure after storing", True)
        e = etree.Element(f"{t}SubmitPacketResponse", nsmap={None: TNS})
        self._receipt_into(etree.SubElement(e, f"{t}receipt"), result)
        return self._envelope(start_response, e)

    def _submit_batch(self, op: etree._Element, start_response) -> Iterable[bytes]:
        t = f"{{{TNS}}}"
        items = op.findall(f"{t}item")
        if not items or len(items) > 500:
            return self._fault(start_response, "Client", "MALFORMED",
                               f"a batch holds 1 to 500 items, got {len(items)}", False)
        checked = [self._check(item) for item in items]
        # what passed every check is stored in one transaction (durable before the answer);
        # register notices one by one, under the register's lock (register.py)
        plain = [c for c in checked if isinstance(c, Accepted) and c.root.tag != ENTRY]
        stored = dict(zip(map(id, plain), self.store.accept_many(
            [c.record for c in plain]), strict=True))
        e = etree.Element(f"{t}SubmitPacketBatchResponse", nsmap={None: TNS})
        for item, check in zip(items, checked, strict=True):
            res = etree.SubElement(e, f"{t}result")
            etree.SubElement(res, f"{t}packetId").text = (_text(item, f"{t}packetId") or "")
            result = stored.get(id(check)) or self._store(check)
            if isinstance(result, Refusal):
                ref = etree.SubElement(res, f"{t}refusal")
                etree.SubElement(ref, f"{t}code").text = result.code
                etree.SubElement(ref, f"{t}reason").text = result.reason
                etree.SubElement(ref, f"{t}retryable").text = str(result.retryable).lower()
            else:
                self._receipt_into(etree.SubElement(res, f"{t}receipt"), result)
        if self._chance(self.faults.lost_response_rate):
            return self._fault(start_response, "Server", "INTERNAL",
                               "simulated failure after storing", True)
        return self._envelope(start_response, e)

    @staticmethod
    def _receipt_into(r: etree._Element, stored: Stored) -> None:
        _children(r, platformMessageId=stored.platform_message_id, packetId=stored.packet_id,
                  status="duplicate" if stored.duplicate else stored.status,
                  receivedAt=stored.received_at, sha256=stored.sha256)

    def _accept(self, op: etree._Element) -> Stored | Refusal:
        """Everything a strict platform checks, for one packet; stores it when all pass."""
        return self._store(self._check(op))

    def _check(self, op: etree._Element) -> Accepted | Refusal:
        """Everything a strict platform checks before it stores a packet."""
        t = f"{{{TNS}}}"
        packet_id = (_text(op, f"{t}packetId") or "").strip()
        kind = (_text(op, f"{t}kind") or "").strip()
        sender = (_text(op, f"{t}sender") or "").strip()
        try:
            payload = base64.b64decode(_text(op, f"{t}packet") or "", validate=True)
        except (binascii.Error, ValueError):
            return Refusal("MALFORMED", "packet is not base64")
        try:
            root = self.verifier.verify(payload, packet=packet_id or None).root
            self.schemas.check(root, packet=packet_id)
        except SignatureError as exc:
            return Refusal(f"SIGNATURE_{exc.outcome.upper()}", str(exc))
        except SchemaInvalidError as exc:
            return Refusal("SCHEMA_INVALID", str(exc))
        except PacketError as exc:
            return Refusal("MALFORMED", str(exc))
        header_id = root.findtext(f"{{{PKT_NS}}}Header/{{{PKT_NS}}}PacketId")
        if header_id != packet_id:
            return Refusal("PACKET_ID_MISMATCH",
                           f"request says {packet_id!r}, signed packet says {header_id!r}")
        problem = self._business_problem(root)
        if problem is None and self._chance(self.faults.reject_rate):
            problem = "simulated business rejection"
        if problem:
            return Refusal("BUSINESS_REJECTED", problem)
        status = "queued" if self.faults.deferred_seconds >= 0 else "accepted"
        return Accepted(root, Incoming(packet_id, kind, sender,
                                       hashlib.sha256(payload).hexdigest(), payload, status))

    def _store(self, check: Accepted | Refusal) -> Stored | Refusal:
        if isinstance(check, Refusal):
            return check
        record = check.record
        if check.root.tag == ENTRY:
            def store() -> Stored | Refusal:
                return self.store.accept_many([record])[0]

            def refuse(why: str) -> Stored | Refusal:
                return Refusal("BUSINESS_REJECTED", why)

            return self.debtors.accept(
                check.root, record.packet_id,
                known=lambda: self.store.status_of(record.packet_id) is not None,
                store=store, refuse=refuse)
        return self.store.accept_many([record])[0]

    @staticmethod
    def _business_problem(root: etree._Element) -> str | None:
        n = f"{{{PKT_NS}}}"
        if root.tag == f"{n}Receipt":
            words, amount = root.findtext(f"{n}AmountInWords"), root.findtext(f"{n}Amount")
            if not words or not amount or not words_match_amount(words, int(amount)):
                return f"AmountInWords {words!r} does not read Amount {amount}"
        return None

    def _query(self, op: etree._Element, start_response) -> Iterable[bytes]:
        t = f"{{{TNS}}}"
        packet_id = (op.findtext(f"{t}packetId") or "").strip()
        found = self.store.status_of(packet_id)
        e = etree.Element(f"{t}QueryDeliveryStatusResponse", nsmap={None: TNS})
        etree.SubElement(e, f"{t}packetId").text = packet_id
        if found is None:
            etree.SubElement(e, f"{t}status").text = "unknown"
        else:
            status, pmid = found
            if status == "queued" and self._deferred_elapsed(packet_id):
                self.store.release_queued()
                status = "accepted"
            etree.SubElement(e, f"{t}status").text = "queued" if status == "queued" \
                else "delivered"
            etree.SubElement(e, f"{t}platformMessageId").text = pmid
        return self._envelope(start_response, e)

    def _list_pending(self, op: etree._Element, start_response) -> Iterable[bytes]:
        t = f"{{{TNS}}}"
        recipient = (op.findtext(f"{t}recipient") or "").strip()
        limit = min(int(op.findtext(f"{t}max") or "100"), 1000)
        e = etree.Element(f"{t}ListPendingPacketsResponse", nsmap={None: TNS})
        for pid, kind, sender, size in self.store.pending(recipient, limit):
            _children(etree.SubElement(e, f"{t}item"), packetId=pid, kind=kind, sender=sender,
                      size=str(size))
        return self._envelope(start_response, e)

    def _fetch(self, op: etree._Element, start_response) -> Iterable[bytes]:
        t = f"{{{TNS}}}"
        e = etree.Element(f"{t}FetchPacketResponse", nsmap={None: TNS})
        for pid_el in op.findall(f"{t}packetId"):
            pid = (pid_el.text or "").strip()
            found = self.store.fetch(pid)
            if found is None:
                continue
            kind, sender, payload = found
            _children(etree.SubElement(e, f"{t}item"), packetId=pid, kind=kind, sender=sender,
                      packet=base64.b64encode(payload).decode())
        return self._envelope(start_response, e)

    def _acknowledge(self, op: etree._Element, start_response) -> Iterable[bytes]:
        t = f"{{{TNS}}}"
        e = etree.Element(f"{t}AcknowledgePacketResponse", nsmap={None: TNS})
        for ack in op.findall(f"{t}ack"):
            pid = (ack.findtext(f"{t}packetId") or "").strip()
            ok = self.store.acknowledge(pid, ack.findtext(f"{t}outcome") or "accepted",
                                        ack.findtext(f"{t}reason"))
            r = etree.SubElement(e, f"{t}result")
            etree.SubElement(r, f"{t}packetId").text = pid
            etree.SubElement(r, f"{t}acknowledged").text = "true" if ok else "false"
        return self._envelope(start_response, e)

    def _deferred_elapsed(self, packet_id: str) -> bool:
        row = self.store._conn().execute("SELECT received_at FROM received WHERE packet_id=?",
                                         (packet_id,)).fetchone()
        if not row:
            return False
        age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(row[0])
        return age.total_seconds() >= self.faults.deferred_seconds

    def _envelope(self, start_response, payload: etree._Element, status: str = "200 OK"):
        env = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS})
        etree.SubElement(env, f"{{{SOAP_NS}}}Body").append(payload)
        body = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
        return self._respond(start_response, status, body, "text/xml; charset=utf-8")

    def _fault(self, start_response, who: str, code: str, reason: str, retryable: bool,
               status: str = "500 Internal Server Error"):
        s = f"{{{SOAP_NS}}}"
        fault = etree.Element(f"{s}Fault", nsmap={"soap": SOAP_NS})
        etree.SubElement(fault, "faultcode").text = f"soap:{who}"
        etree.SubElement(fault, "faultstring").text = reason
        detail = etree.SubElement(fault, "detail")
        pf = etree.SubElement(detail, f"{{{TNS}}}PlatformFault", nsmap={None: TNS})
        etree.SubElement(pf, f"{{{TNS}}}code").text = code
        etree.SubElement(pf, f"{{{TNS}}}reason").text = reason
        etree.SubElement(pf, f"{{{TNS}}}retryable").text = "true" if retryable else "false"
        return self._envelope(start_response, fault, status)


def _text(parent: etree._Element, tag: str) -> str | None:
    """`findtext` for a direct child named in Clark notation, without ElementPath's parsing
    (called for every field of every packet in a batch)."""
    child = next(parent.iterchildren(tag), None)
    return None if child is None else child.text or ""


def _children(parent: etree._Element, **values: str) -> etree._Element:
    """Child elements in the LGSP namespace, in the order given."""
    for tag, value in values.items():
        etree.SubElement(parent, f"{{{TNS}}}{tag}").text = value
    return parent
