"""The validated configuration: frozen dataclasses, one per concern.

These objects are values only. Loading them from TOML, the environment and the command line,
and validating every field, lives in ``wsguard.config``. ``None`` means "disabled / not set".
Secrets never appear here: only the *names* of the environment variables or files that hold
them (``secret_env``, ``key_env``), so printing a ``Settings`` can never leak one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ApiConfig",
    "AuthConfig",
    "BasicConfig",
    "BrokerConfig",
    "ChannelConfig",
    "CookieConfig",
    "JwtConfig",
    "LimitsConfig",
    "LogConfig",
    "MtlsConfig",
    "OriginsConfig",
    "ServerConfig",
    "Settings",
    "TicketConfig",
]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The public listener."""

    host: str = "127.0.0.1"
    port: int = 8080
    ws_path: str = "/ws"
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    tls_client_auth: Literal["optional", "required"] = "optional"
    # Insecure switch: accept plain ws:// from any peer (logs a warning at start-up).
    allow_plaintext: bool = False
    # Peers (IPs or CIDR networks) whose X-Forwarded-Proto / X-Forwarded-For are believed.
    trusted_proxies: tuple[str, ...] = ()
    workers: int = 1
    # Echo every data frame back instead of speaking the wire protocol. For RFC 6455
    # conformance runs (Autobahn) and engine benchmarks only; logs a warning at start-up.
    echo: bool = False


@dataclass(frozen=True, slots=True)
class OriginsConfig:
    """Host and Origin allow-lists: the defence against CSWSH and DNS rebinding."""

    allowed_hosts: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    allow_missing: bool = False
    allow_null: bool = False
    # Insecure switch: any Origin is accepted (logs a warning at start-up).
    allow_any_origin: bool = False


@dataclass(frozen=True, slots=True)
class JwtConfig:
    algorithms: tuple[str, ...] = ("HS256",)
    secret_env: str | None = None
    public_key_file: str | None = None
    jwks_file: str | None = None
    jwks_url: str | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway: float = 5.0


@dataclass(frozen=True, slots=True)
class TicketConfig:
    ttl: float = 30.0
    secret_env: str = "WSGUARD_TICKET_SECRET"  # noqa: S105 - a variable name


@dataclass(frozen=True, slots=True)
class CookieConfig:
    """A signed session cookie, accepted only with a CSRF nonce bound to that session."""

    name: str = "session"
    secret_env: str = "WSGUARD_COOKIE_SECRET"  # noqa: S105 - a variable name


@dataclass(frozen=True, slots=True)
class BasicConfig:
    users_file: str | None = None


@dataclass(frozen=True, slots=True)
class MtlsConfig:
    identity: Literal["cn", "san"] = "cn"


AuthMethod = Literal["ticket", "jwt", "cookie", "basic", "mtls"]


@dataclass(frozen=True, slots=True)
class AuthConfig:
    required: bool = True
    methods: tuple[AuthMethod, ...] = ("ticket", "jwt")
    first_message_timeout: float = 5.0
    # Seconds before a credential expires that the server pushes {"push": "expiring"}.
    expiring_notice: float = 60.0
    # Seconds after expiry before an unrefreshed connection is closed with 4401.
    expiry_grace: float = 5.0
    # How long a revocation refuses the user's older credentials (longer than any lifetime).
    revocation_ttl: float = 86400.0
    jwt: JwtConfig = field(default_factory=JwtConfig)
    ticket: TicketConfig = field(default_factory=TicketConfig)
    cookie: CookieConfig = field(default_factory=CookieConfig)
    basic: BasicConfig = field(default_factory=BasicConfig)
    mtls: MtlsConfig = field(default_factory=MtlsConfig)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Every limit names the threat it guards against in docs/reference/config.md."""

    max_message_bytes: int = 65536
    max_fragments: int = 128
    messages_per_second: float = 20.0
    burst: int = 40
    # Inbound bytes per connection; the bucket holds two seconds' worth (at least one message).
    bytes_per_second: int = 1048576
    # Every connection of one user together (anonymous: of one client address).
    user_messages_per_second: float = 50.0
    user_burst: int = 100
    user_bytes_per_second: int = 4194304
    max_connections: int = 10000
    max_connections_per_ip: int = 50
    max_connections_per_user: int = 20
    handshake_rate: float = 10.0
    handshake_burst: int = 20
    max_header_bytes: int = 16384
    handshake_timeout: float = 5.0
    idle_timeout: float = 300.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 5.0
    max_send_queue_bytes: int = 1048576
    max_violations: int = 5
    # Refused messages older than this many seconds no longer count towards max_violations.
    violation_window: float = 60.0
    # Seconds an rpc handler may take before the caller gets 503 ``timeout``.
    rpc_timeout: float = 10.0
    max_channels_per_connection: int = 128
    json_max_depth: int = 32
    compression: bool = False


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    # memory:// (one process) or redis://[:password@]host:port/db, rediss:// for TLS.
    url: str = "memory://"
    # Put before every Redis key and pub/sub channel: deployments sharing one Redis stay apart.
    prefix: str = "wsguard:"
    # Seconds a presence entry outlives its node's last refresh (a dead node's clients leave).
    presence_ttl: float = 60.0


@dataclass(frozen=True, slots=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8081
    key_env: str = "WSGUARD_API_KEY"


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    audit: bool = True


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """One ``[[channels]]`` rule: which channels it covers and who may do what on them.

    Grants are ``"anonymous"``, ``"authenticated"``, ``"role:NAME"``, ``"owner"`` (the channel's
    last segment is the user id) and ``"claim"`` (the credential's ``channels`` claim lists it).
    An action with no grant is denied. See ``wsguard.core.channels`` for the pattern syntax.
    """

    pattern: str
    subscribe: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    history: tuple[str, ...] = ()
    presence: tuple[str, ...] = ()
    # Path of a JSON Schema file for inbound ``publish`` data (compiled elsewhere).
    schema: str | None = None
    # Path of a JSON Schema file every publication must satisfy before fan-out.
    output_schema: str | None = None
    # "html" escapes every string leaf of a publication once, before fan-out (stored XSS).
    encode: Literal["none", "html"] = "none"
    # Publications kept per channel for recovery; 0 keeps none. At most 10,000 (memory).
    history_size: int = 0
    # Seconds a publication stays in history; 0 means no expiry.
    history_ttl: float = 0.0


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerConfig = field(default_factory=ServerConfig)
    origins: OriginsConfig = field(default_factory=OriginsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    log: LogConfig = field(default_factory=LogConfig)
    # [[channels]] rules, in file order: the first matching rule wins.
    channels: tuple[ChannelConfig, ...] = ()
