"""What to scan and how: the target URL, the credentials to present, and the scan's bounds.

Parsing and the loopback rule live here; no traffic is sent. A target that is not on the loopback
interface is refused unless the user says they have permission (``--i-have-permission``): the
scanner sends hostile traffic, so pointing it at someone else's server must be deliberate.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "CREDENTIAL_PARAMS",
    "Credentials",
    "ScanOptions",
    "Target",
    "is_loopback",
    "parse_target",
]

# Query parameters that carry long-lived credentials. "ticket" is not one: a single-use ticket
# that expires in seconds is the recommended way to authenticate a browser's handshake.
CREDENTIAL_PARAMS: Final = frozenset(
    {"token", "access_token", "auth", "authorization", "jwt", "apikey", "api_key", "key",
     "password", "passwd", "secret", "session", "sessionid", "sid", "bearer", "id_token"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed ``ws://`` or ``wss://`` URL."""

    url: str
    secure: bool
    host: str  # as in the URL, without brackets
    port: int
    resource: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return name if self.port == default else f"{name}:{self.port}"

    @property
    def default_origin(self) -> str:
        """The origin a page served from the same host would send."""
        return f"{'https' if self.secure else 'http'}://{self.host_header}"

    def redacted(self) -> str:
        """The URL with the values of credential parameters replaced by ``REDACTED``: what
        reports show, since they end up in CI logs and code-scanning UIs."""
        parts = urlsplit(self.url)
        if not parts.query:
            return self.url
        pairs = [
            (k, "REDACTED" if k.lower() in CREDENTIAL_PARAMS | {"ticket"} else v)
            for k, v in self.query_params()
        ]
        return urlunsplit(parts._replace(query=urlencode(pairs)))

    def query_params(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.url).query, keep_blank_values=True)

    def with_scheme(self, secure: bool) -> Target:
        scheme = "wss" if secure else "ws"
        parts = urlsplit(self.url)
        return Target(urlunsplit((scheme, *parts[1:])), secure, self.host, self.port,
                      self.resource)  # fmt: skip


def parse_target(url: str) -> Target:
    """Parse a WebSocket URL.

    Raises:
        ValueError: naming what is wrong (scheme, host, port, user info, fragment).
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"the URL must start with ws:// or wss://, not {parts.scheme or url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL must not carry user:password (use --token or --cookie)")
    if parts.fragment:
        raise ValueError("WebSocket URLs have no #fragment (RFC 6455 §3)")
    host = parts.hostname
    if not host:
        raise ValueError("the URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the URL's port must be a number from 1 to 65535") from None
    secure = parts.scheme == "wss"
    if port == 0:
        raise ValueError("the URL's port must be from 1 to 65535")
    port = port if port is not None else (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url.strip(), secure, host, port, resource)


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(address).split("%")[0]).is_loopback for address in addresses
    )


@dataclass(frozen=True, slots=True)
class Credentials:
    """What an authenticated client presents. A ticket command runs once per connection."""

    token: str | None = None  # sent as Authorization: Bearer
    ticket_cmd: str | None = None  # prints a fresh single-use ticket on stdout
    ticket_param: str = "ticket"
    cookie: str | None = None

    @property
    def any(self) -> bool:
        return bool(self.token or self.ticket_cmd or self.cookie)


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """How a scan runs. Every probe is bounded by ``timeout``; connections by ``max_rate``."""

    target: Target
    origin: str
    credentials: Credentials = field(default_factory=Credentials)
    groups: frozenset[str] = frozenset()  # empty: all
    max_rate: float = 10.0  # new connections per second
    max_connections: int = 120  # the whole scan's budget
    timeout: float = 5.0
    cafile: str | None = None
    idle_wait: float = 0.0  # 0: the idle-timeout check is skipped
    slow_wait: float = 12.0  # how long an unfinished handshake is held open
