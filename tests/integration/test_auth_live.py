"""Authentication against a real server: every attack of the issue refused with its exact status
or close code, the legitimate flows accepted, nothing secret in the logs."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from support.rawws import OP_TEXT, RawClient, frame, handshake_bytes
from wsguard.exceptions import ConfigError
from wsguard.server.lifecycle import Server
from wsguard.sessions import issue_session
from wsguard.settings import BasicConfig
from wsguard.testing import loopback_settings
from wsguard.tickets import mint

pytestmark = pytest.mark.integration

JWT_SECRET = "j" * 48
TICKET_SECRET = "t" * 48
COOKIE_SECRET = "c" * 48
ENV = {
    "JWT_SECRET": JWT_SECRET,
    "WSGUARD_TICKET_SECRET": TICKET_SECRET,
    "WSGUARD_COOKIE_SECRET": COOKIE_SECRET,
}


def auth_settings(*methods: str, **auth: object):
    return loopback_settings(
        auth={
            "required": True,
            "methods": methods,
            "jwt": loopback_settings().auth.jwt.__class__(
                secret_env="JWT_SECRET", audience="wsguard-test", issuer="https://issuer.test"
            ),
            **auth,
        }
    )


def token(**claims: object) -> str:
    now = time.time()
    body = {
        "sub": "alice",
        "exp": now + 300,
        "iat": now,
        "aud": "wsguard-test",
        "iss": "https://issuer.test",
        **claims,
    }
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, JWT_SECRET, algorithm="HS256")


async def handshake(port: int, **kwargs: object) -> tuple[int, RawClient]:
    client = await RawClient.connect(port)
    await client.send(handshake_bytes(port, **kwargs))  # type: ignore[arg-type]
    response = await client.read_response()
    return response.status, client


def origin(port: int) -> str:
    return f"http://127.0.0.1:{port}"


async def read_json(client: RawClient) -> dict:
    while True:
        opcode, payload = await client.read_frame()
        if opcode == OP_TEXT:
            return orjson.loads(payload)


# ---------------------------------------------------------------- start-up


def test_required_method_without_its_secret_refuses_to_start():
    with pytest.raises(ConfigError) as info:
        Server(loopback_settings(), env={})
    assert info.value.field == "auth.ticket.secret_env"
    assert "WSGUARD_TICKET_SECRET" in str(info.value)


async def test_no_credential_and_no_first_message_method_is_401(start_server, audit):
    server = await start_server(settings=auth_settings("cookie"), env=ENV)
    status, _ = await handshake(server.port)
    assert status == 401
    assert audit.rejected()[-1]["reason"] == "auth_required"


# ---------------------------------------------------------------- JWT at the handshake


def _alg_none_token() -> str:
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': 'admin', 'exp': 9e9})}."


def _rs256_token() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return jwt.encode({"sub": "alice", "exp": time.time() + 60}, pem, algorithm="RS256")


def _tampered() -> str:
    head, payload, sig = token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        pytest.param(_alg_none_token, "alg_not_allowed", id="alg-none"),
        pytest.param(_rs256_token, "alg_not_allowed", id="rs256-against-hs-secret"),
        pytest.param(lambda: token(exp=time.time() - 60), "expired", id="expired"),
        pytest.param(lambda: token(nbf=time.time() + 600), "not_yet_valid", id="not-yet-valid"),
        pytest.param(lambda: token(aud="another-app"), "audience", id="wrong-audience"),
        pytest.param(lambda: token(iss="https://evil.test"), "issuer", id="wrong-issuer"),
        pytest.param(lambda: token(exp=None), "missing_exp", id="no-exp"),
        pytest.param(_tampered, "bad_signature", id="tampered-payload"),
    ],
)
async def test_bad_bearer_token_is_refused_401(start_server, audit, make_token, reason):
    server = await start_server(settings=auth_settings("jwt"), env=ENV)
    status, _ = await handshake(server.port, extra=[("Authorization", f"Bearer {make_token()}")])
    assert status == 401
    assert audit.rejected()[-1]["reason"] == reason


async def test_valid_bearer_token_opens_as_its_subject(start_server):
    server = await start_server(settings=auth_settings("jwt"), env=ENV)
    status, client = await handshake(
        server.port, extra=[("Authorization", f"Bearer {token(roles=['trader'])}")]
    )
    assert status == 101
    welcome = await read_json(client)
    assert (welcome["user"], welcome["auth"]) == ("alice", "jwt")


# ---------------------------------------------------------------- tickets


async def test_ticket_opens_once_and_its_replay_is_refused_401(start_server, audit):
    server = await start_server(settings=auth_settings("ticket"), env=ENV)
    ticket = mint("alice", origin(server.port), secret=TICKET_SECRET.encode())
    status, client = await handshake(server.port, path=f"/ws?ticket={ticket}")
    assert status == 101
    assert (await read_json(client))["user"] == "alice"
    status, _ = await handshake(server.port, path=f"/ws?ticket={ticket}")
    assert status == 401
    assert audit.rejected()[-1]["reason"] == "replayed_ticket"


async def test_fifty_concurrent_replays_of_one_ticket_open_exactly_one_socket(start_server, audit):
    server = await start_server(
        settings=loopback_settings(
            auth={"required": True, "methods": ("ticket",)},
            limits={"handshake_burst": 100, "max_connections_per_ip": 100},
        ),
        env=ENV,
    )
    ticket = mint("alice", origin(server.port), secret=TICKET_SECRET.encode())
    results = await asyncio.gather(
        *(handshake(server.port, path=f"/ws?ticket={ticket}") for _ in range(50))
    )
    statuses = sorted(status for status, _ in results)
    assert statuses == [101] + [401] * 49, [e.get("reason") for e in audit.rejected()]


async def test_ticket_minted_for_another_origin_is_refused_403(start_server, audit):
    server = await start_server(settings=auth_settings("ticket"), env=ENV)
    ticket = mint("alice", "https://other-app.test", secret=TICKET_SECRET.encode())
    status, _ = await handshake(server.port, path=f"/ws?ticket={ticket}")
    assert status == 403
    assert audit.rejected()[-1]["reason"] == "ticket_origin_mismatch"


async def test_expired_ticket_is_refused_401(start_server, audit):
    server = await start_server(settings=auth_settings("ticket"), env=ENV)
    ticket = mint(
        "alice", origin(server.port), ttl=30, secret=TICKET_SECRET.encode(), now=time.time() - 31
    )
    status, _ = await handshake(server.port, path=f"/ws?ticket={ticket}")
    assert status == 401
    assert audit.rejected()[-1]["reason"] == "expired_ticket"


# ---------------------------------------------------------------- cookie + CSRF nonce


async def test_cookie_without_its_csrf_nonce_is_refused_403(start_server, audit):
    server = await start_server(settings=auth_settings("cookie"), env=ENV)
    cookie, _nonce = issue_session("alice", secret=COOKIE_SECRET.encode())
    status, _ = await handshake(server.port, extra=[("Cookie", f"session={cookie}")])
    assert status == 403
    assert audit.rejected()[-1]["reason"] == "csrf_missing"


async def test_cookie_with_another_sessions_nonce_is_refused_403(start_server, audit):
    server = await start_server(settings=auth_settings("cookie"), env=ENV)
    cookie, _ = issue_session("alice", secret=COOKIE_SECRET.encode())
    _, other_nonce = issue_session("mallory", secret=COOKIE_SECRET.encode())
    status, _ = await handshake(
        server.port, path=f"/ws?csrf={other_nonce}", extra=[("Cookie", f"session={cookie}")]
    )
    assert status == 403
    assert audit.rejected()[-1]["reason"] == "csrf_mismatch"


async def test_cookie_with_its_nonce_opens(start_server):
    server = await start_server(settings=auth_settings("cookie"), env=ENV)
    cookie, nonce = issue_session("alice", secret=COOKIE_SECRET.encode())
    status, client = await handshake(
        server.port, path=f"/ws?csrf={nonce}", extra=[("Cookie", f"session={cookie}")]
    )
    assert status == 101
    assert (await read_json(client))["auth"] == "cookie"


# ---------------------------------------------------------------- first message


async def test_first_message_token_authenticates_a_pending_socket(start_server, audit):
    server = await start_server(settings=auth_settings("jwt"), env=ENV)
    status, client = await handshake(server.port)
    assert status == 101
    await client.send(frame(OP_TEXT, b'{"id": 1, "op": "ping"}'))
    assert (await read_json(client))["error"]["code"] == 401  # nothing before auth
    message = orjson.dumps({"id": 2, "op": "auth", "token": token()})
    await client.send(frame(OP_TEXT, message))
    reply = await read_json(client)
    assert reply["ok"] is True
    assert reply["result"]["user"] == "alice"
    assert (await read_json(client))["push"] == "welcome"
    assert any(e["event"] == "authenticated" for e in audit.events)


async def test_no_first_message_within_the_timeout_closes_4401(start_server):
    server = await start_server(
        settings=loopback_settings(
            auth={"required": True, "methods": ("ticket",), "first_message_timeout": 0.3}
        ),
        env=ENV,
    )
    status, client = await handshake(server.port)
    assert status == 101
    assert await client.read_until_close(timeout=3) == 4401


async def test_bad_first_message_token_is_answered_401_then_closed_4401(start_server, audit):
    server = await start_server(settings=auth_settings("jwt"), env=ENV)
    _, client = await handshake(server.port)
    await client.send(frame(OP_TEXT, orjson.dumps({"id": 1, "op": "auth", "token": "x.y.z"})))
    reply = await read_json(client)
    assert reply == {
        "id": 1,
        "ok": False,
        "error": {"code": 401, "reason": "unauthorized", "message": "authentication failed"},
    }
    assert await client.read_until_close() == 4401
    failed = [e for e in audit.events if e["event"] == "auth_failed"]
    assert failed[-1]["reason"] == "malformed_token"


async def test_first_message_ticket_replayed_on_a_second_socket_is_refused(start_server):
    server = await start_server(settings=auth_settings("ticket"), env=ENV)
    ticket = mint("alice", origin(server.port), secret=TICKET_SECRET.encode())
    replies = []
    for _ in range(2):
        _, client = await handshake(server.port)
        await client.send(frame(OP_TEXT, orjson.dumps({"id": 1, "op": "auth", "ticket": ticket})))
        replies.append((await read_json(client))["ok"])
    assert replies == [True, False]


# ---------------------------------------------------------------- lifetime and revocation


async def test_expiring_token_is_refreshed_in_place(start_server):
    server = await start_server(
        settings=auth_settings("jwt", expiring_notice=1.0, expiry_grace=0.0), env=ENV
    )
    short = token(exp=time.time() + 1.5)
    _, client = await handshake(server.port, extra=[("Authorization", f"Bearer {short}")])
    assert (await read_json(client))["push"] == "welcome"
    expiring = await read_json(client)
    assert expiring["push"] == "expiring"
    assert 0 < expiring["in"] <= 1.5
    await client.send(frame(OP_TEXT, orjson.dumps({"id": 5, "op": "refresh", "token": token()})))
    reply = await read_json(client)
    assert reply["ok"] is True
    await asyncio.sleep(1.0)  # past the old expiry: still open
    await client.send(frame(OP_TEXT, b'{"id": 6, "op": "ping"}'))
    assert await read_json(client) == {"id": 6, "ok": True, "result": {}}


async def test_unrefreshed_token_closes_4401_at_expiry(start_server, audit):
    server = await start_server(
        settings=auth_settings("jwt", expiring_notice=0.5, expiry_grace=0.0), env=ENV
    )
    short = token(exp=time.time() + 0.8)
    _, client = await handshake(server.port, extra=[("Authorization", f"Bearer {short}")])
    assert await client.read_until_close(timeout=5) == 4401
    failed = [e for e in audit.events if e["event"] == "auth_failed"]
    assert failed[-1]["reason"] == "expired_on_socket"


async def test_refresh_as_another_user_is_refused_and_closed_4403(start_server):
    server = await start_server(settings=auth_settings("jwt"), env=ENV)
    _, client = await handshake(server.port, extra=[("Authorization", f"Bearer {token()}")])
    await read_json(client)
    await client.send(
        frame(OP_TEXT, orjson.dumps({"id": 1, "op": "refresh", "token": token(sub="admin")}))
    )
    assert (await read_json(client))["error"]["code"] == 403
    assert await client.read_until_close() == 4403


async def test_revoked_user_is_disconnected_4403_within_a_second_and_refused_after(
    start_server, audit
):
    server = await start_server(settings=auth_settings("jwt"), env=ENV)
    bearer = [("Authorization", f"Bearer {token()}")]
    clients = []
    for _ in range(3):
        status, client = await handshake(server.port, extra=bearer)
        assert status == 101
        clients.append(client)
    started = time.monotonic()
    assert await server.revoke("alice") == 3
    codes = await asyncio.gather(*(c.read_until_close(timeout=1) for c in clients))
    assert codes == [4403, 4403, 4403]
    assert time.monotonic() - started < 1.0
    # The same token cannot come back; a token issued after the revocation can.
    status, _ = await handshake(server.port, extra=bearer)
    assert status == 403
    assert audit.rejected()[-1]["reason"] == "revoked"
    await asyncio.sleep(0.01)
    status, _ = await handshake(
        server.port, extra=[("Authorization", f"Bearer {token(iat=time.time() + 1)}")]
    )
    assert status == 101


# ---------------------------------------------------------------- secrets stay out of logs


async def test_credentials_never_reach_the_audit_log(start_server, audit):
    server = await start_server(settings=auth_settings("jwt", "ticket", "cookie"), env=ENV)
    secrets = []
    bearer = token()
    ticket = mint("alice", origin(server.port), secret=TICKET_SECRET.encode())
    cookie, nonce = issue_session("alice", secret=COOKIE_SECRET.encode())
    secrets += [bearer, ticket, cookie, nonce]
    await handshake(server.port, extra=[("Authorization", f"Bearer {bearer}")])
    await handshake(server.port, path=f"/ws?ticket={ticket}")
    await handshake(server.port, path=f"/ws?ticket={ticket}")  # replay: refused
    await handshake(server.port, path=f"/ws?csrf={nonce}", extra=[("Cookie", f"session={cookie}")])
    _, client = await handshake(server.port)
    await client.send(frame(OP_TEXT, orjson.dumps({"id": 1, "op": "auth", "token": bearer[:-3]})))
    await read_json(client)
    log = "\n".join(audit.lines)
    assert "replayed_ticket" in log
    for secret in secrets:
        for piece in secret.split("."):
            if len(piece) >= 16:
                assert piece not in log


# ---------------------------------------------------------------- HTTP Basic


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    from wsguard.users import add_user

    path = tmp_path_factory.mktemp("users") / "users.toml"
    add_user(path, "alice", "correct horse battery", roles=("admin",))
    return str(path)


def basic(user: str, password: str) -> list[tuple[str, str]]:
    value = base64.b64encode(f"{user}:{password}".encode()).decode()
    return [("Authorization", f"Basic {value}")]


@pytest.mark.parametrize(
    ("user", "password"),
    [
        pytest.param("alice", "wrong password!!", id="wrong-password"),
        pytest.param("mallory", "correct horse battery", id="unknown-user"),
    ],
)
async def test_basic_with_a_wrong_password_or_user_is_refused_401_with_a_challenge(
    start_server, audit, users_file, user, password
):
    settings = loopback_settings(
        auth={"required": True, "methods": ("basic",), "basic": BasicConfig(users_file)}
    )
    server = await start_server(settings=settings, env=ENV)
    client = await RawClient.connect(server.port)
    await client.send(handshake_bytes(server.port, extra=basic(user, password)))
    response = await client.read_response()
    assert response.status == 401
    assert response.header("WWW-Authenticate") == 'Basic realm="wsguard"'
    assert audit.rejected()[-1]["reason"] == "bad_password"


async def test_basic_with_the_right_password_opens_with_the_users_roles(start_server, users_file):
    settings = loopback_settings(
        auth={"required": True, "methods": ("basic",), "basic": BasicConfig(users_file)}
    )
    server = await start_server(settings=settings, env=ENV)
    status, client = await handshake(server.port, extra=basic("alice", "correct horse battery"))
    assert status == 101
    welcome = await read_json(client)
    assert (welcome["user"], welcome["auth"]) == ("alice", "basic")


# ---------------------------------------------------------------- JWKS from a URL


async def test_jwks_url_keys_verify_bearer_and_first_message_tokens(start_server):
    from aiohttp import web

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}

    async def serve_jwks(request: web.Request) -> web.Response:
        return web.json_response(jwks)

    app = web.Application()
    app.router.add_get("/jwks.json", serve_jwks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        from wsguard.settings import JwtConfig

        settings = loopback_settings(
            auth={
                "required": True,
                "methods": ("jwt",),
                "jwt": JwtConfig(
                    algorithms=("RS256",), jwks_url=f"http://127.0.0.1:{port}/jwks.json"
                ),
            }
        )
        server = await start_server(settings=settings, env={})
        signed = jwt.encode(
            {"sub": "alice", "exp": time.time() + 60},
            key,
            algorithm="RS256",
            headers={"kid": "k1"},
        )
        status, client = await handshake(server.port, extra=[("Authorization", f"Bearer {signed}")])
        assert status == 101
        assert (await read_json(client))["user"] == "alice"
        _, pending = await handshake(server.port)
        await pending.send(frame(OP_TEXT, orjson.dumps({"id": 1, "op": "auth", "token": signed})))
        assert (await read_json(pending))["ok"] is True
    finally:
        await runner.cleanup()
