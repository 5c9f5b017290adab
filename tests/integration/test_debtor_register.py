"""The simulated debtor register over real HTTP: what it accepts and what it refuses.

Packets are mapped from the generator's notices by the adapter's own mapping, signed with
the dev key and sent through the zeep transport to the simulator on a loopback port.
"""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from adapter.crypto import PacketSigner, load_identity
from adapter.errors import RejectedByPeer
from adapter.mapping import MappingSet, PacketHeader, packet_id
from adapter.sources.synth import sample_notices
from adapter.transports.base import PlatformReceipt, SubmitItem
from adapter.transports.lgsp import LgspTransport
from adapter.xml.safe import serialize

MAPPING = MappingSet()["debtor"]
SENDER = "000.00.00.G15"


@pytest.fixture(scope="module")
def signer(pki):
    return PacketSigner(load_identity(pki / "adapter.key", pki / "adapter.crt"))


@pytest.fixture
def transport(settings, sim):
    t = LgspTransport(settings.lgsp, settings.path)
    yield t
    t.close()


def notice(signer, version: int, action: str, *, entry: str = "CDK-001-00000001",
           reason: str | None = "Người phải thi hành án đã có điều kiện thi hành án"
           ) -> SubmitItem:
    """A signed register notice: the generator's entry, as `version` doing `action`."""
    record = dict(copy.deepcopy(sample_notices()[0]), entry_code=entry, action=action,
                  action_reason=reason if action != "CB" else None)
    pid = packet_id("debtor", entry, version)
    header = PacketHeader(pid, entry, version, SENDER, "000.00.00.G22",
                          dt.datetime(2026, 3, 1, 2, 30, tzinfo=dt.UTC))
    return SubmitItem(pid, "debtor", SENDER, serialize(signer.sign(MAPPING.to_xml(record,
                                                                                 header))))


def send(t: LgspTransport, item: SubmitItem) -> PlatformReceipt:
    return t.submit(packet_id=item.packet_id, kind=item.kind, sender=item.sender,
                    payload=item.payload)


def refusal(t: LgspTransport, item: SubmitItem) -> RejectedByPeer:
    with pytest.raises(RejectedByPeer) as ei:
        send(t, item)
    assert ei.value.code == "BUSINESS_REJECTED"
    return ei.value


def test_publish_update_withdraw_in_order_are_accepted(transport, sim, signer):
    for version, action in ((1, "CB"), (2, "CN"), (3, "RUT")):
        assert send(transport, notice(signer, version, action)).status == "accepted"
    report = sim.report()
    assert report["by_kind"] == {"debtor": 3}
    assert report["debtor_register"] == {"rut": 1}


def test_a_withdrawal_of_an_entry_never_published_is_refused(transport, sim, signer):
    refused = refusal(transport, notice(signer, 1, "RUT", entry="CDK-001-00000777"))
    assert "CDK-001-00000777" in refused.reason
    assert "never published" in refused.reason
    assert sim.report()["accepted"] == 0
    # once published, the same entry may be withdrawn
    assert send(transport, notice(signer, 1, "CB", entry="CDK-001-00000777")).status == \
        "accepted"
    assert send(transport, notice(signer, 2, "RUT", entry="CDK-001-00000777")).status == \
        "accepted"


def test_an_older_version_after_a_newer_one_is_refused(transport, sim, signer):
    assert send(transport, notice(signer, 1, "CB")).status == "accepted"
    assert send(transport, notice(signer, 3, "CN")).status == "accepted"  # a gap is fine
    refused = refusal(transport, notice(signer, 2, "CN"))
    assert "version 2 arrived after version 3" in refused.reason
    assert sim.report()["accepted"] == 2


def test_a_resent_notice_is_a_duplicate_not_an_out_of_order_one(transport, sim, signer):
    first = notice(signer, 1, "CB")
    receipt = send(transport, first)
    assert send(transport, notice(signer, 2, "CN")).status == "accepted"
    again = send(transport, first)  # the answer to the first send was lost: the adapter retries
    assert again.status == "duplicate"
    assert again.platform_message_id == receipt.platform_message_id


def test_a_withdrawn_entry_is_not_updated_and_a_withdrawal_gives_its_reason(transport, signer):
    assert send(transport, notice(signer, 1, "CB")).status == "accepted"
    assert "must give its reason" in refusal(transport, notice(signer, 2, "RUT",
                                                               reason=None)).reason
    assert send(transport, notice(signer, 2, "RUT")).status == "accepted"
    assert "publish it again" in refusal(transport, notice(signer, 3, "CN")).reason
    assert send(transport, notice(signer, 3, "CB")).status == "accepted"


def test_in_one_batch_each_notice_is_judged_after_the_ones_before_it(transport, sim, signer):
    """A batch is judged in its order: the publish before the withdrawal passes, the
    withdrawal of another entry before its publish does not."""
    items = [notice(signer, 1, "CB"), notice(signer, 2, "RUT"),
             notice(signer, 2, "RUT", entry="CDK-001-00000002"),
             notice(signer, 1, "CB", entry="CDK-001-00000002")]
    results = transport.submit_many(items)
    assert [type(r).__name__ for r in results] == ["PlatformReceipt", "PlatformReceipt",
                                                   "RejectedByPeer", "PlatformReceipt"]
    assert "never published" in str(results[2])
    assert sim.report()["debtor_register"] == {"rut": 1, "cong-bo": 1}


def test_the_register_survives_a_restart_of_the_simulator(settings, sim, signer):
    from adapter.sim.server import build_app

    t = LgspTransport(settings.lgsp, settings.path)
    try:
        assert send(t, notice(signer, 1, "CB")).status == "accepted"
    finally:
        t.close()
    again = build_app(settings)  # a new process over the same store
    assert again.debtors.summary() == {"cong-bo": 1}
    assert again.debtors.problem(MAPPING.to_xml(
        dict(sample_notices()[0], entry_code="CDK-001-00000001", action="CN"),
        PacketHeader(packet_id("debtor", "X", 1), "X", 1, SENDER, SENDER,
                     dt.datetime(2026, 3, 1, tzinfo=dt.UTC)))) is not None
