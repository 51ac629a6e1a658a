"""The internal API: a real aiohttp listener on 127.0.0.1, a real aiohttp client."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from wsguard.audit import AuditLog
from wsguard.brokers.base import Publication
from wsguard.codes import ReplyCode
from wsguard.exceptions import ConfigError, ReplyError
from wsguard.metrics import Metrics
from wsguard.server.api import MAX_BODY_BYTES, ApiServer
from wsguard.testing import loopback_settings
from wsguard.tickets import mint

if TYPE_CHECKING:
    from conftest import AuditRecorder

pytestmark = pytest.mark.integration

KEY = secrets.token_urlsafe(48)
ENV = {"WSGUARD_API_KEY": KEY}
TICKET_SECRET = secrets.token_bytes(32)
ORIGIN = "https://app.example.com"
UNAUTHORIZED = {
    "ok": False,
    "error": {"code": 401, "reason": "unauthorized", "message": "a valid API key is required"},
}


class RecordingControl:
    """Our own ``ApiControl`` interface, recorded; tickets come from the real ``mint``, metrics
    from the real ``Metrics``. Publications get offsets 1, 2, 3, ... in epoch ``ep-1``;
    ``refusals`` names the channels ``publish`` refuses, and with what."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.sockets = {"alice": 3}
        self.broker_down = False
        self.subscribers: dict[str, int] = {}
        self.refusals: dict[str, Exception] = {}
        self.metrics = Metrics()

    def mint_ticket(
        self,
        user: str,
        origin: str,
        ttl: float | None,
        roles: Sequence[str],
        channels: Sequence[str],
    ) -> str:
        self.calls.append(("mint_ticket", user, origin, ttl, list(roles), list(channels)))
        return mint(
            user, origin, ttl=ttl or 30.0, roles=roles, channels=channels, secret=TICKET_SECRET
        )

    async def revoke(self, user: str) -> int:
        self.calls.append(("revoke", user))
        if self.broker_down:
            raise ConnectionError("the broker is down")
        return self.sockets.get(user, 0)

    async def disconnect(self, user: str, code: int) -> int:
        self.calls.append(("disconnect", user, code))
        if self.broker_down:
            raise ConnectionError("the broker is down")
        return self.sockets.get(user, 0)

    async def publish(self, channel: str, data: Any) -> Publication:
        self.calls.append(("publish", channel, data))
        if channel in self.refusals:
            raise self.refusals[channel]
        offset = sum(1 for call in self.calls if call[0] == "publish")
        return Publication(channel, "ep-1", offset, orjson.dumps(data))

    def channels(self) -> dict[str, int]:
        self.calls.append(("channels",))
        return dict(self.subscribers)


class Api:
    def __init__(self, server: ApiServer, http: aiohttp.ClientSession) -> None:
        self.base = f"http://127.0.0.1:{server.port}"
        self.http = http

    async def call(
        self, method: str, path: str, body: Any = None, *, key: str | None = KEY, **kwargs: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if body is not None:
            kwargs["data"] = body if isinstance(body, bytes) else orjson.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as resp:
            raw = await resp.read()
            # Every response, whatever its status: no version banner, never cached.
            assert "Server" not in resp.headers
            assert resp.headers["Cache-Control"] == "no-store"
            assert resp.headers["Content-Type"] == "application/json"
            return resp.status, orjson.loads(raw), resp


def bad_request(message: str, reason: str = "bad_request") -> dict[str, Any]:
    return error(400, reason, message)


def error(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "reason": reason, "message": message}}


@pytest.fixture
def control() -> RecordingControl:
    return RecordingControl()


@pytest.fixture
async def api(control: RecordingControl, audit: AuditRecorder) -> AsyncIterator[Api]:
    logger = logging.Logger("api-audit-test")
    logger.addHandler(audit)
    settings = loopback_settings(api={"port": 0})
    server = ApiServer(settings, control, env=ENV, audit=AuditLog(logger=logger))
    async with server, aiohttp.ClientSession() as http:
        yield Api(server, http)


async def test_missing_key_fails_start_naming_the_field_and_variable() -> None:
    server = ApiServer(loopback_settings(api={"port": 0}), RecordingControl(), env={})
    with pytest.raises(ConfigError) as info:
        await server.start()
    assert info.value.field == "api.key_env"
    assert "WSGUARD_API_KEY" in info.value.problem


async def test_short_key_fails_start_without_echoing_its_value() -> None:
    short = "s3cr3t-but-only-31-characters.."
    env = {"MY_KEY": short}
    server = ApiServer(
        loopback_settings(api={"port": 0, "key_env": "MY_KEY"}), RecordingControl(), env=env
    )
    with pytest.raises(ConfigError) as info:
        await server.start()
    assert info.value.field == "api.key_env"
    assert "MY_KEY" in str(info.value)
    assert short not in str(info.value)


async def test_unbindable_non_loopback_host_warns_then_fails_naming_api_port(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="wsguard")
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never assigned to this machine, so it cannot bind.
    settings = loopback_settings(api={"host": "192.0.2.1", "port": 0})
    with pytest.raises(ConfigError) as info:
        await ApiServer(settings, RecordingControl(), env=ENV).start()
    assert info.value.field == "api.port"
    assert "192.0.2.1, which is not loopback" in caplog.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Bearer {secrets.token_urlsafe(48)}"},
        {"Authorization": f"Bearer {KEY[:-1]}"},
        {"Authorization": f"Bearer {KEY[:8]}"},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": KEY},
    ],
    ids=["none", "wrong", "all-but-last", "short-prefix", "extended", "basic", "no-scheme"],
)
async def test_request_without_the_right_key_is_401_and_reaches_nothing(
    api: Api, control: RecordingControl, headers: dict[str, str]
) -> None:
    body = {"user": "alice", "origin": ORIGIN}
    status, reply, resp = await api.call("POST", "/api/tickets", body, key=None, headers=headers)
    assert (status, reply) == (401, UNAUTHORIZED)
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert control.calls == []


async def test_unknown_path_without_key_is_401_not_404(api: Api) -> None:
    status, reply, _ = await api.call("GET", "/api/nothing-here", key=None)
    assert (status, reply) == (401, UNAUTHORIZED)


async def test_ticket_is_minted_with_the_given_arguments(
    api: Api, control: RecordingControl
) -> None:
    body = {"user": "alice", "origin": ORIGIN, "ttl": 60, "roles": ["r"], "channels": ["c.1"]}
    status, reply, _ = await api.call("POST", "/api/tickets", body)
    assert status == 200
    assert control.calls == [("mint_ticket", "alice", ORIGIN, 60, ["r"], ["c.1"])]
    assert reply == {"ok": True, "result": {"ticket": reply["result"]["ticket"], "expires_in": 60}}
    assert reply["result"]["ticket"].count(".") == 1


async def test_ticket_without_ttl_uses_the_configured_default(
    api: Api, control: RecordingControl
) -> None:
    status, reply, _ = await api.call("POST", "/api/tickets", {"user": "bob", "origin": ORIGIN})
    assert status == 200
    assert control.calls == [("mint_ticket", "bob", ORIGIN, None, [], [])]
    assert reply["result"]["expires_in"] == 30.0


@pytest.mark.parametrize("ttl", [0, -1, 301, 300.5, "30", True, None, [30]])
async def test_ticket_ttl_out_of_range_or_not_a_number_is_400(
    api: Api, control: RecordingControl, ttl: Any
) -> None:
    body = {"user": "alice", "origin": ORIGIN, "ttl": ttl}
    if ttl is None:
        body["ttl"] = None  # explicit null is "absent": the default applies
        status, _, _ = await api.call("POST", "/api/tickets", body)
        assert status == 200
        return
    status, reply, _ = await api.call("POST", "/api/tickets", body)
    assert (status, reply) == (400, bad_request("ttl: must be a number of seconds, 0 < ttl <= 300"))
    assert control.calls == []


async def test_ticket_ttl_of_exactly_300_is_accepted(api: Api) -> None:
    body = {"user": "alice", "origin": ORIGIN, "ttl": 300}
    status, reply, _ = await api.call("POST", "/api/tickets", body)
    assert (status, reply["result"]["expires_in"]) == (200, 300)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"origin": ORIGIN}, "user: must be a non-empty string of at most 255 characters"),
        (
            {"user": "", "origin": ORIGIN},
            "user: must be a non-empty string of at most 255 characters",
        ),
        (
            {"user": 7, "origin": ORIGIN},
            "user: must be a non-empty string of at most 255 characters",
        ),
        (
            {"user": "u" * 256, "origin": ORIGIN},
            "user: must be a non-empty string of at most 255 characters",
        ),
        ({"user": "alice"}, "origin: must be a non-empty string of at most 255 characters"),
        ({"user": "alice", "origin": ORIGIN, "roles": "admin"}, "roles: must be a list of strings"),
        (
            {"user": "alice", "origin": ORIGIN, "channels": [1]},
            "channels: must be a list of strings",
        ),
        (
            {"user": "alice", "origin": ORIGIN, "admin": True},
            "body: unknown field; allowed: channels, origin, roles, ttl, user",
        ),
    ],
    ids=[
        "no-user",
        "empty-user",
        "int-user",
        "long-user",
        "no-origin",
        "roles-str",
        "channels-int",
        "unknown-field",
    ],
)
async def test_ticket_with_a_bad_field_is_400_naming_it(
    api: Api, control: RecordingControl, body: Any, message: str
) -> None:
    status, reply, _ = await api.call("POST", "/api/tickets", body)
    assert (status, reply) == (400, bad_request(message))
    assert control.calls == []


async def test_ticket_with_malformed_origin_is_400_from_the_minter(
    api: Api, control: RecordingControl
) -> None:
    body = {"user": "alice", "origin": "javascript:alert(1)"}
    status, reply, _ = await api.call("POST", "/api/tickets", body)
    expected = "origin: must be scheme://host[:port], e.g. https://app.example.com"
    assert (status, reply) == (400, bad_request(expected))
    assert len(control.calls) == 1  # the real minter raised ValueError; its text is not echoed


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"user": "alice",}', b"\xff\xfe"])
async def test_invalid_json_is_400(api: Api, control: RecordingControl, raw: bytes) -> None:
    status, reply, _ = await api.call("POST", "/api/revoke", raw)
    assert (status, reply) == (400, bad_request("body: must be valid JSON", "bad_json"))
    assert control.calls == []


@pytest.mark.parametrize("path", ["/api/revoke", "/api/publish"])
async def test_body_that_is_not_an_object_is_400(
    api: Api, control: RecordingControl, path: str
) -> None:
    status, reply, _ = await api.call("POST", path, b'["alice"]')
    assert (status, reply) == (400, bad_request("body: must be a JSON object", "bad_envelope"))
    assert control.calls == []


async def test_ticket_body_with_a_duplicate_user_key_is_400(
    api: Api, control: RecordingControl
) -> None:
    # Which "user" wins depends on the parser; the strict codec refuses the ambiguity.
    raw = b'{"user": "alice", "user": "admin", "origin": "https://app.example.com"}'
    status, reply, _ = await api.call("POST", "/api/tickets", raw)
    assert (status, reply) == (
        400,
        bad_request("body: duplicate key in an object", "duplicate_key"),
    )
    assert control.calls == []


def padded_body(size: int) -> bytes:
    """A valid tickets body of exactly ``size`` bytes."""
    prefix = b'{"user":"alice","origin":"' + ORIGIN.encode() + b'","roles":["'
    suffix = b'"]}'
    return prefix + b"r" * (size - len(prefix) - len(suffix)) + suffix


TOO_LARGE = {
    "ok": False,
    "error": {"code": 413, "reason": "too_large", "message": "the body exceeds 65536 bytes"},
}


async def test_body_of_exactly_64_kib_is_accepted(api: Api) -> None:
    status, _, _ = await api.call("POST", "/api/tickets", padded_body(MAX_BODY_BYTES))
    assert status == 200


async def test_body_over_64_kib_is_413(api: Api, control: RecordingControl) -> None:
    status, reply, _ = await api.call("POST", "/api/tickets", padded_body(MAX_BODY_BYTES + 1))
    assert (status, reply) == (413, TOO_LARGE)
    assert control.calls == []


async def test_chunked_body_over_64_kib_is_413(api: Api, control: RecordingControl) -> None:
    body = padded_body(4 * MAX_BODY_BYTES)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    status, reply, _ = await api.call("POST", "/api/tickets", None, data=chunks())
    assert (status, reply) == (413, TOO_LARGE)
    assert control.calls == []


async def test_revoke_returns_how_many_sockets_were_closed(
    api: Api, control: RecordingControl
) -> None:
    status, reply, _ = await api.call("POST", "/api/revoke", {"user": "alice"})
    assert (status, reply) == (200, {"ok": True, "result": {"closed": 3}})
    status, reply, _ = await api.call("POST", "/api/revoke", {"user": "nobody"})
    assert (status, reply) == (200, {"ok": True, "result": {"closed": 0}})
    assert control.calls == [("revoke", "alice"), ("revoke", "nobody")]


@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/revoke", {"user": "alice"}), ("/api/disconnect", {"user": "alice", "code": 4000})],
)
async def test_revoke_and_disconnect_that_other_nodes_missed_are_503(
    api: Api, control: RecordingControl, path: str, body: dict[str, object]
) -> None:
    control.broker_down = True
    status, reply, _ = await api.call("POST", path, body)
    assert status == 503
    assert reply == {
        "ok": False,
        "error": {
            "code": 503,
            "reason": "unavailable",
            "message": "done on this node only: the broker is unavailable",
        },
    }


async def test_disconnect_defaults_to_4503(api: Api, control: RecordingControl) -> None:
    status, reply, _ = await api.call("POST", "/api/disconnect", {"user": "alice"})
    assert (status, reply) == (200, {"ok": True, "result": {"closed": 3}})
    assert control.calls == [("disconnect", "alice", 4503)]


async def test_disconnect_passes_an_application_code(api: Api, control: RecordingControl) -> None:
    status, _, _ = await api.call("POST", "/api/disconnect", {"user": "alice", "code": 4000})
    assert status == 200
    assert control.calls == [("disconnect", "alice", 4000)]


@pytest.mark.parametrize("code", [1000, 3999, 5000, "4503", 4503.0, True, None])
async def test_disconnect_code_outside_4000_4999_is_400(
    api: Api, control: RecordingControl, code: Any
) -> None:
    body = {"user": "alice", "code": code}
    status, reply, _ = await api.call("POST", "/api/disconnect", body)
    assert (status, reply) == (400, bad_request("code: must be an integer from 4000 to 4999"))
    assert control.calls == []


@pytest.mark.parametrize("path", ["/api/tickets", "/api/revoke", "/api/disconnect", "/api/publish"])
async def test_get_on_an_endpoint_is_405(api: Api, control: RecordingControl, path: str) -> None:
    status, reply, resp = await api.call("GET", path)
    error = {"code": 405, "reason": "method_not_allowed", "message": "use POST"}
    assert (status, reply) == (405, {"ok": False, "error": error})
    assert resp.headers["Allow"] == "POST"
    assert control.calls == []


@pytest.mark.parametrize("path", ["/api/channels", "/metrics"])
async def test_post_on_a_get_endpoint_is_405(
    api: Api, control: RecordingControl, path: str
) -> None:
    status, reply, resp = await api.call("POST", path, {"user": "alice"})
    error = {"code": 405, "reason": "method_not_allowed", "message": "use GET"}
    assert (status, reply) == (405, {"ok": False, "error": error})
    assert resp.headers["Allow"] == "GET"
    assert control.calls == []


@pytest.mark.parametrize(
    "path", ["/api/nothing", "/", "/api/tickets/", "/metrics/", "/api/metrics"]
)
async def test_unknown_path_is_404(api: Api, path: str) -> None:
    status, reply, _ = await api.call("POST", path, {"user": "alice"})
    error = {"code": 404, "reason": "not_found", "message": "no such endpoint"}
    assert (status, reply) == (404, {"ok": False, "error": error})


async def test_healthz_needs_no_key(api: Api) -> None:
    status, reply, _ = await api.call("GET", "/healthz", key=None)
    assert (status, reply) == (200, {"status": "ok"})


async def test_every_call_is_audited_without_ticket_or_key(api: Api, audit: AuditRecorder) -> None:
    _, reply, _ = await api.call("POST", "/api/tickets", {"user": "alice", "origin": ORIGIN})
    await api.call("POST", "/api/revoke", {"user": "alice"}, key="wrong")
    await api.call("GET", "/nope")
    await api.call("GET", "/healthz")
    calls = [{k: e.get(k) for k in ("event", "endpoint", "status", "user")} for e in audit.events]
    assert calls == [
        {"event": "api_call", "endpoint": "/api/tickets", "status": 200, "user": "alice"},
        {"event": "api_call", "endpoint": "/api/revoke", "status": 401, "user": None},
        {"event": "api_call", "endpoint": "unknown", "status": 404, "user": None},
    ]
    for line in audit.lines:
        assert reply["result"]["ticket"] not in line
        assert KEY not in line


async def test_key_and_ticket_never_reach_the_logs(
    control: RecordingControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wsguard")
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    settings = loopback_settings(api={"port": 0})
    body = {"user": "alice", "origin": ORIGIN, "roles": ["body-marker"]}
    async with ApiServer(settings, control, env=ENV) as server, aiohttp.ClientSession() as http:
        api = Api(server, http)
        _, reply, _ = await api.call("POST", "/api/tickets", body)
        await api.call("POST", "/api/tickets", body, key=KEY[:-1])
        await api.call("POST", "/api/tickets", b"{broken")
    ticket = reply["result"]["ticket"]
    # The logs were captured (the default audit log is under "wsguard")...
    assert '"event":"api_call"' in caplog.text
    # ...and hold neither secrets nor bodies.
    for secret in (KEY, KEY[:-1], ticket, "body-marker", "{broken"):
        assert secret not in caplog.text


# --- POST /api/publish ---------------------------------------------------------------------


async def test_publish_returns_the_stream_position_and_passes_the_data_unchanged(
    api: Api, control: RecordingControl
) -> None:
    data = {"text": "hi", "n": [1, 2.5, None, True], "nested": {"a": {"b": "c"}}}
    status, reply, _ = await api.call("POST", "/api/publish", {"channel": "chat:1", "data": data})
    assert (status, reply) == (200, {"ok": True, "result": {"epoch": "ep-1", "offset": 1}})
    status, reply, _ = await api.call("POST", "/api/publish", {"channel": "chat:1", "data": "x"})
    assert (status, reply) == (200, {"ok": True, "result": {"epoch": "ep-1", "offset": 2}})
    assert control.calls == [("publish", "chat:1", data), ("publish", "chat:1", "x")]


async def test_publish_of_null_data_is_a_publication(api: Api, control: RecordingControl) -> None:
    status, _, _ = await api.call("POST", "/api/publish", {"channel": "chat:1", "data": None})
    assert status == 200
    assert control.calls == [("publish", "chat:1", None)]


CHANNEL_PROBLEM = "channel: must be a non-empty string of at most 255 characters"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"data": 1}, CHANNEL_PROBLEM),
        ({"channel": "", "data": 1}, CHANNEL_PROBLEM),
        ({"channel": 7, "data": 1}, CHANNEL_PROBLEM),
        ({"channel": ["chat:1"], "data": 1}, CHANNEL_PROBLEM),
        ({"channel": "c" * 256, "data": 1}, CHANNEL_PROBLEM),
        ({"channel": "chat:1"}, "data: must be present (any JSON value, null included)"),
        (
            {"channel": "chat:1", "data": 1, "user": "alice"},
            "body: unknown field; allowed: channel, data",
        ),
        ({}, CHANNEL_PROBLEM),
    ],
    ids=["no-channel", "empty", "int", "list", "long", "no-data", "unknown-field", "empty-body"],
)
async def test_publish_with_a_bad_field_is_400_naming_it(
    api: Api, control: RecordingControl, body: Any, message: str
) -> None:
    status, reply, _ = await api.call("POST", "/api/publish", body)
    assert (status, reply) == (400, bad_request(message))
    assert control.calls == []


def nested(levels: int) -> bytes:
    """A publish body whose ``data`` adds ``levels`` nested arrays below the top object."""
    return b'{"channel": "chat:1", "data": ' + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize(
    ("raw", "reason", "message"),
    [
        (b'{"channel": "chat:1", "data": NaN}', "bad_json", "body: must be valid JSON"),
        (b'{"channel": "chat:1", "data": Infinity}', "bad_json", "body: must be valid JSON"),
        (b'{"channel": "chat:1", "data": 1,}', "bad_json", "body: must be valid JSON"),
        (b'{"channel": "chat:1", "data": "\xff"}', "bad_json", "body: must be valid JSON"),
        (
            b'{"channel": "public", "channel": "admin", "data": 1}',
            "duplicate_key",
            "body: duplicate key in an object",
        ),
        (
            b'{"channel": "chat:1", "data": {"role": "user", "role": "admin"}}',
            "duplicate_key",
            "body: duplicate key in an object",
        ),
        (
            b'{"channel": "chat:1", "data": {"a": [{"__proto__": {"isAdmin": true}}]}}',
            "forbidden_key",
            "body: forbidden key __proto__",
        ),
        (
            b'{"channel": "chat:1", "data": {"constructor": {"prototype": 1}}}',
            "forbidden_key",
            "body: forbidden key constructor",
        ),
        (
            b'{"channel": "chat:1", "data": 9007199254740992}',
            "number_out_of_range",
            "body: number outside the exactly representable range",
        ),
        (nested(32), "too_deep", "body: nesting deeper than 32 levels"),
    ],
    ids=[
        "nan",
        "infinity",
        "trailing-comma",
        "bad-utf8",
        "duplicate-channel",
        "duplicate-in-data",
        "proto",
        "constructor",
        "unsafe-integer",
        "too-deep",
    ],
)
async def test_publish_body_refused_by_the_strict_codec_is_400_with_its_reason(
    api: Api, control: RecordingControl, raw: bytes, reason: str, message: str
) -> None:
    status, reply, _ = await api.call("POST", "/api/publish", raw)
    assert (status, reply) == (400, bad_request(message, reason))
    assert control.calls == []


async def test_publish_body_at_the_configured_depth_limit_is_accepted(
    api: Api, control: RecordingControl
) -> None:
    # The top-level object is level 1: 31 arrays below it make exactly json_max_depth = 32.
    status, _, _ = await api.call("POST", "/api/publish", nested(31))
    assert status == 200
    assert len(control.calls) == 1


async def test_publish_depth_limit_follows_the_settings(
    control: RecordingControl,
) -> None:
    settings = loopback_settings(api={"port": 0}, limits={"json_max_depth": 3})
    async with ApiServer(settings, control, env=ENV) as server, aiohttp.ClientSession() as http:
        api = Api(server, http)
        assert (await api.call("POST", "/api/publish", nested(2)))[0] == 200
        status, reply, _ = await api.call("POST", "/api/publish", nested(3))
    assert (status, reply) == (400, bad_request("body: nesting deeper than 3 levels", "too_deep"))


@pytest.mark.parametrize(
    "refusal",
    [
        ReplyError(400, "bad_channel", "channel: bad character"),
        ReplyError(404, "unknown_channel", "no channel rule matches"),
        ReplyError(422, "invalid_data", "data.items[2]: does not match the schema (minimum)"),
        ReplyError(422, "bad_output", "data: does not match the output schema (required)"),
        ReplyError(503, "unavailable", "the broker is unavailable"),
        ReplyError(ReplyCode.NOT_FOUND, "unknown_channel", "no channel rule matches"),
    ],
    ids=lambda e: f"{type(e.code).__name__}-{int(e.code)}-{e.reason}",
)
async def test_publish_refused_by_the_server_answers_its_code_reason_and_message(
    api: Api, control: RecordingControl, refusal: ReplyError
) -> None:
    control.refusals["chat:1"] = refusal
    status, reply, _ = await api.call("POST", "/api/publish", {"channel": "chat:1", "data": 1})
    assert (status, reply) == (refusal.code, error(refusal.code, refusal.reason, refusal.message))
    assert control.calls == [("publish", "chat:1", 1)]


@pytest.mark.parametrize(
    "refusal",
    [
        ReplyError(200, "fine"),
        ReplyError(42, "odd"),
        ReplyError(True, "bool"),
        ReplyError(400, "Peer <text>"),
    ],
    ids=["200", "42", "bool", "bad-reason"],
)
async def test_publish_refusal_that_is_not_an_error_reply_is_500(
    api: Api, control: RecordingControl, refusal: ReplyError
) -> None:
    control.refusals["chat:1"] = refusal
    status, reply, _ = await api.call("POST", "/api/publish", {"channel": "chat:1", "data": 1})
    assert (status, reply) == (500, error(500, "internal_error", "internal error"))


async def test_publish_failing_unexpectedly_is_500_without_the_exception_text(
    api: Api, control: RecordingControl, caplog: pytest.LogCaptureFixture
) -> None:
    control.refusals["chat:1"] = RuntimeError("secret-detail")
    status, reply, _ = await api.call("POST", "/api/publish", {"channel": "chat:1", "data": 1})
    assert (status, reply) == (500, error(500, "internal_error", "internal error"))
    assert "secret-detail" in caplog.text  # logged for the operator, never sent


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/publish"), ("GET", "/api/channels"), ("GET", "/metrics")],
)
@pytest.mark.parametrize("key", [None, "wrong", KEY[:-1]], ids=["none", "wrong", "all-but-last"])
async def test_new_endpoints_without_the_right_key_are_401_and_reach_nothing(
    api: Api, control: RecordingControl, method: str, path: str, key: str | None
) -> None:
    body = {"channel": "chat:1", "data": 1} if method == "POST" else None
    status, reply, resp = await api.call(method, path, body, key=key)
    assert (status, reply) == (401, UNAUTHORIZED)
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert control.calls == []


# --- GET /api/channels -----------------------------------------------------------------------


async def test_channels_are_listed_sorted_by_name(api: Api, control: RecordingControl) -> None:
    control.subscribers = {"room:b": 2, "room:a": 5, "chat:9": 1, "chat:10": 7}
    status, reply, _ = await api.call("GET", "/api/channels")
    assert status == 200
    assert reply == {
        "ok": True,
        "result": {
            "channels": [
                {"channel": "chat:10", "subscribers": 7},
                {"channel": "chat:9", "subscribers": 1},
                {"channel": "room:a", "subscribers": 5},
                {"channel": "room:b", "subscribers": 2},
            ]
        },
    }


async def test_no_channels_is_an_empty_list(api: Api) -> None:
    status, reply, _ = await api.call("GET", "/api/channels")
    assert (status, reply) == (200, {"ok": True, "result": {"channels": []}})


# --- GET /metrics ----------------------------------------------------------------------------


async def test_metrics_are_the_servers_prometheus_text(api: Api, control: RecordingControl) -> None:
    control.metrics.connection_opened()
    control.metrics.connection_opened()
    control.metrics.rejected("message", "rate_limited")
    async with api.http.get(
        api.base + "/metrics", headers={"Authorization": f"Bearer {KEY}"}
    ) as resp:
        body = await resp.text()
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "Server" not in resp.headers
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }
    assert samples["wsguard_connections", ()] == 2
    assert (
        samples["wsguard_rejections_total", (("reason", "rate_limited"), ("stage", "message"))] == 1
    )


async def test_audit_names_the_published_channel_but_not_the_data(
    api: Api, audit: AuditRecorder
) -> None:
    body = {"channel": "chat:1", "data": "data-marker"}
    await api.call("POST", "/api/publish", body)
    await api.call("GET", "/api/channels")
    calls = [
        {k: e.get(k) for k in ("event", "endpoint", "status", "channel")} for e in audit.events
    ]
    assert calls == [
        {"event": "api_call", "endpoint": "/api/publish", "status": 200, "channel": "chat:1"},
        {"event": "api_call", "endpoint": "/api/channels", "status": 200, "channel": None},
    ]
    assert not any("data-marker" in line for line in audit.lines)
