"""The simulated courts: judgments built from synthetic data and signed with the dev PKI's
court key, waiting in the platform's outbox for the adapter to pull."""

from __future__ import annotations

import datetime as dt

from adapter.crypto.sign import PacketSigner
from adapter.mapping import MappingSet, PacketHeader, packet_id
from adapter.sources.synth import Generator
from adapter.xml.safe import serialize


class CourtDesk:
    def __init__(self, signer: PacketSigner, court_id: str, recipient: str) -> None:
        self.signer, self.court_id, self.recipient = signer, court_id, recipient
        self.mapping = MappingSet()["judgment"]

    def judgments(self, count: int, *, start: int = 1, seed: int = 7,
                  version: int = 1) -> list[tuple[str, bytes]]:
        """(packet id, signed bytes) of `count` judgments numbered from `start`."""
        gen = Generator(seed)
        out = []
        for i in range(start, start + count):
            j, parties, obligations = gen.judgment(i)
            record = dict(j, parties=parties, obligations=obligations)
            key = record["judgment_code"]
            pid = packet_id("judgment", key, version)
            header = PacketHeader(pid, key, version, self.court_id, self.recipient,
                                  dt.datetime.now(dt.UTC))
            root = self.mapping.to_xml(record, header)
            out.append((pid, serialize(self.signer.sign(root, packet=pid))))
        return out
