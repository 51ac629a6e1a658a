"""JWKS fetching against a real identity provider stand-in (aiohttp on 127.0.0.1): keys loaded
at start, rotated on an unknown kid, refetches rate limited, failures keep the old keys, and no
response body in any message or log line."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from wsguard.core.auth.jwt import JwtAuthenticator, JwtKeys, JwtVerifier
from wsguard.core.decisions import Principal, Reject
from wsguard.core.handshake import HandshakeContext
from wsguard.core.upgrade import Headers, UpgradeRequest
from wsguard.exceptions import ConfigError, InvalidState
from wsguard.server.jwks import JwksFetcher, RefreshingJwtAuthenticator
from wsguard.settings import JwtConfig

pytestmark = pytest.mark.integration

K1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
K2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
CONFIG = JwtConfig(algorithms=("RS256",))
# Appears in every bad response: it must never reach an exception or a log line.
MARKER = "BODY-MARKER-7f3a"
CTX = HandshakeContext("127.0.0.1", "http", "127.0.0.1", 8080, None)


def jwks(*keys: tuple[str, Any]) -> bytes:
    entries = []
    for kid, key in keys:
        algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
        entries.append({**algorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid})
    return json.dumps({"keys": entries}).encode()


def token(key: Any, kid: str) -> str:
    claims = {"sub": "alice", "exp": time.time() + 60}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def bearer(jwt_token: str) -> UpgradeRequest:
    headers = Headers([("Host", "127.0.0.1:8080"), ("Authorization", f"Bearer {jwt_token}")])
    return UpgradeRequest("GET", "/ws", "HTTP/1.1", headers, "127.0.0.1", False)


def reason(result: Principal | Reject | None) -> str:
    if isinstance(result, Principal):
        return "accepted"
    assert isinstance(result, Reject)
    return result.audit_reason


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


class Idp:
    """The identity provider's JWKS endpoint; each test sets what it answers."""

    def __init__(self) -> None:
        self.body = jwks(("k1", K1))
        self.status = 200
        self.mode = "normal"
        self.times: list[float] = []
        self.accepts: list[str | None] = []
        self.release = asyncio.Event()
        self.url = ""

    @property
    def requests(self) -> int:
        return len(self.times)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.times.append(time.monotonic())
        self.accepts.append(request.headers.get("Accept"))
        if self.mode == "redirect":
            raise web.HTTPFound("/elsewhere")
        if self.mode == "stall":
            await asyncio.wait_for(self.release.wait(), 5)
        if self.mode == "chunked":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(8):
                await response.write(MARKER.encode() * 32)
            await response.write_eof()
            return response
        return web.Response(body=self.body, status=self.status, content_type="application/json")

    async def elsewhere(self, request: web.Request) -> web.Response:
        return web.Response(body=jwks(("k1", K1)), content_type="application/json")


@pytest.fixture
async def idp() -> AsyncIterator[Idp]:
    server = Idp()
    app = web.Application()
    app.router.add_get("/jwks", server.handle)
    app.router.add_get("/elsewhere", server.elsewhere)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}/jwks"
    yield server
    server.release.set()
    await runner.cleanup()


Make = Callable[..., JwksFetcher]


@pytest.fixture
async def make(idp: Idp) -> AsyncIterator[Make]:
    """``make(**options)``: a fetcher of the IdP's JWKS, stopped after the test."""
    made: list[JwksFetcher] = []

    def build(**options: Any) -> JwksFetcher:
        options.setdefault("refresh_interval", 300.0)
        fetcher = JwksFetcher(idp.url, CONFIG, **options)
        made.append(fetcher)
        return fetcher

    yield build
    for fetcher in made:
        await fetcher.stop()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(self.format(record) for record in self.records)


@pytest.fixture
def auth_log() -> Iterator[Records]:
    # A handler on the logger itself: wsguard's logging setup turns propagation off.
    handler = Records()
    logger = logging.getLogger("wsguard.auth")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- start


async def test_start_loads_the_keys_and_a_k1_token_verifies(idp: Idp, make: Make):
    fetcher = make()
    await fetcher.start()
    result = fetcher.authenticator.authenticate(bearer(token(K1, "k1")), CTX, time.time())
    assert isinstance(result, Principal)
    assert result.user_id == "alice"
    assert isinstance(fetcher.verifier.verify(token(K1, "k1"), time.time()), Principal)
    assert idp.accepts == ["application/json"]


async def test_a_given_authenticator_gets_the_fetched_keys(make: Make):
    placeholder = JwtVerifier(JwtKeys.from_secret(b"s" * 32), ["HS256"])
    authenticator = JwtAuthenticator(placeholder)
    fetcher = make(authenticator=authenticator)
    await fetcher.start()
    assert fetcher.authenticator is authenticator
    assert authenticator.verifier is fetcher.verifier
    assert isinstance(authenticator.verifier.verify(token(K1, "k1"), time.time()), Principal)


async def test_keys_are_unavailable_before_start(make: Make):
    fetcher = make()
    with pytest.raises(InvalidState):
        _ = fetcher.verifier
    with pytest.raises(InvalidState):
        _ = fetcher.authenticator


async def test_start_twice_is_invalid_state(make: Make):
    fetcher = make()
    await fetcher.start()
    with pytest.raises(InvalidState):
        await fetcher.start()


async def test_async_with_starts_and_stops(idp: Idp):
    async with JwksFetcher(idp.url, CONFIG) as fetcher:
        assert isinstance(fetcher.verify(token(K1, "k1"), time.time()), Principal)


@pytest.mark.parametrize(
    ("mode", "status", "body", "expected"),
    [
        ("normal", 500, MARKER.encode(), "HTTP status 500"),
        ("normal", 404, MARKER.encode(), "HTTP status 404"),
        ("redirect", 200, b"", "HTTP status 302 (redirects are not followed)"),
        ("normal", 200, b"x" * 2048 + MARKER.encode(), "larger than 1024 bytes"),
        ("chunked", 200, b"", "larger than 1024 bytes"),
        ("normal", 200, b"{" + MARKER.encode(), "not valid JSON"),
        ("normal", 200, json.dumps([MARKER]).encode(), 'not a JSON object with a "keys" list'),
        ("normal", 200, json.dumps({"keys": [], MARKER: 1}).encode(), "not a usable JWKS"),
    ],
)
async def test_first_fetch_failure_is_a_config_error_without_the_body(
    idp: Idp, make: Make, mode: str, status: int, body: bytes, expected: str
):
    idp.mode, idp.status, idp.body = mode, status, body
    fetcher = make(max_bytes=1024)
    with pytest.raises(ConfigError) as caught:
        await fetcher.start()
    assert caught.value.field == "auth.jwt.jwks_url"
    assert expected in caught.value.problem
    assert MARKER not in str(caught.value)
    assert idp.requests == 1  # the redirect was not followed either


async def test_first_fetch_timeout_is_a_config_error(idp: Idp, make: Make):
    idp.mode = "stall"
    fetcher = make(timeout=0.2)
    with pytest.raises(ConfigError) as caught:
        await fetcher.start()
    assert caught.value.field == "auth.jwt.jwks_url"
    assert "no complete answer within 0.2 s" in caught.value.problem


async def test_unreachable_idp_is_a_config_error():
    # A port nobody listens on any more.
    probe = web.AppRunner(web.Application())
    await probe.setup()
    site = web.TCPSite(probe, "127.0.0.1", 0)
    await site.start()
    port = probe.addresses[0][1]
    await probe.cleanup()
    url = f"http://127.0.0.1:{port}/jwks"
    with pytest.raises(ConfigError) as caught:
        await JwksFetcher(url, CONFIG).start()
    assert caught.value.field == "auth.jwt.jwks_url"
    assert "cannot connect" in caught.value.problem


async def test_keys_that_cannot_verify_the_configured_algorithms_name_that_field(
    idp: Idp, make: Make
):
    idp.body = jwks(("e1", EC_KEY))
    with pytest.raises(ConfigError) as caught:
        await make().start()
    assert caught.value.field == "auth.jwt.algorithms"


@pytest.mark.parametrize(
    "url",
    ["http://idp.example/jwks", "ftp://127.0.0.1/jwks", "https:///jwks", "file:///etc/jwks"],
)
def test_a_url_other_than_https_or_loopback_http_is_refused(url: str):
    with pytest.raises(ConfigError) as caught:
        JwksFetcher(url, CONFIG)
    assert caught.value.field == "auth.jwt.jwks_url"


def test_credentials_in_the_url_are_not_shown():
    with pytest.raises(ConfigError) as caught:
        JwksFetcher("http://user:hunter2@idp.example/jwks?token=abc", CONFIG)
    assert "hunter2" not in str(caught.value)
    assert "abc" not in str(caught.value)


@pytest.mark.parametrize(
    "option",
    [
        {"refresh_interval": 0},
        {"refresh_interval": float("nan")},
        {"min_refetch_interval": -1},
        {"timeout": 0},
        {"max_bytes": 0},
    ],
)
def test_out_of_range_options_are_refused(option: dict[str, float]):
    with pytest.raises(ValueError, match="must be"):
        JwksFetcher("https://idp.example/jwks", CONFIG, **option)


# ---------------------------------------------------------------- rotation


async def test_unknown_kid_triggers_a_refetch_and_the_rotated_key_then_verifies(
    idp: Idp, make: Make
):
    fetcher = make(min_refetch_interval=0.0)
    await fetcher.start()
    authenticator = RefreshingJwtAuthenticator(fetcher)
    assert authenticator.name == "jwt"
    idp.body = jwks(("k2", K2))
    request = bearer(token(K2, "k2"))

    assert reason(authenticator.authenticate(request, CTX, time.time())) == "unknown_kid"
    await eventually(
        lambda: reason(authenticator.authenticate(request, CTX, time.time())) == "accepted"
    )
    assert idp.requests == 2
    old = bearer(token(K1, "k1"))
    assert reason(authenticator.authenticate(old, CTX, time.time())) == "unknown_kid"


async def test_verify_asks_for_a_refresh_on_an_unknown_kid(idp: Idp, make: Make):
    fetcher = make(min_refetch_interval=0.0)
    await fetcher.start()
    idp.body = jwks(("k1", K1), ("k2", K2))
    k2_token = token(K2, "k2")
    assert reason(fetcher.verify(k2_token, time.time())) == "unknown_kid"
    await eventually(lambda: reason(fetcher.verify(k2_token, time.time())) == "accepted")
    assert reason(fetcher.verify(token(K1, "k1"), time.time())) == "accepted"


async def test_a_known_kid_or_a_bad_token_asks_for_no_refresh(idp: Idp, make: Make):
    fetcher = make(min_refetch_interval=0.0)
    await fetcher.start()
    authenticator = RefreshingJwtAuthenticator(fetcher)
    authenticator.authenticate(bearer(token(K1, "k1")), CTX, time.time())
    authenticator.authenticate(bearer("not.a.token"), CTX, time.time())
    await asyncio.sleep(0.3)
    assert idp.requests == 1


async def test_refresh_requests_within_min_refetch_interval_cause_at_most_one_fetch(
    idp: Idp, make: Make
):
    clock = FakeClock()
    fetcher = make(min_refetch_interval=30.0, clock=clock)
    await fetcher.start()
    clock.now += 31  # past the window of the start-up fetch
    for _ in range(100):
        fetcher.request_refresh()
        await asyncio.sleep(0.005)  # each ask meets an idle fetcher: none merge by luck
    await eventually(lambda: idp.requests >= 2)
    await asyncio.sleep(0.2)
    assert idp.requests == 2


async def test_a_refresh_request_inside_the_window_is_deferred_to_its_end(idp: Idp, make: Make):
    fetcher = make(min_refetch_interval=0.5)
    await fetcher.start()
    fetcher.request_refresh()
    await eventually(lambda: idp.requests == 2)
    assert idp.times[1] - idp.times[0] >= 0.45


async def test_keys_refresh_on_schedule_without_any_request(idp: Idp, make: Make):
    fetcher = make(refresh_interval=0.2)
    await fetcher.start()
    idp.body = jwks(("k2", K2))
    await eventually(lambda: reason(fetcher.verify(token(K2, "k2"), time.time())) == "accepted")


# ---------------------------------------------------------------- failed refresh


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, MARKER.encode(), "HTTP status 500"),
        (200, b"<html>" + MARKER.encode(), "not valid JSON"),
        (200, json.dumps({"keys": [{"kty": "RSA", "kid": MARKER}]}).encode(), "usable JWKS"),
        (200, jwks(("e1", EC_KEY)), "auth.jwt.algorithms"),
    ],
)
async def test_failed_refresh_keeps_the_old_keys_and_logs_no_body(
    idp: Idp, make: Make, auth_log: Records, status: int, body: bytes, expected: str
):
    fetcher = make(refresh_interval=0.2)
    await fetcher.start()
    idp.status, idp.body = status, body
    await eventually(lambda: idp.requests >= 3)  # two failed refreshes
    assert reason(fetcher.verify(token(K1, "k1"), time.time())) == "accepted"
    warnings = [r for r in auth_log.records if r.levelno == logging.WARNING]
    assert warnings
    assert expected in warnings[0].getMessage()
    assert "keeping the previous keys" in warnings[0].getMessage()
    assert MARKER not in auth_log.text()

    idp.status, idp.body = 200, jwks(("k1", K1), ("k2", K2))
    await eventually(lambda: reason(fetcher.verify(token(K2, "k2"), time.time())) == "accepted")


async def test_refresh_that_times_out_keeps_the_old_keys(idp: Idp, make: Make, auth_log: Records):
    fetcher = make(refresh_interval=0.1, timeout=0.2)
    await fetcher.start()
    idp.mode = "stall"
    await eventually(lambda: any("no complete answer" in r.getMessage() for r in auth_log.records))
    assert reason(fetcher.verify(token(K1, "k1"), time.time())) == "accepted"


async def test_stop_ends_the_refreshes_and_keeps_the_last_keys(idp: Idp, make: Make):
    fetcher = make(refresh_interval=0.05)
    await fetcher.start()
    await fetcher.stop()
    await fetcher.stop()  # idempotent
    count = idp.requests
    await asyncio.sleep(0.2)
    assert idp.requests == count
    assert reason(fetcher.verify(token(K1, "k1"), time.time())) == "accepted"


async def test_stop_right_after_a_refresh_request_returns(idp: Idp, make: Make):
    fetcher = make()
    await fetcher.start()
    await asyncio.sleep(0.05)  # the refresh task is waiting for its next turn
    fetcher.request_refresh()  # wakes it; the cancel below lands before it runs
    async with asyncio.timeout(5):
        await fetcher.stop()
