"""The Origin header: serialization, allow-list patterns and the origin stage.

Performs no I/O; reads no clock. This is the defence against Cross-Site WebSocket Hijacking
(CSWSH): browsers do not apply the same-origin policy to WebSockets, but they do send an
``Origin`` header (RFC 6455 §4.1 item 8, §10.2) that a page cannot forge. So the server must
compare it, and compare it exactly: origins are compared as serialized tuples (RFC 6454 §5,
§6.2), never by prefix, suffix or substring.

Only what a browser sends is accepted: ``scheme://host[:port]`` with scheme http or https, no
path (not even ``/``), no userinfo, ASCII only (browsers send IDN hosts as punycode). Wildcard
allow-list entries exist only as ``https://*.example.com``: whole labels, https only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, NewType, cast

from wsguard.core.decisions import Reject
from wsguard.core.host import DEFAULT_PORTS, Scheme, is_ip_host, parse_host
from wsguard.core.upgrade import Headers
from wsguard.settings import OriginsConfig

__all__ = [
    "Origin",
    "OriginPattern",
    "OriginPolicy",
    "has_ambient_credentials",
    "parse_origin_pattern",
    "serialize_origin",
]

Origin = NewType("Origin", str)
"""A serialized origin (RFC 6454 §6.2): ``https://app.example.com``, ``http://127.0.0.1:8080``."""

_ORIGIN: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://(.*)", re.ASCII | re.DOTALL)
_WILDCARD: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://\*\.(.*)", re.ASCII | re.DOTALL)
_FORBIDDEN: Final = "Forbidden"
# How many allowed Origin values a policy remembers (see OriginPolicy.check).
_REMEMBERED: Final = 256


def _split(value: str) -> tuple[Scheme, str, int | None]:
    """Parse an origin into (scheme, host, port or ``None`` for the scheme's default)."""
    if not value.isascii():
        raise ValueError(f"origin {value!r} is not ASCII (browsers send IDN hosts as punycode)")
    match = _ORIGIN.fullmatch(value)
    if match is None:
        raise ValueError(f"origin {value!r} must look like scheme://host[:port]")
    scheme = match.group(1).lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"origin {value!r}: the scheme must be http or https")
    authority = match.group(2)
    if "@" in authority:
        raise ValueError(f"origin {value!r} has userinfo")
    if any(c in authority for c in "/?#"):
        raise ValueError(f"origin {value!r} has a path, query or fragment (not even '/' is sent)")
    host, port = parse_host(authority)
    # RFC 6454 §6.2 step 5 only writes the port when it is not the scheme's default.
    if port == DEFAULT_PORTS[scheme]:
        port = None
    return cast(Scheme, scheme), host, port


def _serialize(scheme: str, host: str, port: int | None) -> Origin:
    return Origin(f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}")


def serialize_origin(value: str) -> Origin:
    """Parse an Origin header value and return its serialization (RFC 6454 §6.2).

    ``HTTPS://App.Example.COM.:443`` becomes ``https://app.example.com``. ``null`` is not
    handled here: the policy decides about it.

    Raises:
        ValueError: when ``value`` is not exactly ``scheme://host[:port]`` with scheme http or
            https and a host as ``parse_host`` accepts it.
    """
    scheme, host, port = _split(value)
    return _serialize(scheme, host, port)


@dataclass(frozen=True, slots=True)
class OriginPattern:
    """One ``origins.allowed`` entry.

    Attributes:
        scheme: ``http`` or ``https`` (always ``https`` for a wildcard).
        host: the exact host, or for a wildcard the suffix after ``*.``.
        port: the port, ``None`` for the scheme's default.
        wildcard: ``*.`` matches one or more whole labels, never the suffix itself.
    """

    scheme: Scheme
    host: str
    port: int | None = None
    wildcard: bool = False

    def matches(self, scheme: str, host: str, port: int | None) -> bool:
        """Whether a parsed origin (default port as ``None``) matches this entry."""
        if scheme != self.scheme or port != self.port:
            return False
        if self.wildcard:
            # The leading dot keeps the match whole-label: "evilexample.com" never matches.
            return host.endswith("." + self.host)
        return host == self.host


def parse_origin_pattern(entry: str) -> OriginPattern:
    """Parse an ``origins.allowed`` entry.

    Accepted shapes: an exact origin (``https://app.example.com``, ``http://localhost:8080``)
    or ``https://*.example.com[:port]``, where ``*`` stands for one or more whole labels.

    Raises:
        ValueError: naming what is wrong (the config loader adds the field name).
    """
    if entry.strip() == "*":
        raise ValueError(
            "'*' would accept every origin; if that is really meant, set"
            " origins.allow_any_origin = true instead"
        )
    if entry == "null":
        raise ValueError("'null' is not an origin to list; see origins.allow_null")
    wildcard = _WILDCARD.fullmatch(entry)
    if wildcard is not None:
        if wildcard.group(1).lower() != "https":
            raise ValueError(f"{entry!r}: wildcard origins need https (https://*.example.com)")
        scheme, host, port = _split("https://" + wildcard.group(2))
        if is_ip_host(host):
            raise ValueError(f"{entry!r}: a wildcard needs a domain name, not an IP address")
        if "." not in host and host != "localhost":
            raise ValueError(f"{entry!r}: a wildcard over a single label would match a whole TLD")
        return OriginPattern(scheme, host, port, wildcard=True)
    if "*" in entry:
        raise ValueError(
            f"{entry!r}: '*' is only allowed as the whole leftmost label of an https origin,"
            " as in https://*.example.com"
        )
    scheme, host, port = _split(entry)
    return OriginPattern(scheme, host, port)


def has_ambient_credentials(headers: Headers) -> bool:
    """Whether the browser attached credentials on its own: a ``Cookie`` or HTTP Basic.

    These are the credentials a cross-site page gets for free, which is what makes CSWSH work;
    a request carrying them must prove where it comes from with an Origin.
    """
    if "cookie" in headers:
        return True
    for value in headers.get_all("authorization"):
        scheme = value.split(None, 1)
        if scheme and scheme[0].lower() == "basic":
            return True
    return False


class OriginPolicy:
    """The origin stage.

    Args:
        config: the ``[origins]`` section. ``allowed`` non-empty: the origin must match an
            entry. Empty: same-origin, the origin must equal the request's own effective
            scheme, host and port. ``allow_any_origin`` accepts any well-formed origin.
    """

    __slots__ = ("_allowed", "_config", "_patterns")

    def __init__(self, config: OriginsConfig) -> None:
        self._config = config
        self._patterns = tuple(parse_origin_pattern(entry) for entry in config.allowed)
        # (Origin value, scheme, host, port) -> its serialization, for values found allowed:
        # browsers send the same few origins, and the answer is a pure function of those four
        # (``credentials`` only matters for a missing or "null" Origin, never kept here).
        # Refused values are never kept (a peer picks those), and the size is bounded.
        self._allowed: dict[tuple[str, Scheme, str, int | None], Origin] = {}

    def check(
        self,
        values: tuple[str, ...],
        *,
        scheme: Scheme,
        host: str,
        port: int | None,
        credentials: bool,
    ) -> Origin | Reject | None:
        """Check the Origin field values of a request.

        Args:
            values: every ``Origin`` field value.
            scheme: the request's effective scheme.
            host: the request's normalised, already allowed host.
            port: the request's Host port (``None`` when absent).
            credentials: whether the request carries ambient credentials (cookie, Basic).

        Returns:
            The serialized origin, ``None`` when no Origin was sent and that is allowed, or a
            ``Reject`` (403; 400 ``duplicate_header`` for two Origin fields).
        """
        config = self._config
        if len(values) > 1:
            # RFC 6454 §7.3: "the user agent MUST NOT include more than one Origin header field".
            return Reject(400, "Bad Request", "duplicate_header")
        if not values:
            # A browser always sends Origin on a WebSocket handshake (RFC 6455 §4.1 item 8);
            # a credentialed request without one cannot prove it is not cross-site.
            if credentials:
                return Reject(403, _FORBIDDEN, "origin_missing_with_credentials")
            return None if config.allow_missing else Reject(403, _FORBIDDEN, "origin_missing")
        value = values[0]
        if value == "null":
            # RFC 6454 §7.3: "null" comes from privacy-sensitive contexts: sandboxed iframes,
            # file: pages, redirects. Any site can produce it, so with cookies it is CSWSH.
            if config.allow_null and not credentials:
                return Origin("null")
            return Reject(403, _FORBIDDEN, "origin_null")
        key = (value, scheme, host, port)
        known = self._allowed.get(key)
        if known is not None:
            return known
        try:
            o_scheme, o_host, o_port = _split(value)
        except ValueError:
            return Reject(403, _FORBIDDEN, "origin_malformed")
        origin = _serialize(o_scheme, o_host, o_port)
        if config.allow_any_origin:
            allowed = True
        elif self._patterns:
            allowed = any(p.matches(o_scheme, o_host, o_port) for p in self._patterns)
        else:
            own_port = None if port == DEFAULT_PORTS[scheme] else port
            allowed = (o_scheme, o_host, o_port) == (scheme, host, own_port)
        if not allowed:
            return Reject(403, _FORBIDDEN, "origin_not_allowed")
        if len(self._allowed) >= _REMEMBERED:
            self._allowed.clear()  # many distinct allowed values (a wildcard): start over
        self._allowed[key] = origin
        return origin
