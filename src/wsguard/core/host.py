"""The Host header: parsing, allow-list patterns and the host stage of the handshake.

Performs no I/O; reads no clock. Never resolves names: a name is allowed because it is listed,
not because of the address it resolves to. That is what defeats DNS rebinding, where
``evil.test`` is made to resolve to ``127.0.0.1`` so that a browser treats our loopback server
as part of the attacker's site (the browser still sends ``Host: evil.test``).

Syntax follows RFC 3986 §3.2.2 (``host = IP-literal / IPv4address / reg-name``) narrowed to
what a browser can send: a reg-name must be LDH labels (RFC 1123 §2.1, punycode for
international names), IPv6 literals are bracketed and carry no zone id, and a name whose last
label is numeric must be a canonical dotted-quad IPv4 address (browsers read ``127.1`` and
``0x7f.1`` as addresses; we refuse them instead of guessing).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple, NewType

from wsguard.core.decisions import Reject

__all__ = [
    "DEFAULT_PORTS",
    "HostName",
    "HostPattern",
    "HostPolicy",
    "HostPort",
    "Scheme",
    "is_ip_host",
    "parse_host",
    "parse_host_pattern",
]

HostName = NewType("HostName", str)
"""A normalised host: lowercase, no trailing dot, IPv6 bracketed and compressed."""

Scheme = Literal["http", "https"]
"""The effective scheme of a request (``https`` for ``wss://``, after trusted-proxy rules)."""

DEFAULT_PORTS: Final[dict[str, int]] = {"http": 80, "https": 443}

# One LDH label (RFC 1123 §2.1): letters, digits, inner hyphens, 1-63 characters.
_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
# A last label that a browser would parse as a number (WHATWG URL "ends in a number").
_NUMERIC: Final = re.compile(r"[0-9]+|0x[0-9a-f]*", re.ASCII)
_PORT: Final = re.compile(r"[0-9]{1,5}", re.ASCII)
_MAX_NAME: Final = 253
_NOT_HOST: Final = (("@", "userinfo"), ("/", "a path"), ("?", "a query"), ("#", "a fragment"))
_LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "[::1]"})

_BAD_REQUEST: Final = "Bad Request"
# How many allowed Host values a policy remembers (see HostPolicy.check).
_REMEMBERED: Final = 256


class HostPort(NamedTuple):
    """A parsed Host header: normalised host and explicit port (``None`` when absent)."""

    host: HostName
    port: int | None


def parse_host(value: str) -> HostPort:
    """Parse a Host header value (RFC 3986 §3.2.2, ``host[:port]``).

    Args:
        value: the field value as received.

    Returns:
        The lowercased host with one trailing dot removed (IPv6 bracketed and compressed) and
        the port, or ``None`` when the value has none.

    Raises:
        ValueError: on anything else: userinfo, a path, whitespace, empty labels, non-ASCII,
            an empty port or a port outside 1-65535.
    """
    if not value:
        raise ValueError("host is empty")
    if not value.isascii():
        raise ValueError(f"host {value!r} is not ASCII (write international names in punycode)")
    for char, what in _NOT_HOST:
        if char in value:
            raise ValueError(f"host {value!r} has {what}; only host[:port] is allowed")
    if value.startswith("["):
        literal, bracket, rest = value[1:].partition("]")
        if not bracket:
            raise ValueError(f"host {value!r} has an unclosed IPv6 literal")
        host = _ipv6(literal)
    else:
        name, colon, port_text = value.partition(":")
        rest = colon + port_text
        host = _name(name)
    return HostPort(host, _port(rest, value))


def is_ip_host(host: str) -> bool:
    """Whether a host returned by ``parse_host`` is an IP address rather than a name."""
    return host.startswith("[") or _NUMERIC.fullmatch(host.rpartition(".")[2]) is not None


def _ipv6(literal: str) -> HostName:
    # Zone ids (RFC 6874) and IPvFuture never come from a browser; ipaddress would accept
    # "fe80::1%eth0", so refuse the "%" before asking it.
    if "%" in literal or literal[:1] in ("v", "V"):
        raise ValueError(f"IPv6 literal [{literal}] must be a plain address")
    try:
        address = ipaddress.IPv6Address(literal)
    except ValueError:
        raise ValueError(f"[{literal}] is not a valid IPv6 address") from None
    return HostName(f"[{address.compressed}]")


def _name(name: str) -> HostName:
    if name.endswith("."):
        name = name[:-1]  # one trailing dot: "example.com." is the same host (RFC 1034 §3.1)
    if not name:
        raise ValueError("host name is empty")
    lowered = name.lower()
    labels = lowered.split(".")
    if _NUMERIC.fullmatch(labels[-1]):
        try:
            return HostName(str(ipaddress.IPv4Address(lowered)))
        except ValueError:
            raise ValueError(f"{name!r} is neither a host name nor a dotted-quad IPv4") from None
    if len(lowered) > _MAX_NAME:
        raise ValueError(f"host name is longer than {_MAX_NAME} characters")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"host {name!r} has an invalid label {label!r} (letters, digits and inner"
                " hyphens only, 1-63 characters)"
            )
    return HostName(lowered)


def _port(rest: str, value: str) -> int | None:
    if not rest:
        return None
    if not rest.startswith(":") or not _PORT.fullmatch(rest[1:]):
        raise ValueError(f"host {value!r} must be host[:port] with a port of 1-5 digits")
    port = int(rest[1:])
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    return port


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One ``origins.allowed_hosts`` entry.

    Attributes:
        host: the exact host, or for a wildcard the suffix after ``*.``.
        port: the only port matched; ``None`` matches no port or the scheme's default port.
        wildcard: ``*.`` matches one or more whole labels, never the suffix itself.
    """

    host: str
    port: int | None = None
    wildcard: bool = False

    def matches(self, host: str, port: int | None, scheme: Scheme) -> bool:
        """Whether a normalised host and port, reached over ``scheme``, match this entry."""
        default = DEFAULT_PORTS[scheme]
        if (default if port is None else port) != (default if self.port is None else self.port):
            return False
        if self.wildcard:
            # The dot makes the match whole-label: "*.example.com" never matches
            # "evilexample.com", and a valid host has a non-empty label before the dot.
            return host.endswith("." + self.host)
        return host == self.host


def parse_host_pattern(entry: str) -> HostPattern:
    """Parse an ``origins.allowed_hosts`` entry.

    Accepted shapes: ``example.com``, ``example.com:8443``, ``*.example.com[:port]``, IP
    addresses (``127.0.0.1``, ``[::1]``). The ``*`` must be the whole leftmost label and stand
    before a domain name of at least two labels (``*.com`` would trust a whole TLD;
    ``*.localhost`` is the one single-label exception).

    Raises:
        ValueError: naming what is wrong (the config loader adds the field name).
    """
    if entry.startswith("*."):
        host, port = parse_host(entry[2:])
        if is_ip_host(host):
            raise ValueError(f"{entry!r}: a wildcard needs a domain name, not an IP address")
        if "." not in host and host != "localhost":
            raise ValueError(f"{entry!r}: a wildcard over a single label would match a whole TLD")
        return HostPattern(host, port, wildcard=True)
    if "*" in entry:
        raise ValueError(
            f"{entry!r}: '*' is only allowed as the whole leftmost label, as in '*.example.com'"
        )
    host, port = parse_host(entry)
    return HostPattern(host, port)


class HostPolicy:
    """The host stage: the Host header must name this server.

    Args:
        allowed_hosts: ``origins.allowed_hosts`` entries (see ``parse_host_pattern``).
        loopback_bound: whether the listener only listens on loopback. With an empty list, a
            loopback-bound server answers only ``localhost``, ``127.0.0.1`` and ``[::1]`` (any
            port); any other server with an empty list refuses every request (fail closed;
            configuration validation refuses that case before it gets here).
    """

    __slots__ = ("_allowed", "_loopback_only", "_patterns")

    def __init__(self, allowed_hosts: Sequence[str], loopback_bound: bool) -> None:
        self._patterns = tuple(parse_host_pattern(entry) for entry in allowed_hosts)
        self._loopback_only = loopback_bound and not self._patterns
        # (Host value, scheme) -> its parse, for values found allowed: clients send the same
        # few Host values on every handshake, and the answer is a pure function of the two.
        # Refused values are never kept (a peer picks those), and the size is bounded.
        self._allowed: dict[tuple[str, Scheme], HostPort] = {}

    def allows(self, host: str, port: int | None, scheme: Scheme) -> bool:
        """Whether a normalised host and port, reached over ``scheme``, are allowed."""
        if self._loopback_only:
            return host in _LOOPBACK_NAMES
        return any(pattern.matches(host, port, scheme) for pattern in self._patterns)

    def check(self, values: tuple[str, ...], scheme: Scheme) -> HostPort | Reject:
        """Check the Host field values of a request.

        Returns:
            The parsed host and port to continue with, or a 400 ``Reject``.
        """
        # RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
        # HTTP/1.1 request message that lacks a Host header field and to any request message
        # that contains more than one Host header field line or a Host header field with an
        # invalid field value."
        if not values or not values[0]:
            return Reject(400, _BAD_REQUEST, "missing_host")
        if len(values) > 1:
            return Reject(400, _BAD_REQUEST, "duplicate_header")
        key = (values[0], scheme)
        parsed = self._allowed.get(key)
        if parsed is not None:
            return parsed
        try:
            parsed = parse_host(values[0])
        except ValueError:
            return Reject(400, _BAD_REQUEST, "host_malformed")
        if not self.allows(parsed.host, parsed.port, scheme):
            return Reject(400, _BAD_REQUEST, "host_not_allowed")
        if len(self._allowed) >= _REMEMBERED:
            self._allowed.clear()  # many distinct allowed values (a wildcard): start over
        self._allowed[key] = parsed
        return parsed
