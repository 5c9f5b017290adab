"""Revocation over real HTTP: the dev CA's CRL served by the simulator, a CRL server that
counts its fetches and can go down, and a minimal OCSP responder built with
cryptography.x509.ocsp. Packets are verified by the PacketVerifier as the inbound engine
builds it (anchors only): the refusal comes from the one signer check."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from adapter.config import load_settings
from adapter.crypto import devpki, revocation
from adapter.crypto.keys import load_certificates, load_identity
from adapter.crypto.ocsp import OcspClient
from adapter.crypto.revocation import AnchorRevocation, CrlUrl, RevocationChecker
from adapter.crypto.sign import PacketSigner
from adapter.crypto.verify import PacketVerifier
from adapter.errors import SignatureError
from adapter.xml.safe import serialize
from tests.conftest import free_port, serve_wsgi, write_config
from tests.helpers import build_packet


@pytest.fixture(scope="module")
def pki_template(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("revpki-http")
    devpki.create_dev_pki(d)
    return d


@pytest.fixture
def pki(pki_template, tmp_path) -> Path:
    d = tmp_path / "pki"
    shutil.copytree(pki_template, d)
    return d


@pytest.fixture(autouse=True)
def no_process_checker():
    yield
    revocation.reset()


def anchors(pki: Path) -> list[x509.Certificate]:
    return load_certificates(pki / "ca.crt")


def judgment(pki: Path, stem: str = "court") -> bytes:
    signer = PacketSigner(load_identity(pki / f"{stem}.key", pki / f"{stem}.crt"))
    return serialize(signer.sign(build_packet("judgment")))


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


class CrlServer:
    """Serves the dev CA's CRL file, counting requests; `down` answers 503."""

    def __init__(self, pki: Path) -> None:
        self.pki, self.hits, self.down = pki, 0, False

    def __call__(self, environ, start_response):
        self.hits += 1
        if self.down:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"down"]
        data = (self.pki / devpki.CRL_NAME).read_bytes()
        start_response("200 OK", [("Content-Type", "application/pkix-crl")])
        return [data]


@pytest.fixture
def crl_server(pki):
    app = CrlServer(pki)
    served = serve_wsgi(app, path="/crl/dev-ca.crl")
    app.url = served.url
    yield app
    served.close()


def url_checker(pki, url, cache: Path, clock, *, policy="reject", retry=0.0):
    src = CrlUrl(url, "dev CA", cache, timeout=5, retry_seconds=retry,
                 session=__import__("requests").Session())
    entry = AnchorRevocation(anchors(pki)[0], [src], ocsp=False, unavailable=policy)
    return RevocationChecker([entry], clock=clock)


# ---- the CRL the simulator publishes -------------------------------------------------------

def test_a_revoked_court_is_refused_with_the_crl_the_simulator_serves(pki, tmp_path):
    from adapter.sim.server import build_app

    port = free_port()
    cfg = write_config(tmp_path, pki, sim_port=port, extra=f"""
[[revocation.anchors]]
anchor = "{pki}/ca.crt"
crl_urls = ["http://127.0.0.1:{port}/crl/dev-ca.crl"]
""")
    settings = load_settings(cfg)
    app = build_app(settings)
    served = serve_wsgi(app, settings=settings, port=port)
    try:
        devpki.revoke(pki, "court", reason="keyCompromise")
        revocation.configure(settings)  # as the service does at start
        verifier = PacketVerifier(anchors(pki))
        with pytest.raises(SignatureError, match=r"signer certificate revoked on \S+Z "
                                                 r"\(keyCompromise\)"):
            verifier.verify(judgment(pki))
        verifier.verify(judgment(pki, "adapter"))
        assert app.crl.served == {"dev-ca.crl": 1}  # fetched once, for both checks
        assert list((tmp_path / "var" / "revocation").glob("crl-*.der"))
        [state] = revocation.status()
        assert state.reachable and state.next_update is not None
        assert state.source.endswith("/crl/dev-ca.crl")
        # `status` in another process reads the cached copy, without fetching again
        revocation.reset()
        [again] = revocation.source_states(settings)
        assert again.next_update == state.next_update and again.fetches == 0
        assert again.reachable is None  # not asked: its copy is current
        assert app.crl.served == {"dev-ca.crl": 1}
    finally:
        served.close()


# ---- kept until nextUpdate ------------------------------------------------------------------

def test_a_crl_is_fetched_once_until_its_next_update(pki, tmp_path, crl_server):
    clock, cache = Clock(), tmp_path / "cache"
    checker = url_checker(pki, crl_server.url, cache, clock)
    court = load_certificates(pki / "court.crt")[0]
    from adapter.crypto.trust import Purpose, verify_signer

    for _ in range(5):
        verify_signer(court, [], anchors(pki), Purpose.THADS_PACKET, revocation=checker)
    assert crl_server.hits == 1
    # a restart reads the copy on disk
    checker = url_checker(pki, crl_server.url, cache, clock)
    verify_signer(court, [], anchors(pki), Purpose.THADS_PACKET, revocation=checker)
    assert crl_server.hits == 1
    # past nextUpdate the CA has published a new CRL: fetched once more, and believed
    devpki.revoke(pki, "court", reason="keyCompromise",
                  now=clock.now + dt.timedelta(days=devpki.CRL_DAYS + 1))
    clock.now += dt.timedelta(days=devpki.CRL_DAYS + 1, hours=1)
    for _ in range(3):
        with pytest.raises(revocation.CertificateRevoked):
            verify_signer(court, [], anchors(pki), Purpose.THADS_PACKET, revocation=checker)
    assert crl_server.hits == 2
    # a copy gone missing is fetched again
    for f in cache.iterdir():
        f.unlink()
    checker = url_checker(pki, crl_server.url, cache, clock)
    with pytest.raises(revocation.CertificateRevoked):
        verify_signer(court, [], anchors(pki), Purpose.THADS_PACKET, revocation=checker)
    assert crl_server.hits == 3


# ---- unreachable past nextUpdate: the peer's policy ------------------------------------------

@pytest.mark.parametrize("policy", ["reject", "flag"])
def test_an_unreachable_crl_past_next_update_follows_the_policy(pki, tmp_path, crl_server,
                                                                 install_checker, policy):
    clock = Clock()
    checker = url_checker(pki, crl_server.url, tmp_path / "cache", clock, policy=policy,
                          retry=60)
    install_checker(checker)
    packet = judgment(pki)
    PacketVerifier(anchors(pki)).verify(packet)
    crl_server.down = True
    clock.now += dt.timedelta(days=devpki.CRL_DAYS, hours=1)
    for _ in range(2):  # within retry_seconds the source is asked once
        if policy == "reject":
            with pytest.raises(SignatureError) as err:
                PacketVerifier(anchors(pki)).verify(packet)
            msg = str(err.value)
            assert "revocation status of 'CN=Toa an nhan dan" in msg
            assert "unreachable: HTTP 503" in msg and "its cached copy expired at" in msg
            assert msg.endswith("policy reject")
        else:
            PacketVerifier(anchors(pki)).verify(packet)
    assert crl_server.hits == 2
    [state] = checker.status()
    assert state.reachable is False and "HTTP 503" in state.error
    assert state.next_update is not None and state.next_update < clock.now
    assert state.flagged == (2 if policy == "flag" else 0)
    assert state.as_dict()["reachable"] is False


@pytest.fixture
def install_checker():
    from adapter.crypto import trust

    previous = trust.revocation_check()
    yield trust.set_revocation_check
    trust.set_revocation_check(previous)


# ---- OCSP -------------------------------------------------------------------------------------

class Responder:
    """A minimal OCSP responder: answers for the certificates it was given, signed by the CA
    (or a delegated responder certificate), from `statuses`."""

    def __init__(self, ca_cert, ca_key, signer=None) -> None:
        self.ca_cert, self.ca_key, self.signer = ca_cert, ca_key, signer
        self.known: dict[int, x509.Certificate] = {}
        self.statuses: dict[int, tuple] = {}
        self.hits = 0

    def __call__(self, environ, start_response):
        self.hits += 1
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        req = ocsp.load_der_ocsp_request(body)
        cert = self.known[req.serial_number]
        status, when, reason = self.statuses.get(req.serial_number,
                                                 (ocsp.OCSPCertStatus.GOOD, None, None))
        now = dt.datetime.now(dt.UTC)
        cert_pem, key = self.signer or (self.ca_cert, self.ca_key)
        b = (ocsp.OCSPResponseBuilder()
             .add_response(cert=cert, issuer=self.ca_cert, algorithm=hashes.SHA1(),
                           cert_status=status, this_update=now - dt.timedelta(minutes=1),
                           next_update=now + dt.timedelta(hours=1), revocation_time=when,
                           revocation_reason=reason)
             .responder_id(ocsp.OCSPResponderEncoding.HASH, cert_pem))
        if self.signer:
            b = b.certificates([cert_pem])
        data = b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        start_response("200 OK", [("Content-Type", "application/ocsp-response")])
        return [data]


def _issue(pki: Path, out: Path, stem: str, *, ocsp_url: str | None = None,
           responder: bool = False):
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca = anchors(pki)[0]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test {stem}")]))
         .issuer_name(ca.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=30))
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()),
                        False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
         .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False,
                                      False), True))
    if responder:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False)
    if ocsp_url:
        b = b.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))]),
            False)
    cert = b.sign(ca_key, hashes.SHA256())
    (out / f"{stem}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (out / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


@pytest.fixture
def responder(pki):
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    app = Responder(anchors(pki)[0], ca_key)
    served = serve_wsgi(app, path="/ocsp")
    app.url = served.url
    yield app
    served.close()


def _ocsp_checker(pki, *, policy="reject"):
    entry = AnchorRevocation(anchors(pki)[0], [], ocsp=True, unavailable=policy)
    return RevocationChecker([entry], ocsp=OcspClient(timeout=5, retry_seconds=0))


def _ocsp_judgment(pki, tmp_path, responder):
    cert, _ = _issue(pki, tmp_path, "ocsp-court", ocsp_url=responder.url)
    responder.known[cert.serial_number] = cert
    return cert, judgment(tmp_path, "ocsp-court")


def test_ocsp_good_then_revoked(pki, tmp_path, responder, install_checker):
    cert, packet = _ocsp_judgment(pki, tmp_path, responder)
    install_checker(_ocsp_checker(pki))
    PacketVerifier(anchors(pki)).verify(packet)
    PacketVerifier(anchors(pki)).verify(packet)
    assert responder.hits == 1  # the good answer is kept until its nextUpdate
    when = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=2)
    responder.statuses[cert.serial_number] = (ocsp.OCSPCertStatus.REVOKED, when,
                                              x509.ReasonFlags.key_compromise)
    install_checker(_ocsp_checker(pki))  # a fresh cache
    with pytest.raises(SignatureError) as err:
        PacketVerifier(anchors(pki)).verify(packet)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"signer certificate revoked on {stamp} (keyCompromise)" in str(err.value)
    assert f"according to OCSP responder {responder.url}" in str(err.value)


def test_ocsp_answer_from_a_delegated_responder_is_believed(pki, tmp_path, responder,
                                                            install_checker):
    responder.signer = _issue(pki, tmp_path, "ocsp-responder", responder=True)
    cert, packet = _ocsp_judgment(pki, tmp_path, responder)
    responder.statuses[cert.serial_number] = (ocsp.OCSPCertStatus.REVOKED,
                                              dt.datetime.now(dt.UTC), None)
    install_checker(_ocsp_checker(pki))
    with pytest.raises(SignatureError, match=r"revoked on \S+ \(unspecified\)"):
        PacketVerifier(anchors(pki)).verify(packet)


def test_an_ocsp_answer_signed_by_anyone_else_is_not_believed(pki, tmp_path, responder,
                                                              install_checker):
    # a "responder" certificate without the OCSPSigning purpose cannot answer for the CA
    responder.signer = _issue(pki, tmp_path, "not-a-responder")
    _cert, packet = _ocsp_judgment(pki, tmp_path, responder)
    install_checker(_ocsp_checker(pki))
    with pytest.raises(SignatureError, match="not signed by the issuer or a responder it "
                                             "authorised.*policy reject"):
        PacketVerifier(anchors(pki)).verify(packet)
    install_checker(_ocsp_checker(pki, policy="flag"))
    PacketVerifier(anchors(pki)).verify(packet)


def test_an_unreachable_ocsp_responder_follows_the_policy(pki, tmp_path, install_checker):
    url = f"http://127.0.0.1:{free_port()}/ocsp"
    _issue(pki, tmp_path, "lonely", ocsp_url=url)
    packet = judgment(tmp_path, "lonely")
    install_checker(_ocsp_checker(pki))
    with pytest.raises(SignatureError, match=rf"OCSP responder {url} unreachable: cannot "
                                             "connect"):
        PacketVerifier(anchors(pki)).verify(packet)
    checker = _ocsp_checker(pki, policy="flag")
    install_checker(checker)
    PacketVerifier(anchors(pki)).verify(packet)
    [state] = checker.status()
    assert state.kind == "ocsp" and state.reachable is False
