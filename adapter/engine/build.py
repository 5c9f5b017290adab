"""Map, validate and sign one source record: the CPU-bound half of the outbound path.

Runs inline or in worker processes (two cores: processes, not threads, scale signing). Each
worker loads its key once in its initializer.
"""

from __future__ import annotations

import datetime as dt
import os

from adapter.config import Settings, load_settings
from adapter.crypto.keys import load_identity
from adapter.crypto.sign import PacketSigner
from adapter.errors import PacketError
from adapter.mapping import MappingSet, PacketHeader, packet_id
from adapter.sources.changes import SourceRecord
from adapter.store.repository import NewExchange
from adapter.xml.safe import serialize
from adapter.xml.schema import SchemaRegistry


class PacketBuilder:
    def __init__(self, settings: Settings) -> None:
        s = settings.signing
        passphrase = os.environ.get(s.key_passphrase_env, "").encode() \
            if s.key_passphrase_env else None
        key, cert = (s.key, s.cert)
        if s.algorithm == "ecdsa-sha256" and s.key.endswith("adapter.key"):
            key, cert = s.key.replace("adapter.key", "adapter-ec.key"), \
                s.cert.replace("adapter.crt", "adapter-ec.crt")
        identity = load_identity(settings.path(key), settings.path(cert),
                                 [settings.path(p) for p in s.chain], passphrase or None)
        self.signer = PacketSigner(identity, s.algorithm)
        self.mappings = MappingSet()
        self.schemas = SchemaRegistry.default()
        self.sender = settings.adapter.organisation_id

    def build(self, record: SourceRecord, recipient: str,
              now: dt.datetime | None = None) -> NewExchange:
        """The signed packet, or the reason it cannot be one (the batch goes on)."""
        pid = packet_id(record.kind, record.key, record.version)
        header = PacketHeader(pid, record.key, record.version, self.sender, recipient,
                              now or dt.datetime.now(dt.UTC))
        base = dict(packet_id=pid, kind=record.kind, source_key=record.key,
                    source_version=record.version, peer=recipient)
        try:
            tree = self.mappings[record.kind].to_xml(record.data, header)
            self.schemas.check(tree, packet=f"{record.kind} {record.key}")
            payload = serialize(self.signer.sign(tree, packet=pid))
        except PacketError as exc:
            return NewExchange(**base, error=str(exc))
        return NewExchange(**base, payload=payload)


_worker: PacketBuilder | None = None


def init_worker(config_file: str, environ: dict[str, str] | None = None) -> None:
    global _worker
    _worker = PacketBuilder(load_settings(config_file, environ))


def build_in_worker(args: tuple[SourceRecord, str]) -> NewExchange:
    assert _worker is not None, "init_worker was not called"
    return _worker.build(*args)


def ping(_: int) -> bool:
    """Touch a worker so the pool starts it (and its initializer loads the key)."""
    return _worker is not None
