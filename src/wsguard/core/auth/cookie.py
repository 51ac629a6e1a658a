"""Cookie sessions, accepted only together with a CSRF nonce bound to the session.

Performs no I/O; reads no clock (``now`` comes in as an argument); draws no randomness (the
session id comes in from ``wsguard.sessions.issue_session``). DESIGN.md §4.

This is the defence against Cross-Site WebSocket Hijacking: a browser attaches the session
cookie to a handshake that *any* page opens, so a cookie on its own proves nothing about who
opened the socket. The page must also present ``?csrf=<nonce>``, which only a page of our own
origin can read (the same-origin policy keeps it from a cross-site page), and the Origin must
have been checked (never accepted without one).

Formats:

- Session cookie: the unpadded base64url of the compact JSON
  ``{"sid":..,"sub":..,"exp":..,"roles":[..]}``, signed with ``itsdangerous.Signer`` (salt
  ``wsguard-session``, HMAC-SHA256; no timestamp, the payload carries its own expiry).
- CSRF nonce: the unpadded base64url of HMAC-SHA256(secret, ``b"wsguard-csrf-v1." + sid``),
  43 characters. The prefix keeps it apart from ticket MACs made with the same secret; the
  salted key derivation of ``Signer`` keeps cookie signatures apart from both.

Every bad credential is a ``Reject`` whose ``audit_reason`` is in ``COOKIE_REASONS``; nothing
raises on bad input, and no cookie or nonce text ever goes into a ``Reject``.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from itsdangerous import BadSignature, Signer

from wsguard.core.auth.payload import b64url_decode_json, b64url_encode, is_number
from wsguard.core.auth.ticket import MIN_SECRET_BYTES, query_param
from wsguard.core.decisions import Principal, Reject
from wsguard.core.handshake import HandshakeContext
from wsguard.core.upgrade import UpgradeRequest

__all__ = [
    "COOKIE_REASONS",
    "MAX_COOKIE_LENGTH",
    "CookieAuthenticator",
    "CookieVerifier",
    "Session",
    "csrf_nonce",
    "encode_session",
    "read_session",
]

COOKIE_REASONS: Final = frozenset(
    {
        "bad_session_cookie",  # 401
        "expired_session",  # 401
        "origin_missing_with_credentials",  # 403
        "csrf_missing",  # 403
        "csrf_mismatch",  # 403
        "duplicate_cookie",  # 400
        "duplicate_param",  # 400
        "too_many_params",  # 400
    }
)
"""Every ``audit_reason`` a cookie ``Reject`` carries."""

# Browsers store at most ~4096 bytes per cookie (RFC 6265 §6.1); anything longer is not ours,
# and the cap bounds the MAC and JSON work an unauthenticated peer can make us do.
MAX_COOKIE_LENGTH: Final = 4096

_SALT: Final = b"wsguard-session"
_CSRF_PREFIX: Final = b"wsguard-csrf-v1."
_FIELDS: Final = frozenset({"sid", "sub", "exp", "roles"})
_SIGNED: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", re.ASCII)
# RFC 6265 §4.1.1: a cookie-name is an RFC 2616 token.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", re.ASCII)
# The session id keys the CSRF nonce; issue_session uses 24 random URL-safe characters.
_SESSION_ID: Final = re.compile(r"[A-Za-z0-9_-]{16,64}", re.ASCII)
_MAX_USER_LENGTH: Final = 255

_BAD_COOKIE: Final = Reject(401, "Unauthorized", "bad_session_cookie")
_EXPIRED: Final = Reject(401, "Unauthorized", "expired_session")
_ORIGIN_MISSING: Final = Reject(403, "Forbidden", "origin_missing_with_credentials")
_CSRF_MISSING: Final = Reject(403, "Forbidden", "csrf_missing")
_CSRF_MISMATCH: Final = Reject(403, "Forbidden", "csrf_mismatch")
_DUPLICATE_COOKIE: Final = Reject(400, "Bad Request", "duplicate_cookie")


@dataclass(frozen=True, slots=True)
class Session:
    """The content of a verified session cookie (not yet checked for expiry).

    Attributes:
        session_id: the random session id (the CSRF nonce is bound to it).
        user: the user id.
        expires_at: when the session ends (seconds, wall clock).
        roles: the roles it grants.
    """

    session_id: str
    user: str
    expires_at: float
    roles: frozenset[str]


def _signer(secret: bytes) -> Signer:
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the cookie secret must be at least {MIN_SECRET_BYTES} bytes")
    # Signer, not TimestampSigner: the latter reads the wall clock, and the payload carries
    # its own expiry anyway.
    return Signer(secret, salt=_SALT, digest_method=hashlib.sha256)


def csrf_nonce(secret: bytes, session_id: str) -> str:
    """The CSRF nonce bound to one session (43 URL-safe characters).

    Args:
        secret: the cookie secret.
        session_id: the session's id.
    """
    mac = hmac.digest(secret, _CSRF_PREFIX + session_id.encode("utf-8"), hashlib.sha256)
    return b64url_encode(mac)[:43]


def encode_session(
    secret: bytes,
    *,
    session_id: str,
    user: str,
    expires_at: float,
    roles: Sequence[str] = (),
) -> str:
    """Sign a session cookie value. Pure: the caller supplies the random id and the expiry.

    Args:
        secret: the cookie secret, at least ``MIN_SECRET_BYTES`` bytes.
        session_id: 16 to 64 URL-safe random characters.
        user: the user id, 1 to 255 characters.
        expires_at: when the session ends (seconds, wall clock).
        roles: the roles to grant.

    Returns:
        The cookie value (cookie-octets only: no quoting needed).

    Raises:
        ValueError: when an argument is out of range.
    """
    signer = _signer(secret)
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        raise ValueError("session_id must be 16 to 64 URL-safe characters")
    if not isinstance(user, str) or not 1 <= len(user) <= _MAX_USER_LENGTH:
        raise ValueError(f"user must be 1 to {_MAX_USER_LENGTH} characters")
    if not is_number(expires_at) or not math.isfinite(expires_at):
        raise ValueError("expires_at must be a finite number")
    # A bare str is a Sequence[str] too: roles="admin" would silently become five roles.
    if isinstance(roles, str) or not all(isinstance(r, str) for r in roles):
        raise ValueError(f"roles must be a sequence of strings, not {roles!r}")
    claims = {"sid": session_id, "sub": user, "exp": expires_at, "roles": list(roles)}
    compact = json.dumps(claims, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return signer.sign(b64url_encode(compact.encode("ascii"))).decode("ascii")


def read_session(secret: bytes, value: str) -> Session | None:
    """Verify a session cookie's signature and decode it (expiry is the caller's to check).

    Args:
        secret: the cookie secret.
        value: the cookie value as received.

    Returns:
        The session, or ``None`` when the value is not a well-formed cookie signed with
        ``secret``. Never raises on bad input.

    Raises:
        ValueError: when the secret is too short.
    """
    signer = _signer(secret)
    if not isinstance(value, str) or len(value) > MAX_COOKIE_LENGTH:
        return None
    if not _SIGNED.fullmatch(value):
        return None
    try:
        payload = signer.unsign(value)  # constant-time comparison inside
        claims = b64url_decode_json(payload.decode("ascii"))
    except (BadSignature, binascii.Error, ValueError, RecursionError):
        return None
    if not isinstance(claims, dict) or claims.keys() != _FIELDS:
        return None
    sid, sub, exp, roles = claims["sid"], claims["sub"], claims["exp"], claims["roles"]
    if not (
        isinstance(sid, str)
        and _SESSION_ID.fullmatch(sid)
        and isinstance(sub, str)
        and 1 <= len(sub) <= _MAX_USER_LENGTH
        and is_number(exp)
        and isinstance(roles, list)
        and all(isinstance(r, str) for r in roles)
    ):
        return None
    try:
        expires_at = float(exp)
    except OverflowError:  # an integer beyond the float range
        return None
    return Session(sid, sub, expires_at, frozenset(roles))


def _cookie_values(request: UpgradeRequest, name: str) -> list[str]:
    """Every value of cookie ``name`` in the request's ``Cookie`` header field(s).

    A small strict parser for the RFC 6265 §4.2.1 grammar (``name=value; name=value``), not
    ``http.cookies.SimpleCookie``: that one silently drops the rest of a header after a pair it
    cannot parse and unquotes octal escapes, so what it finds depends on other cookies.
    """
    found: list[str] = []
    for header in request.headers.get_all("Cookie"):
        for pair in header.split(";"):
            key, eq, value = pair.strip(" \t").partition("=")
            if eq and key.strip(" \t") == name:
                found.append(value.strip(" \t"))
    return found


class CookieVerifier:
    """Verifies a session cookie and the CSRF nonce that must come with it.

    Args:
        secret: the cookie secret, at least ``MIN_SECRET_BYTES`` bytes.
        cookie_name: the cookie's name (``auth.cookie.name``).

    Raises:
        ValueError: when the secret is too short or the name is not a cookie-name token.
    """

    __slots__ = ("_name", "_secret")

    def __init__(self, secret: bytes, cookie_name: str) -> None:
        _signer(secret)
        if not isinstance(cookie_name, str) or not _TOKEN.fullmatch(cookie_name):
            raise ValueError(f"cookie name {cookie_name!r} is not an RFC 6265 cookie-name")
        self._secret = secret
        self._name = cookie_name

    def verify(
        self, request: UpgradeRequest, ctx: HandshakeContext, now: float
    ) -> Principal | Reject | None:
        """Verify the session cookie and ``?csrf=``. Never raises on bad input.

        Args:
            request: the upgrade request.
            ctx: what the earlier stages established (the checked Origin).
            now: the current time in seconds, on the wall clock (cookies cross machines).

        Returns:
            ``None`` when the request has no cookie of this name; the ``Principal`` (method
            ``cookie``, expiring with the session); or a ``Reject``: 400 ``duplicate_cookie``,
            ``duplicate_param``, ``too_many_params``; 401 ``bad_session_cookie``,
            ``expired_session``; 403 ``origin_missing_with_credentials``, ``csrf_missing``,
            ``csrf_mismatch``.
        """
        values = _cookie_values(request, self._name)
        if not values:
            return None
        # Two cookies of our name (one tossed in by a sibling subdomain, RFC 6265 §8.6): picking
        # either lets the attacker choose. A __Host- prefixed name prevents the tossing.
        if len(values) > 1:
            return _DUPLICATE_COOKIE
        # Defence in depth: the origin stage already refuses a missing Origin with ambient
        # credentials, since without one nothing says which page opened the socket.
        if ctx.origin is None:
            return _ORIGIN_MISSING
        session = read_session(self._secret, values[0])
        if session is None:
            return _BAD_COOKIE
        if session.expires_at <= now:
            return _EXPIRED
        given = query_param(request.query, "csrf")
        if isinstance(given, Reject):
            return given
        if given is None:
            return _CSRF_MISSING
        expected = csrf_nonce(self._secret, session.session_id)
        # compare_digest refuses non-ASCII str; a nonce is ASCII, so anything else mismatches.
        if not (given.isascii() and hmac.compare_digest(given.encode("ascii"), expected.encode())):
            return _CSRF_MISMATCH
        return Principal(
            user_id=session.user,
            method="cookie",
            roles=session.roles,
            expires_at=session.expires_at,
        )


class CookieAuthenticator:
    """The ``cookie`` method: a signed session cookie plus ``?csrf=`` (see the module doc).

    Args:
        verifier: the verifier holding the cookie secret and name.
    """

    __slots__ = ("_verifier",)

    def __init__(self, verifier: CookieVerifier) -> None:
        self._verifier = verifier

    @property
    def name(self) -> str:
        """``"cookie"``."""
        return "cookie"

    def authenticate(
        self, request: UpgradeRequest, ctx: HandshakeContext, now: float
    ) -> Principal | Reject | None:
        """Delegate to ``CookieVerifier.verify``."""
        return self._verifier.verify(request, ctx, now)
