"""Typed settings loaded once at start from TOML (plus `THADS__SECTION__KEY` overrides).

A bad configuration must fail at start, naming the file, the key and the reason, rather
than half-way through a night of unattended running. Relative paths are resolved against
the project root (the parent of `config/`), so the service behaves the same from any cwd.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from adapter.errors import ConfigError
from adapter.kinds import CHANNELS, KINDS, KindRegistry

DEFAULT_CONFIG = "config/adapter.toml"
ENV_CONFIG = "THADS_ADAPTER_CONFIG"
ENV_PREFIX = "THADS__"

OrgId = Annotated[str, Field(pattern=r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")]


def _kinds(info: ValidationInfo) -> KindRegistry:
    """The registry routes are checked against: the adapter's own, or one a caller passes
    (`load_settings(..., kinds=...)`) for kinds of its own."""
    context = info.context or {}
    registry = context.get("kinds") if isinstance(context, dict) else None
    return registry if isinstance(registry, KindRegistry) else KINDS


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, as a container limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdapterSection(_Section):
    #: QCVN 102:2016 organisation id of the agency this adapter speaks for.
    organisation_id: OrgId
    organisation_name: str = "Cục Quản lý thi hành án dân sự"
    organisation_address: str = "58-60 Trần Phú, Ba Đình, Hà Nội"
    #: where the adapter keeps files it owns (databases of the demo, blobs).
    data_dir: str = "var"
    #: SQLAlchemy URL of the adapter's own state database.
    state_db: str = "sqlite:///var/state.db"
    #: a name for this process in leases and attempts; default host:pid.
    instance_name: str | None = None


class SourceSection(_Section):
    #: SQLAlchemy URL of the enforcement database the adapter reads and writes.
    url: str = "sqlite:///var/enforcement.db"
    #: rows read per change-capture batch; bounds memory whatever the backlog.
    batch_size: int = Field(default=500, ge=1, le=50_000)
    #: re-read rows changed this many seconds before the cursor, to catch rows committed
    #: late with an older updated_at; packet ids are deterministic, so re-reads never
    #: create duplicates.
    lookback_seconds: int = Field(default=0, ge=0, le=86_400)


class SigningSection(_Section):
    #: the private key: a PEM file, or a PKCS#11 URI (RFC 7512) naming a key on a token or
    #: HSM, e.g. "pkcs11:token=THADS;object=adapter?module-path=/usr/lib/softhsm/
    #: libsofthsm2.so&pin-source=file:/etc/thads/token.pin" (the PIN never in this file).
    key: str = "certs/dev/adapter.key"
    cert: str = "certs/dev/adapter.crt"
    #: intermediate certificates sent with the signature, if any.
    chain: list[str] = []
    algorithm: Literal["rsa-sha256", "ecdsa-sha256"] = "rsa-sha256"
    #: CA certificates whose signers the adapter accepts on inbound packets.
    trust_anchors: list[str] = ["certs/dev/ca.crt"]
    #: environment variable holding the key file's passphrase, if the key is encrypted.
    key_passphrase_env: str | None = None
    #: rotation: the key (file or PKCS#11 URI) and certificate that sign from `next_from`
    #: (a date-time with its UTC offset); its algorithm follows its type (RSA or EC).
    next_key: str | None = None
    next_cert: str | None = None
    next_chain: list[str] = []
    next_from: dt.datetime | None = None

    def certificate_files(self) -> list[str]:
        """Every certificate we sign with, oldest first (a rotation: both), known without
        opening the keys: what `audit verify` expects checkpoints to be signed by."""
        return [self.cert, *([self.next_cert] if self.next_cert else [])]

    @field_validator("key", "next_key")
    @classmethod
    def _key_uri(cls, value: str | None) -> str | None:
        """A PKCS#11 URI is checked here, so a typo fails at start, not at first use."""
        from adapter.crypto.pkcs11_uri import is_pkcs11_uri, parse_pkcs11_uri

        if value is not None and is_pkcs11_uri(value):
            parse_pkcs11_uri(value)
        return value

    @field_validator("next_from")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("needs its UTC offset, e.g. 2027-01-01T00:00:00+07:00")
        return value

    @model_validator(mode="after")
    def _rotation_complete(self) -> SigningSection:
        given = {k for k in ("next_key", "next_cert", "next_from") if getattr(self, k)}
        if given and len(given) < 3:
            missing = sorted({"next_key", "next_cert", "next_from"} - given)
            raise ValueError(f"a rotation needs next_key, next_cert and next_from together: "
                             f"{', '.join(missing)} missing")
        if self.next_chain and not given:
            raise ValueError("next_chain is set without a rotation (next_key, next_cert, "
                             "next_from)")
        from adapter.crypto.pkcs11_uri import is_pkcs11_uri

        if self.key_passphrase_env and is_pkcs11_uri(self.key) and \
                (self.next_key is None or is_pkcs11_uri(self.next_key)):
            raise ValueError("key_passphrase_env is for key files: a token key's PIN comes "
                             "from the URI's pin-source")
        return self


class OperationMap(_Section):
    """Logical operation -> WSDL operation, so the real ministry WSDL can be plugged in."""

    list_pending: str = "ListPendingPackets"
    fetch: str = "FetchPacket"
    acknowledge: str = "AcknowledgePacket"
    submit: str = "SubmitPacket"
    #: several packets per call, each with its own outcome; "" if the platform has none.
    submit_batch: str = "SubmitPacketBatch"
    query_status: str = "QueryDeliveryStatus"


class LgspSection(_Section):
    wsdl: str = "schemas/wsdl/lgsp.wsdl"
    #: overrides the address in the WSDL's service element.
    endpoint: str | None = None
    service: str | None = None
    port: str | None = None
    #: seconds to connect and to wait for each SOAP answer (zeep has none by default).
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    operation_timeout: float = Field(default=30.0, gt=0, le=3600)
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    #: HTTP(S) proxy for the platform, if any (the environment's proxy variables are ignored).
    proxy: str | None = None
    #: concurrent SOAP calls per process; I/O overlaps, signing does not need them.
    concurrency: int = Field(default=8, ge=1, le=64)
    #: seconds between delivery-status queries for packets the platform has only queued.
    status_poll_seconds: float = Field(default=30.0, gt=0)
    #: packets per batch call (when operations.submit_batch is set); 1 sends one by one.
    batch_size: int = Field(default=50, ge=1, le=500)
    #: send batches, and list, fetch and acknowledge inbound packets, with fixed envelopes
    #: and read the answers with lxml against the WSDL's schema (zeep for everything
    #: else); false: zeep for those too.
    fast_submit: bool = True
    operations: OperationMap = OperationMap()


class AxisSection(_Section):
    """The national document axis (REST + HMAC-signed headers)."""

    endpoint: str = "http://127.0.0.1:8741/axis"
    #: our system id on the axis, and where its shared secret is kept (file or variable).
    system_id: str = "thads-dev"
    secret_file: str | None = "certs/dev/axis.secret"
    secret_env: str | None = None
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    operation_timeout: float = Field(default=60.0, gt=0, le=3600)
    ca_file: str | None = None


class AxisClient(_Section):
    system_id: str
    organisation_id: OrgId
    secret_file: str


class RetrySection(_Section):
    max_attempts: int = Field(default=12, ge=1, le=1000)
    base_delay_seconds: float = Field(default=5.0, gt=0)
    max_delay_seconds: float = Field(default=3600.0, gt=0)
    max_age_hours: float = Field(default=72.0, gt=0)
    #: how long a claimed exchange stays ours before another worker may take it back.
    lease_seconds: float = Field(default=120.0, ge=5)
    #: circuit breaker per endpoint: open after this many failed rounds in a row...
    breaker_failures: int = Field(default=5, ge=1, le=1000)
    #: ...and stay open this long before one probe is let through.
    breaker_open_seconds: float = Field(default=30.0, gt=0)


class RouteSection(_Section):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    #: a packet kind of the registry (adapter/kinds.py): case, receipt (out over lgsp),
    #: judgment (in over lgsp), edoc (out and in over axis), status (out over axis).
    kind: str
    #: default: the kind's only direction (out for a kind that travels both ways).
    direction: Literal["out", "in"] = "out"
    #: a transport of adapter.kinds.CHANNELS; default: the kind's channel in that direction.
    channel: str = "lgsp"
    #: QCVN 102 id of the receiving agency written into each packet (outbound routes).
    recipient: OrgId | None = None
    #: kinds sent to several agencies (edoc): every agency the documents go to.
    recipients: list[OrgId] = []
    #: edoc: record fields (columns or registry lookups) each naming one more agency per
    #: document, e.g. the court that judged (`court_org_id`).
    recipient_fields: list[str] = []
    #: edoc: agencies every document also goes to, e.g. the provincial procuracy
    #: (Viện kiểm sát), with which enforcement decisions are shared.
    extra_recipients: list[OrgId] = []
    interval_seconds: float = Field(default=30.0, gt=0)
    enabled: bool = True
    #: packets claimed and sent (or listed and fetched) per round.
    batch_size: int = Field(default=200, ge=1, le=10_000)
    #: this route's own retry policy, instead of [retry] (e.g. receipts more patient).
    retry: RetrySection | None = None

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        """Direction and channel default to how the kind travels (the registry's word)."""
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
            return data
        kinds = _kinds(info)
        if data["kind"] not in kinds:
            return data  # the kind check below names the known kinds
        spec = kinds[data["kind"]]
        data = dict(data)
        directions = spec.directions()
        data.setdefault("direction", directions[0] if len(directions) == 1 else "out")
        channel = spec.channel(data["direction"]) if data["direction"] in ("out", "in") \
            else None
        if channel is not None:
            data.setdefault("channel", channel)
        return data

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str, info: ValidationInfo) -> str:
        kinds = _kinds(info)
        if kind not in kinds:
            raise ValueError(f"unknown packet kind {kind!r}: expected {kinds.names_text()}")
        return kind

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, channel: str) -> str:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}: expected {' or '.join(CHANNELS)}")
        return channel

    @model_validator(mode="after")
    def _travels_this_way(self, info: ValidationInfo) -> RouteSection:
        spec = _kinds(info)[self.kind]
        if spec.channel(self.direction) != self.channel:
            what = "sent" if self.direction == "out" else "received"
            ways = [f"{'sent' if d == 'out' else 'received'} over {spec.channel(d)}"
                    for d in spec.directions()]
            raise ValueError(f"kind {self.kind!r} cannot be {what} over {self.channel}: "
                             f"it is {' and '.join(ways)}")
        if self.direction == "out" and spec.addressing == "recipient" and self.recipient is None:
            raise ValueError("outbound routes need a recipient")
        if self.direction == "out" and spec.addressing == "recipients" and not (
                self.recipients or self.recipient_fields or self.extra_recipients):
            raise ValueError(f"{self.kind} routes need recipients, recipient_fields or "
                             "extra_recipients")
        return self


class PeerSection(_Section):
    """An agency we receive from: whom we trust to sign for it, and what to do otherwise."""

    name: str
    #: QCVN 102 ids this peer sends as (Header/Sender of its packets).
    organisation_ids: list[OrgId]
    #: CA certificates whose signers may sign for this peer.
    trust_anchors: list[str]
    #: the peer's own signers, so another agency's certificate under the same CA cannot sign
    #: for it: subjects (RFC 4514, "CN=...,O=...,C=VN") and/or certificate files (PEM).
    #: Both empty: any signer under trust_anchors.
    signer_subjects: list[str] = []
    signer_certificates: list[str] = []
    #: reject: quarantine packets whose signature is not valid and trusted;
    #: flag: import them anyway and record the outcome for the auditor.
    signature_policy: Literal["reject", "flag"] = "reject"
    #: edXML signatures: default (RSA-SHA256, exclusive c14n) or legacy (adds RSA-SHA1 and
    #: inclusive c14n), both for what we accept from this peer and what we send it.
    signature_profile: Literal["default", "legacy"] = "default"
    #: postal address written in edXML To/From for this agency.
    address: str = ""
    #: accept malformed organisation ids (28.22.H17) from this peer, with a warning.
    tolerant_org_ids: bool = False
    #: when the revocation status of this peer's signer cannot be known (its CRL source
    #: unreachable past nextUpdate, OCSP down): reject the signature, or flag it (accept,
    #: warn, count in `status`). Applies to the trust anchors of this peer; when peers share
    #: an anchor, reject wins. See docs/revocation.md.
    revocation_unavailable: Literal["reject", "flag"] = "reject"

    @field_validator("signer_subjects")
    @classmethod
    def _subjects_parse(cls, v: list[str]) -> list[str]:
        from adapter.crypto.trust import parse_subject

        for s in v:
            parse_subject(s)
        return v


class RevocationAnchor(_Section):
    """Where the revocation status of certificates under one trust anchor is published."""

    #: a trust anchor file (as named in [signing] or [[peers]] trust_anchors).
    anchor: str
    #: CRL files (PEM or DER), re-read when they change.
    crl_files: list[str] = []
    #: CRL URLs, fetched and cached on disk until their nextUpdate.
    crl_urls: list[str] = []
    #: ask the OCSP responder a certificate names (AuthorityInfoAccess) when no current
    #: CRL covers it.
    ocsp: bool = True

    @field_validator("crl_urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"not an http(s) URL: {u!r}")
        return urls


class RevocationSection(_Section):
    """Revocation checking of every certificate that signs what we receive (CRL, OCSP)."""

    #: trust anchors whose certificates are checked; an anchor not listed is not checked.
    anchors: list[RevocationAnchor] = []
    #: policy when the status is unknown, for anchors no peer names (our own, checkpoints).
    unavailable: Literal["reject", "flag"] = "reject"
    #: seconds to connect and to read a CRL or an OCSP answer.
    fetch_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    #: after a failed fetch, wait this long before trying the source again.
    retry_seconds: float = Field(default=60.0, ge=0)
    #: where fetched CRLs are kept; default: <data_dir>/revocation.
    cache_dir: str = ""


class InboundSection(_Section):
    #: packets above this size are refused before parsing.
    max_packet_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)


class SimulatorSection(_Section):
    #: start the simulator inside `run` (the demo); production leaves this false.
    embedded: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8741, ge=0, le=65535)
    db: str = "var/simulator.db"
    trust_anchors: list[str] = ["certs/dev/ca.crt"]
    threads: int = Field(default=8, ge=1, le=64)
    #: serve HTTPS with this certificate and key (the dev PKI issues certs/dev/sim.crt).
    tls: bool = False
    tls_cert: str = "certs/dev/sim.crt"
    tls_key: str = "certs/dev/sim.key"
    #: with TLS, require client certificates issued by this CA (mutual TLS).
    tls_client_ca: str | None = None
    #: the court key the simulator signs judgments with, and the court's organisation id.
    court_key: str = "certs/dev/court.key"
    court_cert: str = "certs/dev/court.crt"
    court_organisation_id: OrgId = "000.00.00.T01"
    #: the simulator's RFC 3161 timestamp authority (POST /tsa), with the dev PKI's TSA key.
    tsa_cert: str = "certs/dev/tsa.crt"
    tsa_key: str = "certs/dev/tsa.key"
    #: judgments the simulator holds for the adapter when it starts with an empty outbox.
    demo_judgments: int = Field(default=0, ge=0, le=100_000)
    #: systems the simulated axis knows: id, organisation, shared secret.
    axis_clients: list[AxisClient] = []
    #: recipients the simulated axis answers for (01, then 03 or 02), as the courts and
    #: procuracies of the demo would: their status packets are signed with `agency_key`.
    axis_agencies: list[OrgId] = []
    agency_key: str = "certs/dev/court.key"
    agency_cert: str = "certs/dev/court.crt"
    #: refuse axis requests whose timestamp is further than this from the clock; unset
    #: (the default) accepts the official SDK, which reuses one timestamp per client.
    axis_max_skew_seconds: float | None = Field(default=None, gt=0)


class ServiceSection(_Section):
    #: processes preparing packets (map, validate, sign); CPU-bound, so processes not threads.
    #: "auto": one per core this process may run on, less one for the main process (which
    #: claims, sends and records), at least one; 0 builds in the main process.
    sign_workers: Annotated[int, Field(ge=0, le=32)] | Literal["auto"] = "auto"
    #: seconds to wait for running jobs on SIGTERM before leaving the rest to leases.
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def sign_worker_count(self) -> int:
        """`sign_workers` as a number: "auto" is the usable cores less one, at least one."""
        if self.sign_workers != "auto":
            return self.sign_workers
        return max(1, min(32, usable_cores() - 1))


class MetricsSection(_Section):
    """The service's HTTP endpoint for monitoring: /metrics (Prometheus), /healthz, /readyz."""

    #: "host:port" to listen on ("[::1]:9741" for IPv6); "" turns the endpoint off. Keep it
    #: on a loopback or management address: the figures are not secret, but not public.
    address: str = ""
    #: delivered and cancelled counts grow with the history: they are recounted at most
    #: this often (the backlog's counts are read at every scrape).
    totals_seconds: float = Field(default=60.0, ge=0, le=86_400)

    @field_validator("address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        """An unparseable address fails at start with the key named, not at first scrape."""
        from adapter.service.endpoint import parse_address

        if value:
            parse_address(value)
        return value


class LoggingSection(_Section):
    #: text: one readable line per event; json: one JSON object per line (journald, ELK),
    #: personal ID numbers masked as in text.
    format: Literal["text", "json"] = "text"


class AuditSection(_Section):
    #: keep the evidence log (hash-chained, in the state database).
    enabled: bool = True
    #: sign the chain's tip at least this often...
    checkpoint_seconds: float = Field(default=300.0, gt=0)
    #: ...and whenever this many entries have been added since the last checkpoint.
    checkpoint_entries: int = Field(default=10_000, ge=1)
    #: RFC 3161 timestamp authority for checkpoints ("" for none), and the CA its
    #: certificate chains to.
    tsa_url: str = ""
    tsa_ca_file: str = "certs/dev/ca.crt"
    #: with a TSA configured, a checkpoint older than this without a token is a problem for
    #: `audit verify` (a removed token, or an outage that long), not a note.
    tsa_grace_seconds: float = Field(3600.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _no_auditor_group_here(cls, data: Any) -> Any:
        """Who is an auditor is fixed at install (adapter.roles), never by a file or a
        variable the caller chooses: an old `auditor_group` here is refused, not ignored."""
        if isinstance(data, dict) and "auditor_group" in data:
            raise ValueError(
                "auditor_group is no longer read from the configuration or the environment "
                "(whoever runs the CLI chooses those): root sets it in "
                "/etc/thads-adapter/roles.toml (see the auditor guide)")
        return data


class Settings(_Section):
    adapter: AdapterSection
    source: SourceSection = SourceSection()
    signing: SigningSection = SigningSection()
    lgsp: LgspSection = LgspSection()
    axis: AxisSection = AxisSection()
    retry: RetrySection = RetrySection()
    routes: list[RouteSection] = []
    peers: list[PeerSection] = []
    inbound: InboundSection = InboundSection()
    revocation: RevocationSection = RevocationSection()
    audit: AuditSection = AuditSection()
    simulator: SimulatorSection = SimulatorSection()
    service: ServiceSection = ServiceSection()
    metrics: MetricsSection = MetricsSection()
    logging: LoggingSection = LoggingSection()

    #: the file this came from and the directory relative paths are resolved against.
    source_file: str = Field(default="<memory>", exclude=True)
    root: str = Field(default=".", exclude=True)
    _kinds: KindRegistry = PrivateAttr(default=KINDS)

    @property
    def kinds(self) -> KindRegistry:
        """The packet kinds these routes were checked against."""
        return self._kinds

    @field_validator("routes")
    @classmethod
    def _unique_routes(cls, routes: list[RouteSection]) -> list[RouteSection]:
        names = [r.name for r in routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"route names must be unique, repeated: {', '.join(dupes)}")
        return routes

    def path(self, value: str) -> Path:
        """A configured path, absolute, resolved against the project root."""
        p = Path(value)
        return p if p.is_absolute() else Path(self.root) / p

    def url(self, value: str) -> str:
        """A SQLAlchemy URL with a relative SQLite path made absolute."""
        prefix = "sqlite:///"
        relative = not value.startswith(prefix + "/") and ":memory:" not in value
        if value.startswith(prefix) and relative:
            return prefix + str(self.path(value[len(prefix):]))
        return value

    def peer_of(self, organisation_id: str) -> PeerSection | None:
        for p in self.peers:
            if organisation_id in p.organisation_ids:
                return p
        return None

    def route(self, name: str) -> RouteSection:
        for r in self.routes:
            if r.name == name:
                return r
        raise KeyError(name)


def _apply_env(data: dict, environ: dict[str, str]) -> dict:
    """`THADS__LGSP__ENDPOINT=…` overrides `[lgsp] endpoint`; values are TOML literals or text."""
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__") if k]
        if not keys:
            continue
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return data


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)


def load_settings(path: str | os.PathLike[str] | None = None,
                  environ: dict[str, str] | None = None, *,
                  kinds: KindRegistry | None = None) -> Settings:
    """Settings from a file; routes are checked against `kinds` (default: the adapter's)."""
    file = config_path(str(path) if path else None)
    shown = str(file)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(shown, "-", "file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(shown, "-", f"not UTF-8 ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(shown, "-", f"not valid TOML: {exc}") from None
    data = _apply_env(data, dict(os.environ if environ is None else environ))
    root = file.resolve().parent.parent if file.resolve().parent.name == "config" \
        else file.resolve().parent
    data["source_file"], data["root"] = shown, str(root)
    try:
        settings = Settings.model_validate(data, context={"kinds": kinds or KINDS})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "-"
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown key (misspelt, or not supported by this version)"
        elif err["type"] == "missing":
            reason = "required key is missing"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(shown, key, reason + more) from None
    settings._kinds = kinds or KINDS
    return settings
