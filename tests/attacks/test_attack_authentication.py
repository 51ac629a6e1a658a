"""AUTHN: authentication attacks against a real ``wsguard serve`` (catalog group AUTHN).

The server must authenticate every connection by exactly one credential, refuse every bad
credential with the documented HTTP status and audit reason (docs/reference/codes.md), never
read a long-lived token from the URL, never log a credential, and keep the credential's
lifetime: a pending socket closes with 4401, a failed first-message ``auth`` answers 401
``unauthorized`` then closes 4401, a ``refresh`` never switches users (4403), and a credential
that expires without a refresh closes the socket (4401).

Cases (a ``-suffix`` is one variant of the attack):

- AUTHN-01 no credential: pending socket, ``auth_required`` reply, close 4401 after 2 s
- AUTHN-02 ticket: forged signature, truncated, garbage → 401 ``bad_ticket``
- AUTHN-03 ticket expired → 401 ``expired_ticket``
- AUTHN-04 ticket minted for another origin → 403 ``ticket_origin_mismatch``
- AUTHN-05 JWT claims: foreign key, exp, nbf, no exp, aud, iss, no sub → 401 with the reason
- AUTHN-06 JWT ``alg: none`` (all spellings; header and first message) → ``alg_not_allowed``
- AUTHN-07 JWT HS256 signed with the server's RSA public key (CVE-2022-29217, CVE-2017-11424)
- AUTHN-08 JWT header injection: ``kid`` traversal/SQL/object, ``jku``/``x5u`` never fetched
- AUTHN-09 oversized tokens: 100 KB in the handshake, 60 KB in the first message
- AUTHN-10 ambiguous credentials: two ``Authorization`` fields, two ``ticket``/``csrf``
  parameters, too many parameters → 400
- AUTHN-11 tokens in the URL (``access_token``, ``token``, ``jwt``) are ignored; no ticket,
  JWT, cookie or nonce ever reaches the server log
- AUTHN-12 replayed ticket (handshake, first message) → 401 ``replayed_ticket``
- AUTHN-13 cookie session: no nonce, tampered, duplicate, expired
- AUTHN-14 HTTP Basic: wrong password, malformed header
- AUTHN-15 failed first-message ``auth`` → 401 ``unauthorized`` reply, then close 4401
- AUTHN-16 refresh as another user (4403), refresh with an expired token (401, socket kept),
  expiry without refresh closes 4401 (with a refreshing control socket that stays)
- AUTHN-17 Basic: unknown user and wrong password get byte-identical answers (CVE-2021-33880)
- AUTHN-18 the CSRF nonce is bound to its session: bob's nonce with alice's cookie → 403
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from support.attack import (
    AttackTarget,
    Session,
    connect,
    error_reason,
    expect_audit,
    jwt_claims,
    open_session,
    request,
    respond,
)
from support.rawws import HttpResponse
from wsguard import sessions

pytestmark = pytest.mark.integration

# A key the server has never seen: what an attacker signs with.
ATTACKER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_PEM = ATTACKER_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)


# -- helpers ----------------------------------------------------------------------------------


async def refused(target: AttackTarget, raw: bytes, status: int, reason: str) -> HttpResponse:
    """Send ``raw``; the handshake must get ``status`` (never 101) and the audit ``reason``."""
    since = target.log_size()
    response = await respond(target, raw)
    assert response.status == status, response.raw
    await expect_audit(target, since, reason)
    return response


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_jwt(header: dict[str, Any], body: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS built byte by byte: PyJWT refuses to make the hostile ones."""
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(body))}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def hs256(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def rs256_attacker(data: bytes) -> bytes:
    return ATTACKER_KEY.sign(data, padding.PKCS1v15(), hashes.SHA256())


def pkcs1_public_pem(target: AttackTarget) -> bytes:
    """The server's public key as ``BEGIN RSA PUBLIC KEY`` (the CVE-2017-11424 form)."""
    key = serialization.load_pem_public_key(target.public_key)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)


async def first_message_refused(
    target: AttackTarget, credential: dict[str, str], reason: str
) -> None:
    """A pending socket sends ``{"op": "auth", **credential}``: 401 ``unauthorized`` reply,
    close 4401, the audit ``reason``, and no welcome ever."""
    since = target.log_size()
    session = await open_session(target, None)
    await session.send_json({"id": 1, "op": "auth", **credential})
    reply = await session.receive(3.0)
    assert reply["id"] == 1, reply
    assert error_reason(reply) == (401, "unauthorized")
    assert await session.closed_with(3.0) == 4401
    assert not [p for p in session.pushes if p.get("push") == "welcome"]
    await expect_audit(target, since, reason)


async def assert_pending(session: Session) -> None:
    """No welcome, and the socket answers every op but ``auth`` with 401 ``auth_required``."""
    assert await session.quiet(0.2) == []
    reply = await session.call("subscribe", timeout=3.0, channel="user:alice")
    assert error_reason(reply) == (401, "auth_required")


# -- AUTHN-01: no credential ------------------------------------------------------------------


async def test_authn_01_no_credential_is_pending_then_closed_4401(target: AttackTarget) -> None:
    """AUTHN-01: a handshake with no credential opens a pending socket that can do nothing and
    closes 4401 after first_message_timeout (CVE-2024-28179, CVE-2026-44211 class)."""
    since = target.log_size()
    began = time.monotonic()
    session = await open_session(target, None)
    await assert_pending(session)
    reply = await session.call("publish", timeout=3.0, channel="chat:authn01", data={"text": "x"})
    assert error_reason(reply) == (401, "auth_required")
    assert await session.closed_with(4.0) == 4401
    assert 1.5 < time.monotonic() - began < 4.0
    await expect_audit(target, since, "auth_required")


# -- AUTHN-02..04, 12: tickets ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda t: t.ticket(secret=secrets.token_bytes(48)), id="AUTHN-02-forged"),
        pytest.param(lambda t: t.ticket()[:-6], id="AUTHN-02-truncated"),
        pytest.param(lambda t: t.ticket().replace(".", ""), id="AUTHN-02-no-separator"),
        pytest.param(lambda t: "A" * 64, id="AUTHN-02-garbage"),
        pytest.param(lambda t: "", id="AUTHN-02-empty"),
    ],
)
async def test_authn_02_bad_ticket(
    target: AttackTarget, make: Callable[[AttackTarget], str]
) -> None:
    """AUTHN-02: a ticket signed with another secret, cut short or made up → 401 bad_ticket."""
    await refused(target, request(query=f"ticket={make(target)}"), 401, "bad_ticket")


async def test_authn_03_expired_ticket(target: AttackTarget) -> None:
    """AUTHN-03: a ticket whose 30 s lifetime ended → 401 expired_ticket."""
    ticket = target.ticket(now=time.time() - 120)
    await refused(target, request(query=f"ticket={ticket}"), 401, "expired_ticket")


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param("https://evil.example", id="AUTHN-04-foreign"),
        pytest.param("https://app.example.test.evil.example", id="AUTHN-04-suffix"),
        pytest.param("http://app.example.test", id="AUTHN-04-scheme"),
    ],
)
async def test_authn_04_ticket_minted_for_another_origin(target: AttackTarget, origin: str) -> None:
    """AUTHN-04: a ticket minted for another page origin, used from the trusted one → 403."""
    ticket = target.ticket(origin=origin)
    await refused(target, request(query=f"ticket={ticket}"), 403, "ticket_origin_mismatch")


async def test_authn_12_replayed_ticket_in_handshake(target: AttackTarget) -> None:
    """AUTHN-12: the second use of a one-time ticket, while the first socket is open → 401."""
    ticket = target.ticket("alice")
    first = await open_session(target, "alice", query=f"ticket={ticket}")
    await refused(target, request(query=f"ticket={ticket}"), 401, "replayed_ticket")
    assert (await first.call("ping"))["ok"] is True


async def test_authn_12_replayed_ticket_in_first_message(target: AttackTarget) -> None:
    """AUTHN-12: a ticket used in a handshake cannot be used again in an ``auth`` message."""
    ticket = target.ticket("alice")
    await open_session(target, "alice", query=f"ticket={ticket}")
    await first_message_refused(target, {"ticket": ticket}, "replayed_ticket")


# -- AUTHN-05..09: JWT -------------------------------------------------------------------------

JWT_CLAIM_CASES = [
    pytest.param(lambda t: t.jwt(key=ATTACKER_PEM), "bad_signature", id="AUTHN-05-foreign-key"),
    pytest.param(lambda t: t.jwt(exp=int(time.time()) - 60), "expired", id="AUTHN-05-expired"),
    pytest.param(
        lambda t: t.jwt(nbf=int(time.time()) + 120), "not_yet_valid", id="AUTHN-05-nbf-future"
    ),
    pytest.param(lambda t: t.jwt(exp=None), "missing_exp", id="AUTHN-05-no-exp"),
    pytest.param(lambda t: t.jwt(aud="wss://other.example"), "audience", id="AUTHN-05-wrong-aud"),
    pytest.param(lambda t: t.jwt(iss="https://evil.example/"), "issuer", id="AUTHN-05-wrong-iss"),
    pytest.param(lambda t: t.jwt(None), "missing_subject", id="AUTHN-05-no-sub"),
    pytest.param(lambda t: t.jwt("alice\nadmin"), "missing_subject", id="AUTHN-05-sub-newline"),
]


@pytest.mark.parametrize(("make", "reason"), JWT_CLAIM_CASES)
async def test_authn_05_jwt_claims_in_bearer_header(
    target: AttackTarget, make: Callable[[AttackTarget], str], reason: str
) -> None:
    """AUTHN-05: a JWT with a foreign signature or a bad claim → 401 with the claim's reason."""
    await refused(target, request(headers=bearer(make(target))), 401, reason)


def _alg_none(spelling: str) -> Callable[[AttackTarget], str]:
    return lambda t: hand_jwt({"alg": spelling, "typ": "JWT"}, jwt_claims(), lambda _: b"")


ALG_NONE = [pytest.param(_alg_none(s), id=f"AUTHN-06-{s}") for s in ("none", "None", "NONE")]


@pytest.mark.parametrize("make", ALG_NONE)
async def test_authn_06_alg_none_bearer(
    target: AttackTarget, make: Callable[[AttackTarget], str]
) -> None:
    """AUTHN-06: an unsigned token (``alg: none``, any case) in Authorization → 401."""
    await refused(target, request(headers=bearer(make(target))), 401, "alg_not_allowed")


async def test_authn_06_alg_none_first_message(target: AttackTarget) -> None:
    """AUTHN-06: an unsigned token (``alg: none``) in the first ``auth`` message → 401, 4401."""
    token = _alg_none("none")(target)
    await first_message_refused(target, {"token": token}, "alg_not_allowed")


def _confused(pkcs1: bool) -> Callable[[AttackTarget], str]:
    def make(target: AttackTarget) -> str:
        secret = pkcs1_public_pem(target) if pkcs1 else target.public_key
        return hand_jwt(
            {"alg": "HS256", "typ": "JWT"}, jwt_claims("admin", roles=["admin"]), hs256(secret)
        )

    return make


KEY_CONFUSION = [
    pytest.param(_confused(False), id="AUTHN-07-spki-pem"),
    pytest.param(_confused(True), id="AUTHN-07-pkcs1-pem"),
]


@pytest.mark.parametrize("make", KEY_CONFUSION)
async def test_authn_07_hs256_with_rsa_public_key_bearer(
    target: AttackTarget, make: Callable[[AttackTarget], str]
) -> None:
    """AUTHN-07: HS256 "signed" with the server's public RSA key as the HMAC secret → 401
    (CVE-2022-29217, CVE-2017-11424, CVE-2023-48223)."""
    await refused(target, request(headers=bearer(make(target))), 401, "alg_not_allowed")


async def test_authn_07_hs256_with_rsa_public_key_first_message(target: AttackTarget) -> None:
    """AUTHN-07: the HS/RS key confusion token in the first ``auth`` message (CVE-2022-29217)."""
    await first_message_refused(target, {"token": _confused(False)(target)}, "alg_not_allowed")


class FetchRecorder:
    """A loopback listener that records every connection: a ``jku``/``x5u`` target."""

    def __init__(self) -> None:
        self.hits = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hits += 1
        writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/jwks.json"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


KID_CASES = [
    pytest.param("../../../../../../etc/passwd", "bad_signature", id="AUTHN-08-kid-traversal"),
    pytest.param("x' UNION SELECT 'k' -- ", "bad_signature", id="AUTHN-08-kid-sql"),
    pytest.param("|id;cat /etc/passwd", "bad_signature", id="AUTHN-08-kid-command"),
    # A JWS header's kid must be a string (RFC 7515 §4.1.4): refused before any key lookup.
    pytest.param({"$ne": None}, "malformed_token", id="AUTHN-08-kid-object"),
]


@pytest.mark.parametrize(("kid", "reason"), KID_CASES)
async def test_authn_08_kid_injection_is_not_a_key_lookup(
    target: AttackTarget, kid: object, reason: str
) -> None:
    """AUTHN-08: a hostile ``kid`` never selects other key material: the attacker's signature
    is refused, and the server does not crash."""
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    token = hand_jwt(header, jwt_claims("admin", roles=["admin"]), rs256_attacker)
    await refused(target, request(headers=bearer(token)), 401, reason)
    assert target.alive()


async def test_authn_08_kid_dev_null_with_empty_hmac_secret(target: AttackTarget) -> None:
    """AUTHN-08: ``kid: /dev/null`` signed HS256 with an empty secret (the classic kid file
    trick) → 401 alg_not_allowed."""
    token = hand_jwt({"alg": "HS256", "kid": "../../../../dev/null"}, jwt_claims(), hs256(b""))
    await refused(target, request(headers=bearer(token)), 401, "alg_not_allowed")


@pytest.mark.parametrize("field", ["jku", "x5u"], ids=["AUTHN-08-jku", "AUTHN-08-x5u"])
async def test_authn_08_key_url_header_is_never_fetched(target: AttackTarget, field: str) -> None:
    """AUTHN-08: a ``jku``/``x5u`` header pointing at an attacker's URL is ignored: nothing
    is fetched, and the attacker-signed token stays a bad signature."""
    recorder = FetchRecorder()
    async with recorder as url:
        header = {"alg": "RS256", "typ": "JWT", "kid": "attacker", field: url}
        token = hand_jwt(header, jwt_claims("admin", roles=["admin"]), rs256_attacker)
        await refused(target, request(headers=bearer(token)), 401, "bad_signature")
        await first_message_refused(target, {"token": token}, "bad_signature")
        await asyncio.sleep(0.2)
    assert recorder.hits == 0


async def test_authn_09_100kb_token_in_header(target: AttackTarget) -> None:
    """AUTHN-09: a 100 KB bearer token is refused by the request-head limit before any token
    parsing: 431 header_too_large, never 101."""
    since = target.log_size()
    client = await connect(target)
    # The server stops reading at limits.max_header_bytes and closes with the rest of the
    # head unread, so the kernel may answer with a reset that overtakes the 431 (the verdict
    # vocabulary's "drop TCP" also passes); the audit reason is exact either way.
    with contextlib.suppress(ConnectionResetError):
        await client.send(request(headers=bearer(target.jwt(pad="x" * 100_000))))
        response = await client.read_response()
        assert response.status == 431, response.raw
    await expect_audit(target, since, "header_too_large")


async def test_authn_09_12kb_token_gets_the_generic_431(target: AttackTarget) -> None:
    """AUTHN-09: a 12 KB bearer token (one header line over 8 KiB, the head under 16 KiB) →
    431 request_too_large with the generic body: no parser text, no limits (codes.md). It
    once got the websockets library's own answer, "Failed to open a WebSocket connection: read
    12624 bytes, expected no more than 8192 bytes.", without the security headers."""
    token = target.jwt(pad="x" * 9000)
    response = await refused(target, request(headers=bearer(token)), 431, "request_too_large")
    assert response.raw.endswith(b"\r\n\r\n431 Request Header Fields Too Large\n"), response.raw
    assert response.header("cache-control") == "no-store"
    assert response.header("x-content-type-options") == "nosniff"


async def test_authn_09_60kb_token_in_first_message(target: AttackTarget) -> None:
    """AUTHN-09: a 60 KB token in the first message (under the message limit, over the token
    limit) → 401 unauthorized, close 4401, audit malformed_token."""
    token = target.jwt(pad="x" * 45_000)
    assert 60_000 < len(token) < 64_000
    await first_message_refused(target, {"token": token}, "malformed_token")


# -- AUTHN-10: ambiguous credentials ----------------------------------------------------------


async def test_authn_10_two_authorization_headers(target: AttackTarget) -> None:
    """AUTHN-10: two Authorization fields (a proxy and the server could each read another)."""
    headers = bearer(target.jwt("alice")) + bearer(target.jwt("admin"))
    await refused(target, request(headers=headers), 400, "duplicate_header")


async def test_authn_10_two_ticket_params(target: AttackTarget) -> None:
    """AUTHN-10: ``?ticket=a&ticket=b`` → 400 duplicate_param, and neither ticket is spent."""
    first, second = target.ticket("alice"), target.ticket("bob")
    await refused(target, request(query=f"ticket={first}&ticket={second}"), 400, "duplicate_param")
    for user, ticket in (("alice", first), ("bob", second)):
        session = await open_session(target, user, query=f"ticket={ticket}")
        assert session.pushes == []
        assert (await session.call("ping"))["ok"] is True


async def test_authn_10_two_csrf_params(target: AttackTarget) -> None:
    """AUTHN-10: a session cookie with ``?csrf=`` twice → 400 duplicate_param."""
    cookie, nonce = target.session("alice")
    _, other = target.session("bob")
    raw = request(
        query=f"csrf={nonce}&csrf={other}", headers=[("Cookie", f"__Host-session={cookie}")]
    )
    await refused(target, raw, 400, "duplicate_param")


async def test_authn_10_too_many_params(target: AttackTarget) -> None:
    """AUTHN-10: 21 query parameters around a valid ticket → 400 too_many_params."""
    query = "&".join([f"p{i}=1" for i in range(20)] + [f"ticket={target.ticket()}"])
    await refused(target, request(query=query), 400, "too_many_params")


# -- AUTHN-11: no tokens in URLs or logs --------------------------------------------------------


@pytest.mark.parametrize(
    "param",
    ["access_token", "token", "jwt"],
    ids=["AUTHN-11-access_token", "AUTHN-11-token", "AUTHN-11-jwt"],
)
async def test_authn_11_jwt_in_query_is_not_accepted(target: AttackTarget, param: str) -> None:
    """AUTHN-11: a valid JWT in the query string does not authenticate (URLs end up in logs)."""
    token = target.jwt("alice")
    session = await open_session(target, None, query=f"{param}={token}")
    await assert_pending(session)
    assert token not in target.log()


async def test_authn_11_no_credential_in_the_log(target: AttackTarget) -> None:
    """AUTHN-11: tickets, JWTs, session cookies and nonces, accepted or refused, never appear in
    the server log (OWASP: "never log tokens or session ids")."""
    ticket, replayed = target.ticket("alice"), target.ticket("alice")
    token = target.jwt("alice")
    bad_token = target.jwt("alice", key=ATTACKER_PEM)
    cookie, nonce = target.session("alice")
    await open_session(target, "alice", query=f"ticket={ticket}")
    await open_session(target, "alice", query=f"ticket={replayed}")
    session = await open_session(target, None, headers=bearer(token))
    await session.push("welcome")
    cookie_session = await open_session(
        target, None, query=f"csrf={nonce}", headers=[("Cookie", f"__Host-session={cookie}")]
    )
    welcome = await cookie_session.push("welcome")
    assert welcome["auth"] == "cookie"
    await refused(target, request(query=f"ticket={replayed}"), 401, "replayed_ticket")
    await refused(target, request(headers=bearer(bad_token)), 401, "bad_signature")
    await first_message_refused(target, {"token": bad_token}, "bad_signature")
    log = target.log()
    for secret in (ticket, replayed, token, bad_token, cookie, nonce):
        assert secret not in log
        # Neither the signature part alone (a log line cut or re-encoded would still carry it).
        assert secret.rsplit(".", 1)[-1] not in log


# -- AUTHN-13, 18: cookie sessions ------------------------------------------------------------


def _cookie(value: str) -> list[tuple[str, str]]:
    return [("Cookie", f"__Host-session={value}")]


def _tamper(cookie: str) -> str:
    """Rewrite the signed payload to claim ``admin``, keeping the old signature."""
    payload, _, signature = cookie.rpartition(".")
    body = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body.update(sub="admin", roles=["admin"])
    return f"{b64url(orjson.dumps(body))}.{signature}"


async def test_authn_13_cookie_without_csrf_nonce(target: AttackTarget) -> None:
    """AUTHN-13: the session cookie alone (what a CSWSH page's browser sends) → 403."""
    cookie, _ = target.session("alice")
    await refused(target, request(headers=_cookie(cookie)), 403, "csrf_missing")


async def test_authn_13_tampered_cookie(target: AttackTarget) -> None:
    """AUTHN-13: a cookie whose payload was rewritten to ``admin`` → 401 bad_session_cookie."""
    cookie, nonce = target.session("alice")
    raw = request(query=f"csrf={nonce}", headers=_cookie(_tamper(cookie)))
    await refused(target, raw, 401, "bad_session_cookie")


@pytest.mark.parametrize(
    "split", [False, True], ids=["AUTHN-13-dup-one-field", "AUTHN-13-dup-two-fields"]
)
async def test_authn_13_duplicate_session_cookie(target: AttackTarget, split: bool) -> None:
    """AUTHN-13: two cookies with the session name (cookie tossing from a sibling domain)."""
    alice, nonce = target.session("alice")
    admin, _ = target.session("admin")
    if split:
        headers = _cookie(admin) + _cookie(alice)
    else:
        headers = [("Cookie", f"__Host-session={admin}; __Host-session={alice}")]
    await refused(target, request(query=f"csrf={nonce}", headers=headers), 400, "duplicate_cookie")


async def test_authn_13_expired_session(target: AttackTarget) -> None:
    """AUTHN-13: a correctly signed session cookie past its expiry → 401 expired_session."""
    secret = target.env["WSGUARD_COOKIE_SECRET"].encode()
    cookie, nonce = sessions.issue_session(
        "alice", ttl=60, roles=["user"], secret=secret, now=time.time() - 3600
    )
    await refused(
        target, request(query=f"csrf={nonce}", headers=_cookie(cookie)), 401, "expired_session"
    )


async def test_authn_18_csrf_nonce_is_bound_to_its_session(target: AttackTarget) -> None:
    """AUTHN-18: alice's cookie with a nonce of bob's session → 403 csrf_mismatch; with her
    own nonce the same cookie is accepted (the control)."""
    cookie, nonce = target.session("alice")
    _, bobs = target.session("bob")
    await refused(
        target, request(query=f"csrf={bobs}", headers=_cookie(cookie)), 403, "csrf_mismatch"
    )
    session = await open_session(target, None, query=f"csrf={nonce}", headers=_cookie(cookie))
    welcome = await session.push("welcome")
    assert (welcome["user"], welcome["auth"]) == ("alice", "cookie")


# -- AUTHN-14, 17: HTTP Basic -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(
            AttackTarget.basic("alice", "wrong"), "bad_password", id="AUTHN-14-wrong-password"
        ),
        pytest.param(AttackTarget.basic("alice", ""), "bad_password", id="AUTHN-14-empty-password"),
        pytest.param("Basic !!!not-base64!!!", "bad_basic_header", id="AUTHN-14-not-base64"),
        pytest.param(
            "Basic " + base64.b64encode(b"alice-without-colon").decode(),
            "bad_basic_header",
            id="AUTHN-14-no-colon",
        ),
        pytest.param("Basic", "bad_basic_header", id="AUTHN-14-empty"),
    ],
)
async def test_authn_14_basic_refused(target: AttackTarget, value: str, reason: str) -> None:
    """AUTHN-14: a wrong password or an unparseable Basic header → 401 with the reason."""
    response = await refused(target, request(headers=[("Authorization", value)]), 401, reason)
    if reason == "bad_password":
        assert response.header("www-authenticate") == 'Basic realm="wsguard"'


def _without_date(response: HttpResponse) -> bytes:
    return b"\r\n".join(
        line for line in response.raw.split(b"\r\n") if not line.lower().startswith(b"date:")
    )


async def test_authn_17_unknown_user_and_wrong_password_answer_alike(target: AttackTarget) -> None:
    """AUTHN-17: no user enumeration: an unknown user and a wrong password get the same bytes
    and the same audit reason (CVE-2021-33880 class; compared, not timed)."""
    wrong = await refused(
        target,
        request(headers=[("Authorization", target.basic("alice", "wrong"))]),
        401,
        "bad_password",
    )
    unknown = await refused(
        target,
        request(headers=[("Authorization", target.basic("nosuchuser", "wrong"))]),
        401,
        "bad_password",
    )
    assert _without_date(wrong) == _without_date(unknown)


# -- AUTHN-15, 16: first message, refresh, expiry -----------------------------------------------


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        pytest.param(
            lambda t: {"token": t.jwt("alice", key=ATTACKER_PEM)},
            "bad_signature",
            id="AUTHN-15-jwt",
        ),
        pytest.param(
            lambda t: {"ticket": t.ticket(secret=secrets.token_bytes(48))},
            "bad_ticket",
            id="AUTHN-15-ticket",
        ),
        pytest.param(lambda t: {"token": "not.a.jwt"}, "malformed_token", id="AUTHN-15-garbage"),
    ],
)
async def test_authn_15_failed_first_message_auth(
    target: AttackTarget, credential: Callable[[AttackTarget], dict[str, str]], reason: str
) -> None:
    """AUTHN-15: a failed first-message ``auth`` → 401 unauthorized (no detail), then 4401."""
    await first_message_refused(target, credential(target), reason)


async def test_authn_16_refresh_as_another_user_closes_4403(target: AttackTarget) -> None:
    """AUTHN-16: ``refresh`` with bob's valid JWT on alice's socket → 403, then close 4403."""
    session = await open_session(target, "alice")
    reply = await session.call("refresh", token=target.jwt("bob"))
    assert error_reason(reply) == (403, "forbidden")
    assert await session.closed_with(3.0) == 4403


async def test_authn_16_refresh_with_expired_token_is_refused(target: AttackTarget) -> None:
    """AUTHN-16: ``refresh`` with an expired JWT → 401 unauthorized; the socket keeps its
    current credential (and stays usable)."""
    since = target.log_size()
    session = await open_session(target, None, headers=bearer(target.jwt("alice")))
    await session.push("welcome")
    reply = await session.call("refresh", token=target.jwt("alice", exp=int(time.time()) - 60))
    assert error_reason(reply) == (401, "unauthorized")
    await expect_audit(target, since, "expired")
    assert (await session.call("ping"))["ok"] is True
    reply = await session.call("subscribe", channel="user:alice")
    assert reply["ok"] is True, reply


async def test_authn_16_credential_expiry_without_refresh_closes_4401(target: AttackTarget) -> None:
    """AUTHN-16: sockets outlive credentials: a JWT that expires without a refresh closes the
    socket with 4401 after an ``expiring`` push; a socket that refreshes stays open.

    The token's ``exp`` is 3 s in the past, inside the configured 5 s leeway, so it is still
    accepted and its socket must close ``expiry_grace`` (5 s) after ``exp``: about 2 s from
    now. This needs no extra server with shorter notice and grace."""
    expired_at = int(time.time()) - 3
    lapsing = await open_session(target, None, headers=bearer(target.jwt("alice", exp=expired_at)))
    kept = await open_session(target, None, headers=bearer(target.jwt("alice", exp=expired_at)))
    for session in (lapsing, kept):
        await session.push("welcome")
        notice = await session.push("expiring", timeout=2.0)
        assert notice["in"] == 0
    reply = await kept.call("refresh", token=target.jwt("alice"))
    assert reply["ok"] is True, reply
    began = time.monotonic()
    assert await lapsing.closed_with(4.0) == 4401
    assert time.monotonic() - began < 3.0
    assert (await kept.call("ping"))["ok"] is True
