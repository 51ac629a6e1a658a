"""What the harnesses share: one fixed secret, credentials minted with it, and the handshake
configuration they are judged by. Not a harness itself (no ``TestOneInput``).

Everything here is deterministic (fixed ids, fixed clock), as libFuzzer needs: the same input
must always take the same path.
"""

from __future__ import annotations

import hmac
from typing import Final

import jwt

from wsguard.core.auth.basic import BasicAuthenticator, UserRecord
from wsguard.core.auth.cookie import (
    CookieAuthenticator,
    CookieVerifier,
    csrf_nonce,
    encode_session,
)
from wsguard.core.auth.jwt import JwtAuthenticator, JwtKeys, JwtVerifier
from wsguard.core.auth.ticket import TicketAuthenticator, TicketVerifier, encode_ticket
from wsguard.core.handshake import HandshakePipeline
from wsguard.settings import AuthConfig, OriginsConfig, ServerConfig, Settings

SECRET: Final = b"wsguard-fuzzing-secret-0123456789abcdef"
NOW: Final = 1_700_000_000.0
FAR: Final = NOW + 10**9
ORIGIN: Final = "https://app.example.com"
COOKIE_NAME: Final = "session"
PASSWORD: Final = "correct horse battery staple"  # noqa: S105 (a test user's)
WS_PATH: Final = "/ws"

# ------------------------------------------------------------------ minted credentials

TICKETS: Final = {
    "alice": encode_ticket(
        SECRET,
        ticket_id="fuzz-ticket-alice-0001",
        user="alice",
        origin=ORIGIN,
        expires_at=FAR,
        roles=["reader"],
        channels=["chat:room"],
        issued_at=NOW,
    ),
    "bob-other-origin": encode_ticket(
        SECRET,
        ticket_id="fuzz-ticket-bob-0000002",
        user="bob",
        origin="https://a.example.com:8443",
        expires_at=FAR,
    ),
    "carol-expired": encode_ticket(
        SECRET, ticket_id="fuzz-ticket-carol-00003", user="carol", origin=ORIGIN, expires_at=NOW
    ),
}
TICKET_PAYLOADS: Final = frozenset(t.partition(".")[0] for t in TICKETS.values())

JWTS: Final = {
    "alice": jwt.encode(
        {"sub": "alice", "exp": FAR, "iat": NOW, "roles": ["reader"], "channels": ["chat:room"]},
        SECRET,
        algorithm="HS256",
    ),
    "bob": jwt.encode({"sub": "bob", "exp": FAR, "nbf": NOW - 10}, SECRET, algorithm="HS256"),
    "carol-expired": jwt.encode({"sub": "carol", "exp": NOW - 3600}, SECRET, algorithm="HS256"),
    "dave-audience": jwt.encode({"sub": "dave", "exp": FAR, "aud": "x"}, SECRET, algorithm="HS256"),
}
# A signature covers exactly ``header.payload``: an accepted token must carry one of these.
JWT_SIGNING_INPUTS: Final = frozenset(t.rpartition(".")[0] for t in JWTS.values())

SESSION_IDS: Final = {"alice": "fuzz-session-alice-01", "erin": "fuzz-session-erin-002"}
COOKIES: Final = {
    "alice": encode_session(
        SECRET, session_id=SESSION_IDS["alice"], user="alice", expires_at=FAR, roles=["reader"]
    ),
    "erin-expired": encode_session(
        SECRET, session_id=SESSION_IDS["erin"], user="erin", expires_at=NOW
    ),
}
CSRF: Final = {user: csrf_nonce(SECRET, sid) for user, sid in SESSION_IDS.items()}
COOKIE_PAYLOADS: Final = frozenset(c.rpartition(".")[0] for c in COOKIES.values())

# Who a minted credential names; an accepted credential naming anyone else is a forgery.
MINTED_USERS: Final = frozenset({"alice", "bob", "carol", "dave", "erin"})


def _fake_hash(password_hash: str, password: str) -> bool:
    # Stands in for argon2 (far too slow to fuzz); constant-time like the real one.
    return hmac.compare_digest(password_hash.encode(), ("plain:" + password).encode())


USERS: Final = {"alice": UserRecord("alice", "plain:" + PASSWORD, frozenset({"reader"}))}


def ticket_verifier() -> TicketVerifier:
    return TicketVerifier(SECRET)


def jwt_verifier() -> JwtVerifier:
    return JwtVerifier(JwtKeys.from_secret(SECRET), ["HS256"])


def cookie_verifier() -> CookieVerifier:
    return CookieVerifier(SECRET, COOKIE_NAME)


def basic_authenticator() -> BasicAuthenticator:
    return BasicAuthenticator(USERS, _fake_hash, dummy_hash="plain:\x00dummy")


# ------------------------------------------------------------------ handshake configuration

ALLOWED_HOSTS: Final = ("app.example.com", "*.example.com:8443", "127.0.0.1:8080", "[::1]:8080")
ALLOWED_ORIGINS: Final = (ORIGIN, "https://*.example.com:8443", "http://127.0.0.1:8080")
TRUSTED_PROXY: Final = "10.0.0.1"

SETTINGS: Final = Settings(
    server=ServerConfig(ws_path=WS_PATH, trusted_proxies=(TRUSTED_PROXY,)),
    origins=OriginsConfig(allowed_hosts=ALLOWED_HOSTS, allowed=ALLOWED_ORIGINS),
    auth=AuthConfig(required=True, methods=("ticket", "jwt", "cookie", "basic")),
)


def pipeline() -> HandshakePipeline:
    """The pipeline a server with ``SETTINGS`` and every handshake method builds."""
    return HandshakePipeline(
        SETTINGS,
        loopback_bound=False,
        authenticators=(
            TicketAuthenticator(ticket_verifier()),
            JwtAuthenticator(jwt_verifier()),
            CookieAuthenticator(cookie_verifier()),
            basic_authenticator(),
        ),
    )


# Every handshake refusal docs/reference/codes.md documents, with its status. internal_error
# is left out on purpose: it means a check raised on peer input, which is a bug.
DOCUMENTED_REJECTS: Final = {
    **dict.fromkeys(
        [
            "bad_method", "bad_http_version", "not_upgrade", "bad_connection_header", "bad_key",
            "duplicate_header", "request_body", "missing_host", "host_malformed",
            "host_not_allowed", "duplicate_param", "too_many_params", "duplicate_cookie",
        ],
        400,
    ),
    **dict.fromkeys(
        [
            "auth_required", "malformed_token", "alg_not_allowed", "unknown_kid",
            "bad_signature", "missing_exp", "expired", "not_yet_valid", "audience", "issuer",
            "missing_subject", "bad_claims", "bad_ticket", "expired_ticket",
            "bad_session_cookie", "expired_session", "bad_basic_header",
        ],
        401,
    ),
    **dict.fromkeys(
        [
            "origin_missing", "origin_null", "origin_malformed", "origin_not_allowed",
            "origin_missing_with_credentials", "plaintext", "ticket_origin_mismatch",
            "csrf_missing", "csrf_mismatch",
        ],
        403,
    ),
    "unknown_path": 404,
    "bad_version": 426,
    "handshake_rate": 429,
    "ip_connection_cap": 429,
    "user_connection_cap": 429,
    "connection_cap": 503,
}  # fmt: skip
