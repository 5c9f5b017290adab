"""The inbound side of the transport interface: both channels implement it, and one packet
a channel cannot hand over fails alone."""

from adapter.errors import RejectedByPeer, TransportError
from adapter.transports.axis import AxisTransport
from adapter.transports.base import (
    FetchedPacket,
    InboundTransport,
    acknowledge_each,
    fetch_each,
)
from adapter.transports.lgsp import LgspTransport


def test_both_channels_implement_the_inbound_interface():
    for transport in (LgspTransport, AxisTransport):
        assert issubclass(transport, InboundTransport), transport.__name__


class _Platform:
    """A platform whose batch answer is unreadable because of one packet ("p2")."""

    def __init__(self):
        self.calls: list[str] = []

    def list_pending(self, recipient, limit):
        return []

    def fetch_many(self, ids):
        self.calls.append("fetch_many")
        raise TransportError("unreadable answer from platform: not well-formed")

    def fetch(self, pid):
        self.calls.append(pid)
        if pid == "p2":
            raise RejectedByPeer("malformed packet element", "BAD")
        return FetchedPacket(pid, "judgment", "000.00.00.T01", b"<x/>")

    def acknowledge(self, pid, outcome, reason=None):
        if pid == "p2":
            raise TransportError("timed out")
        return True


def test_a_batch_fetch_that_fails_is_retried_one_packet_at_a_time():
    platform = _Platform()
    got = fetch_each(platform, ["p1", "p2", "p3"])
    assert platform.calls == ["fetch_many", "p1", "p2", "p3"]
    assert got["p1"].payload == b"<x/>" and got["p3"].payload == b"<x/>"
    assert isinstance(got["p2"], RejectedByPeer)


def test_one_packet_alone_is_not_fetched_twice():
    platform = _Platform()
    got = fetch_each(platform, ["p2"])
    assert platform.calls == ["fetch_many"] and isinstance(got["p2"], TransportError)


def test_an_answer_that_fails_leaves_that_packet_unanswered():
    assert acknowledge_each(_Platform(), [("p1", "accepted", None), ("p2", "rejected", "x"),
                                          ("p3", "accepted", None)]) == {"p1", "p3"}
