"""The handshake pipeline: one opening handshake in, ``Accept`` or ``Reject`` out.

Performs no I/O; reads no clock (``now`` comes in as an argument). Stages run cheapest first
(DESIGN.md §3): request -> host -> origin -> transport -> handshake rate -> connection caps ->
authentication -> per-user cap. Each returns ``None`` (or a value) to continue, or a ``Reject``
to stop; the first ``Reject`` wins. The pipeline fails closed: an exception anywhere becomes a
500 ``internal_error``, never an accept, and the peer only ever sees the generic phrase of the
status, while ``audit_reason`` (one of ``AUDIT_REASONS``) goes to the audit log.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Final, Protocol

from wsguard.core.decisions import (
    ANONYMOUS,
    PENDING,
    Accept,
    Authenticated,
    Principal,
    Reject,
)
from wsguard.core.host import HostPolicy, Scheme
from wsguard.core.limits import ConnectionCaps, KeyedRateLimiter, client_key
from wsguard.core.origin import OriginPolicy, has_ambient_credentials
from wsguard.core.transport import TransportPolicy
from wsguard.core.upgrade import UpgradeRequest
from wsguard.settings import Settings

__all__ = [
    "AUDIT_REASONS",
    "Authenticator",
    "HandshakeContext",
    "HandshakePipeline",
    "check_request",
]

AUDIT_REASONS: Final[Mapping[str, int]] = {
    # request stage
    "bad_method": 400,
    "bad_http_version": 400,
    "not_upgrade": 400,
    "bad_connection_header": 400,
    "bad_key": 400,
    "bad_version": 426,
    "duplicate_header": 400,
    "request_body": 400,
    "unknown_path": 404,
    # host stage
    "missing_host": 400,
    "host_malformed": 400,
    "host_not_allowed": 400,
    # origin stage
    "origin_missing": 403,
    "origin_null": 403,
    "origin_malformed": 403,
    "origin_not_allowed": 403,
    "origin_missing_with_credentials": 403,
    # transport stage
    "plaintext": 403,
    # caps stage
    "handshake_rate": 429,
    "ip_connection_cap": 429,
    "connection_cap": 503,
    "user_connection_cap": 429,
    # auth stage
    "auth_required": 401,
    # anywhere
    "internal_error": 500,
}
"""Every reason code the pipeline itself produces, with its HTTP status."""

# Fields that must appear at most once: two Hosts or two Origins let a proxy and this server
# disagree about which one counts (RFC 9112 §3.2, RFC 6454 §7.3); the others are single-valued
# by RFC 6455 §4.2.1 / §11.3.
_SINGLE_FIELDS: Final = ("Host", "Origin", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Upgrade")
# Exactly 16 bytes in canonical base64: 21 full characters, then one carrying 2 bits (the
# other 4 zero), then "==". Anything else is not what a conforming client sends.
_KEY: Final = re.compile(r"[A-Za-z0-9+/]{21}[AQgw]==", re.ASCII)
_OWS: Final = " \t"

_INTERNAL_ERROR: Final = Reject(500, "Internal Server Error", "internal_error")
_AUTH_REQUIRED: Final = Reject(401, "Unauthorized", "auth_required")
_AUTH_REQUIRED_BASIC: Final = Reject(
    401, "Unauthorized", "auth_required", (("WWW-Authenticate", 'Basic realm="wsguard"'),)
)
_HANDSHAKE_RATE: Final = Reject(429, "Too Many Requests", "handshake_rate", (("Retry-After", "1"),))
_BAD_VERSION: Final = Reject(
    426, "Upgrade Required", "bad_version", (("Sec-WebSocket-Version", "13"),)
)


def _bad(audit_reason: str) -> Reject:
    return Reject(400, "Bad Request", audit_reason)


def _has_token(values: tuple[str, ...], token: str) -> bool:
    # "ASCII case-insensitive" (RFC 6455 §2.1): str.lower() alone would also fold non-ASCII
    # look-alikes such as the Kelvin sign into "k".
    return any(
        part.isascii() and part.strip(_OWS).lower() == token
        for value in values
        for part in value.split(",")
    )


def check_request(request: UpgradeRequest, ws_path: str) -> Reject | None:
    """The request stage: is this a well-formed opening handshake for our WebSocket path?

    Args:
        request: the upgrade request.
        ws_path: ``server.ws_path``; the path (without query) must equal it.

    Returns:
        ``None`` to continue, or a ``Reject`` (400; 404 ``unknown_path``; 426 ``bad_version``).
    """
    # RFC 6455 §4.2.1 item 1: "An HTTP/1.1 or higher GET request". HTTP/2 and later use
    # extended CONNECT (RFC 8441) instead, so only HTTP/1.1 is an opening handshake here.
    if request.method != "GET":
        return _bad("bad_method")
    if request.http_version != "HTTP/1.1":
        return _bad("bad_http_version")
    if request.path != ws_path:
        return Reject(404, "Not Found", "unknown_path")
    headers = request.headers
    if headers.has_repeats and any(headers.count(name) > 1 for name in _SINGLE_FIELDS):
        return _bad("duplicate_header")
    # A GET handshake has no body; one announced anyway is a request-smuggling attempt.
    if "transfer-encoding" in headers or any(v != "0" for v in headers.get_all("content-length")):
        return _bad("request_body")
    # RFC 6455 §4.2.1 item 3: "An |Upgrade| header field containing the value "websocket",
    # treated as an ASCII case-insensitive value."
    if not _has_token(headers.get_all("Upgrade"), "websocket"):
        return _bad("not_upgrade")
    # RFC 6455 §4.2.1 item 4: "A |Connection| header field that includes the token "Upgrade",
    # treated as an ASCII case-insensitive value."
    if not _has_token(headers.get_all("Connection"), "upgrade"):
        return _bad("bad_connection_header")
    # RFC 6455 §4.2.1 item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded value
    # that, when decoded, is 16 bytes in length."
    key = headers.get("Sec-WebSocket-Key")
    if key is None or not _KEY.fullmatch(key) or len(base64.b64decode(key, validate=True)) != 16:
        return _bad("bad_key")
    # RFC 6455 §4.2.1 item 6: "A |Sec-WebSocket-Version| header field, with a value of 13."
    # §4.4: otherwise answer with "a |Sec-WebSocket-Version| header field indicating the
    # version(s) the server is capable of understanding" (426 Upgrade Required).
    if headers.get("Sec-WebSocket-Version") != "13":
        return _BAD_VERSION
    return None


@dataclass(frozen=True, slots=True)
class HandshakeContext:
    """What the earlier stages established, handed to authenticators.

    Attributes:
        client_ip: the client address (after trusted-proxy resolution).
        scheme: the effective scheme, ``https`` for ``wss://``.
        host: the normalised, allowed Host.
        port: the Host port, ``None`` when the Host had none.
        origin: the checked, serialized Origin, ``None`` when none was sent (and allowed).
    """

    client_ip: str
    scheme: Scheme
    host: str
    port: int | None
    origin: str | None


class Authenticator(Protocol):
    """One authentication method (ticket, JWT, cookie, basic, mTLS).

    ``authenticate`` returns a ``Principal`` (or an ``Authenticated`` carrying a single-use
    credential id to consume) when the request carries a valid credential of this method, a
    ``Reject`` when it carries an invalid one (the pipeline stops there), or ``None`` when it
    carries none (the next method is tried). It must not raise on bad input; if it does, the
    handshake is refused with 500 ``internal_error``.
    """

    @property
    def name(self) -> str:
        """The method name as configured in ``auth.methods``."""
        ...

    def authenticate(
        self, request: UpgradeRequest, ctx: HandshakeContext, now: float
    ) -> Authenticated | Principal | Reject | None:
        """Authenticate ``request`` (see the class docstring)."""
        ...


class HandshakePipeline:
    """Decides opening handshakes and accounts for the connections it accepts.

    Args:
        settings: the validated settings.
        loopback_bound: whether the listener only listens on loopback (see ``HostPolicy``).
        authenticators: the methods to try, in ``auth.methods`` order.

    Raises:
        ValueError: when an allow-list or proxy entry is invalid (configuration validation
            refuses those before a pipeline is built).
    """

    __slots__ = (
        "_authenticators",
        "_basic",
        "_caps",
        "_first_message",
        "_handshakes",
        "_hosts",
        "_origins",
        "_required",
        "_transport",
        "_ws_path",
    )

    def __init__(
        self,
        settings: Settings,
        *,
        loopback_bound: bool,
        authenticators: Sequence[Authenticator] = (),
    ) -> None:
        limits = settings.limits
        self._ws_path = settings.server.ws_path
        self._hosts = HostPolicy(settings.origins.allowed_hosts, loopback_bound)
        self._origins = OriginPolicy(settings.origins)
        self._transport = TransportPolicy(settings.server)
        self._handshakes = KeyedRateLimiter(limits.handshake_rate, limits.handshake_burst)
        self._caps = ConnectionCaps(
            limits.max_connections, limits.max_connections_per_ip, limits.max_connections_per_user
        )
        self._authenticators = tuple(authenticators)
        self._required = settings.auth.required
        self._basic = "basic" in settings.auth.methods
        self._first_message = bool({"ticket", "jwt"} & set(settings.auth.methods))

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet released."""
        return self._caps.total

    def decide(self, request: UpgradeRequest, now: float) -> Accept | Reject:
        """Decide one opening handshake. Never raises.

        On ``Accept`` a connection slot is reserved for the client (and user); the caller
        must hand the ``Accept`` to ``release`` exactly once when that connection ends, or
        when it fails to open after all.

        Args:
            request: the upgrade request.
            now: the current time in seconds, on the clock the caller always uses.

        Returns:
            ``Accept(principal, client_ip, origin, None, headers)`` with ``Vary: Origin`` and,
            when an Origin was checked, ``Access-Control-Allow-Origin``; or a ``Reject``.
        """
        try:
            return self._decide(request, now)
        except Exception:
            # Fail closed (DESIGN.md §2.4). The core has no logger; the listener audits the 500.
            return _INTERNAL_ERROR

    def rebind(self, accept: Accept, principal: Principal) -> Accept | Reject:
        """Bind ``principal`` to an open connection (first-message authentication, refresh).

        The connection's slot moves from the old user to the new one; a new user over
        ``max_connections_per_user`` gets 429 ``user_connection_cap`` and keeps the old slot.

        Returns:
            The connection's new ``Accept`` (hand that one to ``release``), or the ``Reject``.
        """
        old, new = accept.principal.user_id, principal.user_id
        if new != old:
            if new is not None:
                reject = self._caps.check_user(new)
                if reject is not None:
                    return reject
            key = client_key(accept.client_ip)
            self._caps.release(key, old)
            self._caps.acquire(key, new)
        return replace(accept, principal=principal)

    def release(self, accept: Accept) -> None:
        """Free the slot ``decide`` reserved for ``accept``. Releasing twice is harmless."""
        self._caps.release(client_key(accept.client_ip), accept.principal.user_id)

    def _decide(self, request: UpgradeRequest, now: float) -> Accept | Reject:
        reject = check_request(request, self._ws_path)
        if reject is not None:
            return reject
        headers = request.headers
        # The scheme is needed by the host (default port) and origin (same-origin) stages, so
        # it is derived first; whether plaintext is acceptable is checked after the origin.
        client_ip, scheme = self._transport.resolve(request)
        authority = self._hosts.check(headers.get_all("Host"), scheme)
        if isinstance(authority, Reject):
            return authority
        origin = self._origins.check(
            headers.get_all("Origin"),
            scheme=scheme,
            host=authority.host,
            port=authority.port,
            credentials=has_ambient_credentials(headers),
        )
        if isinstance(origin, Reject):
            return origin
        reject = self._transport.check(request, scheme)
        if reject is not None:
            return reject
        key = client_key(client_ip)
        if not self._handshakes.allow(key, now):
            return _HANDSHAKE_RATE
        reject = self._caps.check_ip(key)
        if reject is not None:
            return reject
        ctx = HandshakeContext(client_ip, scheme, authority.host, authority.port, origin)
        authenticated = self._authenticate(request, ctx, now)
        if isinstance(authenticated, Reject):
            return authenticated
        principal = authenticated.principal
        claimed = None
        if authenticated.verify is not None or authenticated.consume is not None:
            # Bound to its user only once the deferred check passed (see Accept.claimed): a
            # replayed ticket or a guessed password must not hold that user's slots.
            principal, claimed = PENDING, principal
        user_id = principal.user_id
        if user_id is not None:
            reject = self._caps.check_user(user_id)
            if reject is not None:
                return reject
        response_headers: tuple[tuple[str, str], ...] = (("Vary", "Origin"),)
        if origin is not None:
            response_headers += (("Access-Control-Allow-Origin", origin),)
        accept = Accept(
            principal,
            client_ip,
            origin,
            None,
            response_headers,
            authenticated.consume,
            authenticated.consume_until,
            authenticated.verify,
            authenticated.verify_reason,
            claimed,
        )
        self._caps.acquire(key, user_id)
        return accept

    def _authenticate(
        self, request: UpgradeRequest, ctx: HandshakeContext, now: float
    ) -> Authenticated | Reject:
        for authenticator in self._authenticators:
            result = authenticator.authenticate(request, ctx, now)
            if result is None:
                continue
            if isinstance(result, Reject):
                # Say little: whatever the method wrote, the peer gets the status's phrase.
                phrase = HTTPStatus(result.status).phrase
                return Reject(result.status, phrase, result.audit_reason, result.headers)
            if isinstance(result, Principal):
                result = Authenticated(result)
            if not isinstance(result, Authenticated):
                raise TypeError(f"authenticator {authenticator.name!r} returned {result!r}")
            if not result.principal.is_anonymous:
                return result
        if not self._required:
            return Authenticated(ANONYMOUS)
        if self._first_message:
            # No credential at the handshake, but one may come in the first message (browsers
            # cannot set headers): open a socket that may only authenticate, within
            # auth.first_message_timeout.
            return Authenticated(PENDING)
        if self._basic:
            # RFC 9110 §15.5.2: a 401 "MUST send a WWW-Authenticate header field containing at
            # least one challenge"; only Basic has one a client can act on here.
            return _AUTH_REQUIRED_BASIC
        return _AUTH_REQUIRED
