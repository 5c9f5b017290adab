"""SOAP client of the ministry integration platform (zeep; on the hot paths, without zeep,
batches of packets through adapter.transports.soap_batch and the inbound list, fetch and
acknowledge through adapter.transports.soap_inbound).

One client per process (building it parses the WSDL), one keep-alive `requests.Session`,
explicit connect and read timeouts on every call (zeep's `operation_timeout` defaults to
none, so a POST could hang forever), TLS with a configured CA and an optional client
certificate. zeep parses the platform's answers with DTDs, entities, external references
and huge trees all forbidden: the same rules as adapter.xml.safe.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import requests
import zeep
import zeep.exceptions
from lxml import etree
from requests.adapters import HTTPAdapter

from adapter.config import LgspSection
from adapter.errors import ConfigError, RejectedByPeer, TransportError
from adapter.transports.base import (
    DeliveryStatus,
    FetchedPacket,
    ItemOutcome,
    PendingPacket,
    PlatformReceipt,
    SubmitItem,
)
from adapter.transports.soap_batch import (
    BatchOperation,
    BatchSubmitter,
    UnsupportedWsdl,
    wsdl_schema,
)
from adapter.transports.soap_inbound import InboundCalls

_FAULT_NS = "urn:thads-adapter:lgsp:1"
log = logging.getLogger("adapter.lgsp")


def _zeep_settings() -> zeep.Settings:
    return zeep.Settings(strict=True, raw_response=False, forbid_dtd=True,
                         forbid_entities=True, forbid_external=True, xml_huge_tree=False,
                         xsd_ignore_sequence_order=False)


class LgspTransport:
    def __init__(self, cfg: LgspSection, resolve=lambda p: Path(p)) -> None:
        self.cfg = cfg
        session = requests.Session()
        # No proxy or netrc lookups from the environment on every call (they cost ~0.6 ms
        # a request); a proxy, if the ministry network needs one, is configured explicitly.
        session.trust_env = False
        if cfg.proxy:
            session.proxies = {"http": cfg.proxy, "https": cfg.proxy}
        session.verify = str(resolve(cfg.ca_file)) if cfg.ca_file else True
        if cfg.client_cert:
            cert = str(resolve(cfg.client_cert))
            session.cert = (cert, str(resolve(cfg.client_key))) if cfg.client_key else cert
        pool = HTTPAdapter(pool_connections=2, pool_maxsize=cfg.concurrency, max_retries=0)
        session.mount("http://", pool)
        session.mount("https://", pool)
        self.session = session
        wsdl = resolve(cfg.wsdl)
        if not wsdl.exists():
            raise ConfigError("lgsp.wsdl", "lgsp.wsdl", f"WSDL file {wsdl} not found")
        transport = zeep.Transport(session=session, timeout=cfg.connect_timeout,
                                   operation_timeout=(cfg.connect_timeout, cfg.operation_timeout))
        self.client = zeep.Client(str(wsdl), transport=transport, settings=_zeep_settings())
        if cfg.endpoint:
            binding = self._binding_name()
            self.service = self.client.create_service(binding, cfg.endpoint)
        else:
            self.service = self.client.bind(cfg.service, cfg.port)
        for logical, name in (("submit", cfg.operations.submit),
                              ("submit_batch", cfg.operations.submit_batch),
                              ("query_status", cfg.operations.query_status),
                              ("list_pending", cfg.operations.list_pending),
                              ("fetch", cfg.operations.fetch),
                              ("acknowledge", cfg.operations.acknowledge)):
            if not name:
                continue
            try:
                self.service[name]
            except AttributeError:
                raise ConfigError("lgsp.operations", f"lgsp.operations.{logical}",
                                  f"the WSDL has no operation {name!r}") from None
        self._lock = threading.Lock()
        self.fast = self._fast_batches(wsdl) if cfg.fast_submit else None
        self.fast_inbound = self._fast_inbound(wsdl) if cfg.fast_submit else None

    def _fast_batches(self, wsdl: Path) -> BatchSubmitter | None:
        """The zeep-free batch call, when the WSDL's batch operation has the contract's
        shape (adapter.transports.soap_batch); None keeps zeep."""
        name = self.cfg.operations.submit_batch
        if not name:
            return None
        try:
            operation = BatchOperation.from_zeep(
                self.service._binding.get(name),
                self.cfg.endpoint or self.service._binding_options["address"], _FAULT_NS)
            schema = wsdl_schema(wsdl)
        except UnsupportedWsdl as exc:
            log.info("batches go through zeep: %s", exc)
            return None
        return BatchSubmitter(self.session, operation, schema,
                              (self.cfg.connect_timeout, self.cfg.operation_timeout))

    def _fast_inbound(self, wsdl: Path) -> InboundCalls | None:
        """List, fetch and acknowledge without zeep, when the WSDL's three operations have
        the contract's shape (adapter.transports.soap_inbound); None keeps zeep."""
        ops = self.cfg.operations
        if not (ops.list_pending and ops.fetch and ops.acknowledge):
            return None
        try:
            return InboundCalls.from_zeep(
                self.session, self.service._binding,
                {"list_pending": ops.list_pending, "fetch": ops.fetch,
                 "acknowledge": ops.acknowledge},
                self.cfg.endpoint or self.service._binding_options["address"], _FAULT_NS,
                wsdl_schema(wsdl), (self.cfg.connect_timeout, self.cfg.operation_timeout))
        except UnsupportedWsdl as exc:
            log.info("list, fetch and acknowledge go through zeep: %s", exc)
            return None

    def _binding_name(self) -> str:
        for service in self.client.wsdl.services.values():
            for port in service.ports.values():
                if self.cfg.port in (None, port.name):
                    return port.binding.name.text
        raise ConfigError("lgsp", "lgsp.port", f"no port {self.cfg.port!r} in the WSDL")

    def _call(self, op: str, **kwargs):
        try:
            return self.service[op](**kwargs)
        except zeep.exceptions.Fault as f:
            code, reason, retryable = self._fault_detail(f)
            soap_code = (f.code or "").split(":")[-1]
            if soap_code == "Server" or retryable:
                raise TransportError(f"platform fault {code or soap_code}: {reason}") from None
            raise RejectedByPeer(reason, code or soap_code) from None
        except requests.exceptions.Timeout as exc:
            raise TransportError(f"timed out: {exc.__class__.__name__}") from None
        except requests.exceptions.ConnectionError as exc:
            raise TransportError(f"cannot reach platform: {_short(exc)}") from None
        except zeep.exceptions.TransportError as exc:
            raise TransportError(f"HTTP {exc.status_code} from platform") from None
        except (zeep.exceptions.XMLSyntaxError, zeep.exceptions.XMLParseError,
                zeep.exceptions.DTDForbidden, zeep.exceptions.EntitiesForbidden,
                zeep.exceptions.ValidationError, etree.XMLSyntaxError) as exc:
            raise TransportError(f"unreadable answer from platform: {_short(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise TransportError(f"HTTP error: {_short(exc)}") from None

    @staticmethod
    def _fault_detail(f: zeep.exceptions.Fault) -> tuple[str | None, str, bool]:
        detail = f.detail
        if detail is not None:
            pf = detail.find(f"{{{_FAULT_NS}}}PlatformFault")
            if pf is not None:
                code = pf.findtext(f"{{{_FAULT_NS}}}code")
                reason = pf.findtext(f"{{{_FAULT_NS}}}reason") or f.message
                retry = (pf.findtext(f"{{{_FAULT_NS}}}retryable") or "").strip() == "true"
                return code, reason, retry
        return None, f.message or "no reason given", False

    @staticmethod
    def _receipt(r) -> PlatformReceipt:
        return PlatformReceipt(platform_message_id=r.platformMessageId, packet_id=r.packetId,
                               status=r.status, received_at=r.receivedAt, sha256=r.sha256)

    def submit(self, *, packet_id: str, kind: str, sender: str, payload: bytes) -> PlatformReceipt:
        res = self._call(self.cfg.operations.submit, packetId=packet_id, kind=kind,
                         sender=sender, packet=payload)
        return self._receipt(res if not hasattr(res, "receipt") else res.receipt)

    @property
    def batching(self) -> bool:
        return bool(self.cfg.operations.submit_batch) and self.cfg.batch_size > 1

    def submit_many(self, items: list[SubmitItem]) -> list[ItemOutcome]:
        if not self.batching or len(items) == 1:
            out: list[ItemOutcome] = []
            for it in items:
                try:
                    out.append(self.submit(packet_id=it.packet_id, kind=it.kind,
                                           sender=it.sender, payload=it.payload))
                except (RejectedByPeer, TransportError) as exc:
                    out.append(exc)
            return out
        if self.fast is not None:
            return self.fast.submit_many(items)
        res = self._call(self.cfg.operations.submit_batch, item=[
            {"packetId": it.packet_id, "kind": it.kind, "sender": it.sender,
             "packet": it.payload} for it in items])
        results = res if isinstance(res, list) else getattr(res, "result", res)
        by_id = {r.packetId: r for r in results}
        outcomes: list[ItemOutcome] = []
        for it in items:
            r = by_id.get(it.packet_id)
            if r is None:
                outcomes.append(TransportError("platform answered nothing for this packet"))
            elif r.receipt is not None:
                outcomes.append(self._receipt(r.receipt))
            elif r.refusal.retryable:
                outcomes.append(TransportError(
                    f"platform refusal {r.refusal.code}: {r.refusal.reason}"))
            else:
                outcomes.append(RejectedByPeer(r.refusal.reason, r.refusal.code))
        return outcomes

    def query_status(self, packet_id: str) -> DeliveryStatus:
        r = self._call(self.cfg.operations.query_status, packetId=packet_id)
        return DeliveryStatus(r.packetId, r.status, r.platformMessageId, r.detail)

    def list_pending(self, recipient: str, limit: int) -> list[PendingPacket]:
        if self.fast_inbound is not None:
            return self.fast_inbound.list_pending(recipient, limit)
        res = self._call(self.cfg.operations.list_pending, recipient=recipient, max=limit)
        items = res if isinstance(res, list) else (getattr(res, "item", None) or [])
        return [PendingPacket(i.packetId, i.kind, i.sender, int(i.size)) for i in items]

    def fetch(self, packet_id: str) -> FetchedPacket:
        found = self.fetch_many([packet_id])
        if not found:
            raise RejectedByPeer(f"platform has no packet {packet_id}", "NOT_FOUND")
        return found[0]

    def fetch_many(self, packet_ids: list[str]) -> list[FetchedPacket]:
        if self.fast_inbound is not None:
            return self.fast_inbound.fetch_many(packet_ids)
        res = self._call(self.cfg.operations.fetch, packetId=packet_ids)
        items = res if isinstance(res, list) else (getattr(res, "item", None) or [])
        return [FetchedPacket(i.packetId, i.kind, i.sender, i.packet) for i in items]

    def acknowledge(self, packet_id: str, outcome: str, reason: str | None = None) -> bool:
        return packet_id in self.acknowledge_many([(packet_id, outcome, reason)])

    def acknowledge_many(self, acks: list[tuple[str, str, str | None]]) -> set[str]:
        """Answer for several packets; returns the ids the platform took the answer for."""
        acks = [(pid, outcome, (reason or "")[:2000] or None) for pid, outcome, reason in acks]
        if self.fast_inbound is not None:
            return self.fast_inbound.acknowledge_many(acks)
        res = self._call(self.cfg.operations.acknowledge, ack=[
            {"packetId": pid, "outcome": outcome, "reason": reason}
            for pid, outcome, reason in acks])
        results = res if isinstance(res, list) else (getattr(res, "result", None) or [])
        return {r.packetId for r in results if r.acknowledged}

    def close(self) -> None:
        self.session.close()


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:197] + "..."
