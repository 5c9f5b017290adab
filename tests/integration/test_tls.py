"""HTTPS to the platform with a configured CA, and mutual TLS with a client certificate."""

import pytest

from adapter.crypto import PacketSigner, load_identity
from adapter.errors import TransportError
from adapter.sim.server import build_app
from adapter.transports.lgsp import LgspTransport
from adapter.xml.safe import serialize
from tests.conftest import serve_wsgi
from tests.helpers import N, build_packet


def tls_settings(settings, pki, *, client_ca=None):
    sim = settings.simulator.model_copy(update={
        "tls": True, "tls_cert": str(pki / "sim.crt"), "tls_key": str(pki / "sim.key"),
        "tls_client_ca": str(client_ca) if client_ca else None})
    return settings.model_copy(update={"simulator": sim})


def lgsp(settings, url, **kw):
    return settings.lgsp.model_copy(update={"endpoint": url, **kw})


@pytest.fixture(scope="module")
def packet(pki):
    signer = PacketSigner(load_identity(pki / "adapter.key", pki / "adapter.crt"))
    root = build_packet("case", key="TLS-1")
    return root.findtext(f"{N}Header/{N}PacketId"), serialize(signer.sign(root))


def send(cfg, settings, packet):
    pid, data = packet
    return LgspTransport(cfg, settings.path).submit(packet_id=pid, kind="case",
                                                    sender="000.00.00.G15", payload=data)


def test_https_with_the_configured_ca(settings, pki, packet):
    s = tls_settings(settings, pki)
    served = serve_wsgi(build_app(s), settings=s)
    try:
        assert served.url.startswith("https://")
        receipt = send(lgsp(s, served.url, ca_file=str(pki / "ca.crt")), s, packet)
        assert receipt.status == "accepted"
        with pytest.raises(TransportError, match="cannot reach|SSL|certificate"):
            send(lgsp(s, served.url, ca_file=str(pki / "untrusted" / "ca.crt")), s, packet)
    finally:
        served.close()


def test_mutual_tls_requires_a_client_certificate(settings, pki, packet):
    s = tls_settings(settings, pki, client_ca=pki / "ca.crt")
    served = serve_wsgi(build_app(s), settings=s)
    try:
        with pytest.raises(TransportError):
            send(lgsp(s, served.url, ca_file=str(pki / "ca.crt")), s, packet)
        receipt = send(lgsp(s, served.url, ca_file=str(pki / "ca.crt"),
                            client_cert=str(pki / "adapter.crt"),
                            client_key=str(pki / "adapter.key")), s, packet)
        assert receipt.status == "accepted"
    finally:
        served.close()
