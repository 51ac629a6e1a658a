"""Tickets: short-lived, single-use, origin-bound credentials the app's backend mints.

Performs no I/O; reads no clock (``now`` comes in as an argument); draws no randomness (the
ticket id comes in from ``wsguard.tickets.mint``). DESIGN.md §4.

Format: ``<payload>.<signature>``, where ``payload`` is the unpadded base64url of the compact
JSON ``{"v":1,"jti":..,"sub":..,"origin":..,"exp":..,"roles":[..],"channels":[..]}`` and
``signature`` the unpadded base64url of HMAC-SHA256(secret, ``b"wsguard-ticket-v1." +
payload``). The MAC covers the encoded payload, so it is checked (in constant time) before any
byte of an untrusted payload is decoded or parsed; the prefix keeps a ticket MAC from ever
being mistaken for a session-cookie or CSRF MAC made with the same secret.

Rules:

- A ticket longer than ``MAX_TICKET_LENGTH`` is refused before any parsing (CPU/memory DoS).
- A ticket is bound to the Origin it was minted for: a ticket stolen from app A's page and
  replayed from origin B (or by a client sending no Origin) is refused with 403.
- It expires at ``exp`` (exclusive) and is single-use: the verifier hands its ``jti`` to the
  I/O layer, which consumes it atomically in the broker's store before answering 101 (replay
  fails on every node with 401 ``replayed_ticket``).
- Every bad ticket is a ``Reject`` whose ``audit_reason`` is in ``TICKET_REASONS``; nothing
  raises on bad input and no ticket text ever goes into a ``Reject``.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import parse_qs

from wsguard.core.auth.payload import b64url_decode_json, b64url_encode, is_number
from wsguard.core.decisions import Authenticated, Principal, Reject
from wsguard.core.handshake import HandshakeContext
from wsguard.core.origin import serialize_origin
from wsguard.core.upgrade import UpgradeRequest

__all__ = [
    "MAX_TICKET_LENGTH",
    "MIN_SECRET_BYTES",
    "TICKET_REASONS",
    "TicketAuthenticator",
    "TicketVerifier",
    "encode_ticket",
    "query_param",
]

TICKET_REASONS: Final = frozenset(
    {
        "bad_ticket",  # 401
        "expired_ticket",  # 401
        "ticket_origin_mismatch",  # 403
        "replayed_ticket",  # 401, produced by the I/O layer when consuming the jti fails
        "duplicate_param",  # 400
        "too_many_params",  # 400
    }
)
"""Every ``audit_reason`` a ticket ``Reject`` carries."""

# A real ticket is ~250 bytes; 2 KiB bounds the MAC, base64 and JSON work an unauthenticated
# peer can make us do per attempt, with room for a few roles and channels.
MAX_TICKET_LENGTH: Final = 2048
# RFC 2104 §3 / RFC 7518 §3.2: an HMAC-SHA256 key shorter than the hash output weakens it; a
# short secret can be brute-forced offline from any ticket seen in a log.
MIN_SECRET_BYTES: Final = 32
# The query string is attacker-sized; bounding the field count bounds parse_qs's work.
MAX_QUERY_FIELDS: Final = 20

_VERSION: Final = 1
_MAC_PREFIX: Final = b"wsguard-ticket-v1."
_FIELDS: Final = frozenset({"v", "jti", "sub", "origin", "exp", "roles", "channels"})
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
# A ticket id must be unguessable (mint uses 18 random bytes = 24 characters) and is a key in
# the broker's store, so it is bounded and restricted to URL-safe characters.
_TICKET_ID: Final = re.compile(r"[A-Za-z0-9_-]{16,64}", re.ASCII)
# Bounds the user id that caps, channel rules and the audit log key on.
_MAX_USER_LENGTH: Final = 255

_BAD_TICKET: Final = Reject(401, "Unauthorized", "bad_ticket")
_EXPIRED: Final = Reject(401, "Unauthorized", "expired_ticket")
_ORIGIN_MISMATCH: Final = Reject(403, "Forbidden", "ticket_origin_mismatch")
_DUPLICATE_PARAM: Final = Reject(400, "Bad Request", "duplicate_param")
_TOO_MANY_PARAMS: Final = Reject(400, "Bad Request", "too_many_params")


def _mac(secret: bytes, payload: str) -> str:
    return b64url_encode(hmac.digest(secret, _MAC_PREFIX + payload.encode("ascii"), hashlib.sha256))


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the ticket secret must be at least {MIN_SECRET_BYTES} bytes")


def _check_strings(name: str, values: Sequence[str]) -> list[str]:
    # A bare str is a Sequence[str] too: roles="admin" would silently become five roles.
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name} must be a sequence of strings, not {values!r}")
    return list(values)


def query_param(query: str, name: str) -> str | Reject | None:
    """The single value of ``name`` in a query string.

    Args:
        query: the raw query string (without ``?``).
        name: the parameter name.

    Returns:
        The decoded value (possibly empty); ``None`` when absent; a 400 ``Reject``
        ``duplicate_param`` when repeated (two values let a proxy and this server disagree on
        which one counts), or ``too_many_params`` beyond ``MAX_QUERY_FIELDS`` fields.
    """
    try:
        values = parse_qs(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS).get(name)
    except ValueError:
        return _TOO_MANY_PARAMS
    if values is None:
        return None
    if len(values) > 1:
        return _DUPLICATE_PARAM
    return values[0]


def encode_ticket(
    secret: bytes,
    *,
    ticket_id: str,
    user: str,
    origin: str,
    expires_at: float,
    roles: Sequence[str] = (),
    channels: Sequence[str] = (),
    issued_at: float | None = None,
) -> str:
    """Sign a ticket. Pure: the caller supplies the random id and the expiry.

    Args:
        secret: the HMAC key, at least ``MIN_SECRET_BYTES`` bytes.
        ticket_id: 16 to 64 URL-safe characters, unique per ticket (the single-use key).
        user: the user id, 1 to 255 characters.
        origin: the page origin allowed to present the ticket; normalised with
            ``serialize_origin`` (``HTTPS://App.Example:443`` becomes ``https://app.example``).
        expires_at: when the ticket stops being accepted (seconds, wall clock).
        roles: roles to grant the connection.
        channels: channels the connection is granted.
        issued_at: when it was minted (wall clock); a revocation of the user refuses tickets
            minted before it, and treats a ticket without one as minted before.

    Returns:
        The ticket, ``<payload>.<signature>`` (URL-safe, no escaping needed in a query).

    Raises:
        ValueError: when an argument is out of range.
    """
    _check_secret(secret)
    if not isinstance(ticket_id, str) or not _TICKET_ID.fullmatch(ticket_id):
        raise ValueError("ticket_id must be 16 to 64 URL-safe characters")
    if not isinstance(user, str) or not 1 <= len(user) <= _MAX_USER_LENGTH:
        raise ValueError(f"user must be 1 to {_MAX_USER_LENGTH} characters")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
        raise ValueError("expires_at must be a number")
    if not math.isfinite(expires_at):
        raise ValueError("expires_at must be finite")
    claims = {
        "v": _VERSION,
        "jti": ticket_id,
        "sub": user,
        "origin": serialize_origin(origin),
        "exp": expires_at,
        "roles": _check_strings("roles", roles),
        "channels": _check_strings("channels", channels),
    }
    if issued_at is not None:
        if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
            raise ValueError("issued_at must be a number")
        if not math.isfinite(issued_at):
            raise ValueError("issued_at must be finite")
        claims["iat"] = issued_at
    compact = json.dumps(claims, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    payload = b64url_encode(compact.encode("ascii"))
    return f"{payload}.{_mac(secret, payload)}"


def _is_strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _decode_claims(payload: str) -> dict[str, Any] | None:
    """The claims of an authenticated payload, or ``None`` when they are not well formed."""
    try:
        claims = b64url_decode_json(payload)
    except (binascii.Error, ValueError, RecursionError):
        return None
    if not isinstance(claims, dict) or claims.keys() - {"iat"} != _FIELDS:
        return None
    if "iat" in claims:
        if not is_number(claims["iat"]):
            return None
        try:
            claims["iat"] = float(claims["iat"])
        except OverflowError:
            return None
    version, exp = claims["v"], claims["exp"]
    jti, sub, origin = claims["jti"], claims["sub"], claims["origin"]
    if not (
        isinstance(version, int)
        and not isinstance(version, bool)
        and version == _VERSION
        and isinstance(jti, str)
        and _TICKET_ID.fullmatch(jti)
        and isinstance(sub, str)
        and 1 <= len(sub) <= _MAX_USER_LENGTH
        and isinstance(origin, str)
        and is_number(exp)
        and _is_strings(claims["roles"])
        and _is_strings(claims["channels"])
    ):
        return None
    try:
        claims["exp"] = float(exp)
    except OverflowError:  # an integer beyond the float range
        return None
    return claims


class TicketVerifier:
    """Verifies tickets signed by ``encode_ticket`` with the same secret.

    Used by ``TicketAuthenticator`` for ``?ticket=``, and by the session layer for a ticket
    sent in the first message (``{"op":"auth","ticket":...}``).

    Args:
        secret: the HMAC key, at least ``MIN_SECRET_BYTES`` bytes.

    Raises:
        ValueError: when the secret is too short.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        _check_secret(secret)
        self._secret = secret

    def verify(self, ticket: str, *, origin: str | None, now: float) -> Authenticated | Reject:
        """Verify one ticket. Never raises on bad input.

        Args:
            ticket: the ticket as presented.
            origin: the request's checked, serialized Origin (``None`` when none was sent).
            now: the current time in seconds, on the wall clock (tickets cross machines).

        Returns:
            ``Authenticated`` whose ``consume`` is the ticket id and ``consume_until`` its
            expiry (the I/O layer must consume it before accepting), or a ``Reject``: 401
            ``bad_ticket`` / ``expired_ticket``, 403 ``ticket_origin_mismatch``.
        """
        if not isinstance(ticket, str) or len(ticket) > MAX_TICKET_LENGTH:
            return _BAD_TICKET
        payload, dot, signature = ticket.partition(".")
        if not (dot and _B64URL.fullmatch(payload) and _B64URL.fullmatch(signature)):
            return _BAD_TICKET
        # Constant time (the MAC is recomputed in canonical form, so the comparison also
        # refuses non-canonical encodings of a valid signature).
        if not hmac.compare_digest(_mac(self._secret, payload), signature):
            return _BAD_TICKET
        claims = _decode_claims(payload)
        if claims is None:
            return _BAD_TICKET
        expires_at: float = claims["exp"]
        if expires_at <= now:
            return _EXPIRED
        # The binding that makes a stolen ticket useless elsewhere: it only works from the
        # page origin it was minted for, as the browser reports it (RFC 6454 §7).
        # The origin is not a secret: a plain comparison is fine.
        if origin is None or claims["origin"] != origin:
            return _ORIGIN_MISMATCH
        principal = Principal(
            user_id=claims["sub"],
            method="ticket",
            roles=frozenset(claims["roles"]),
            channels=frozenset(claims["channels"]),
            expires_at=None,
            issued_at=claims.get("iat"),
        )
        return Authenticated(principal, consume=claims["jti"], consume_until=expires_at)


class TicketAuthenticator:
    """The ``ticket`` method: a ticket in the ``ticket`` query parameter.

    A ticket in a URL is acceptable because it is single-use and expires within seconds: a
    leaked log line is worthless.

    Args:
        verifier: the verifier holding the ticket secret.
    """

    __slots__ = ("_verifier",)

    def __init__(self, verifier: TicketVerifier) -> None:
        self._verifier = verifier

    @property
    def name(self) -> str:
        """``"ticket"``."""
        return "ticket"

    @property
    def verifier(self) -> TicketVerifier:
        """The verifier (the session layer uses it for first-message tickets)."""
        return self._verifier

    def authenticate(
        self, request: UpgradeRequest, ctx: HandshakeContext, now: float
    ) -> Authenticated | Reject | None:
        """Verify ``?ticket=``; ``None`` when the query has no ticket parameter."""
        ticket = query_param(request.query, "ticket")
        if ticket is None or isinstance(ticket, Reject):
            return ticket
        return self._verifier.verify(ticket, origin=ctx.origin, now=now)
