"""Fuzz credential decoding with a fixed secret: tickets, session cookies (with their CSRF
nonce), JWT bearer tokens and HTTP Basic, both as bare verifiers and as the handshake
authenticators that read them from the request.

The input is split at its first NUL: the part before is the credential (a ticket, a token, a
``Cookie`` field, an ``Authorization`` field), the part after is the query string.

Invariant: nothing raises; a refusal is a ``Reject`` with a documented reason and status; an
acceptance is never a forgery: the signed part of an accepted ticket, cookie or JWT is exactly
one that harness_fixtures minted with the secret, the principal is the one minted (user, roles,
channels), it has not expired, a ticket comes from the origin it was minted for, a cookie comes
with its own session's CSRF nonce, and a Basic password verifies only when it is the right one.

Run: ``python fuzzing/fuzz_credentials.py fuzzing/corpus/credentials``.
"""

# A harness reports a broken invariant to libFuzzer by raising: assert is the tool here (never
# run a harness under python -O).
# ruff: noqa: S101, PT018

from __future__ import annotations

import base64
import sys
from http import HTTPStatus
from typing import Final
from urllib.parse import parse_qs

from harness_fixtures import (
    COOKIE_PAYLOADS,
    CSRF,
    DOCUMENTED_REJECTS,
    JWT_SIGNING_INPUTS,
    MINTED_USERS,
    NOW,
    ORIGIN,
    PASSWORD,
    SECRET,
    TICKET_PAYLOADS,
    basic_authenticator,
    cookie_verifier,
    jwt_verifier,
    ticket_verifier,
)

from wsguard.core.auth.cookie import read_session
from wsguard.core.auth.jwt import JwtAuthenticator
from wsguard.core.auth.ticket import TicketAuthenticator
from wsguard.core.decisions import Authenticated, Principal, Reject
from wsguard.core.handshake import HandshakeContext
from wsguard.core.upgrade import Headers, UpgradeRequest

TICKETS: Final = ticket_verifier()
TICKET_AUTH: Final = TicketAuthenticator(TICKETS)
JWT: Final = jwt_verifier()
JWT_AUTH: Final = JwtAuthenticator(JWT)
COOKIE: Final = cookie_verifier()
BASIC: Final = basic_authenticator()
CONTEXTS: Final = (
    HandshakeContext("127.0.0.1", "https", "app.example.com", None, ORIGIN),
    HandshakeContext("127.0.0.1", "https", "a.example.com", 8443, "https://a.example.com:8443"),
    HandshakeContext("127.0.0.1", "https", "app.example.com", None, None),
)
ALICE: Final = {"roles": frozenset({"reader"}), "channels": frozenset({"chat:room"})}


def check_reject(reject: Reject) -> None:
    assert DOCUMENTED_REJECTS.get(reject.audit_reason) == reject.status, reject
    assert reject.public_reason == HTTPStatus(reject.status).phrase, reject


def check_minted(principal: Principal, method: str) -> None:
    assert principal.method == method, principal
    assert principal.user_id in MINTED_USERS, principal
    if principal.user_id == "alice":
        assert principal.roles == ALICE["roles"], principal
        if method != "cookie":
            assert principal.channels == ALICE["channels"], principal
    if principal.expires_at is not None:
        assert principal.expires_at > NOW, principal


def check_ticket(ticket: str, origin: str | None, result: Authenticated | Reject) -> None:
    if isinstance(result, Reject):
        check_reject(result)
        return
    assert ticket.partition(".")[0] in TICKET_PAYLOADS, "a forged ticket was accepted"
    assert result.consume is not None and result.consume_until is not None
    assert result.consume_until > NOW
    check_minted(result.principal, "ticket")
    # Minted for alice at ORIGIN and for bob at a.example.com:8443: nobody else, nowhere else.
    expected = {"alice": ORIGIN, "bob": "https://a.example.com:8443"}
    assert expected.get(result.principal.user_id or "") == origin, (result, origin)


def check_jwt(token: str, result: Principal | Reject | None) -> None:
    if result is None:
        return
    if isinstance(result, Reject):
        check_reject(result)
        return
    assert token.strip(" \t").rpartition(".")[0] in JWT_SIGNING_INPUTS, "a forged JWT passed"
    check_minted(result, "jwt")


def _request(headers: list[tuple[str, str]], query: str) -> UpgradeRequest:
    target = "/ws?" + query if query else "/ws"
    return UpgradeRequest("GET", target, "HTTP/1.1", Headers(headers), "127.0.0.1", True)


def TestOneInput(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    credential, _, query = text.partition("\x00")

    for ctx in CONTEXTS:
        check_ticket(credential, ctx.origin, TICKETS.verify(credential, origin=ctx.origin, now=NOW))
    query_ticket = TICKET_AUTH.authenticate(_request([], query), CONTEXTS[0], NOW)
    if query_ticket is not None:
        assert isinstance(query_ticket, Authenticated | Reject)
        if isinstance(query_ticket, Authenticated):
            assert query_ticket.principal.user_id == "alice", query_ticket
        else:
            check_reject(query_ticket)

    check_jwt(credential, JWT.verify(credential, NOW))
    authorization = _request([("Authorization", credential)], query)
    bearer = JWT_AUTH.authenticate(authorization, CONTEXTS[0], NOW)
    check_jwt(credential.strip(" \t").partition(" ")[2], bearer)

    session = read_session(SECRET, credential)
    if session is not None:
        assert credential.rpartition(".")[0] in COOKIE_PAYLOADS, "a forged cookie was read"
        assert session.user in MINTED_USERS
    for ctx in CONTEXTS:
        cookie = COOKIE.verify(_request([("Cookie", credential)], query), ctx, NOW)
        if cookie is None:
            continue
        if isinstance(cookie, Reject):
            check_reject(cookie)
            continue
        check_minted(cookie, "cookie")
        assert ctx.origin is not None
        nonce = parse_qs(query, keep_blank_values=True).get("csrf")
        assert nonce == [CSRF[cookie.user_id or ""]], "a cookie was accepted without its nonce"

    basic = BASIC.authenticate(authorization, CONTEXTS[0], NOW)
    if isinstance(basic, Reject):
        check_reject(basic)
    elif basic is not None:
        assert basic.verify is not None and basic.principal.method == "basic"
        if basic.verify():
            assert basic.principal.user_id == "alice", basic
            assert basic.principal.roles == ALICE["roles"]
            encoded = credential.strip(" \t").partition(" ")[2].strip(" \t")
            user_pass = base64.b64decode(encoded, validate=True).decode("utf-8")
            assert user_pass == "alice:" + PASSWORD, "a wrong Basic password verified"


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
