"""The handshake pipeline under a real listener, seen by three kinds of client."""

from __future__ import annotations

from importlib import resources

import aiohttp
import orjson
import pytest
import websockets
from websockets.asyncio.client import connect

from support.rawws import RawClient, handshake_bytes

pytestmark = pytest.mark.integration


async def raw_handshake(port: int, request: bytes) -> tuple[int, RawClient]:
    client = await RawClient.connect(port)
    await client.send(request)
    response = await client.read_response()
    return response.status, client


# ---------------------------------------------------------------- legitimate clients


async def test_aiohttp_client_from_same_origin_gets_welcome_and_pong(start_server):
    server = await start_server()
    url = f"http://127.0.0.1:{server.port}/ws"
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, origin=f"http://127.0.0.1:{server.port}") as ws,
    ):
        welcome = await ws.receive_json(timeout=5)
        client_id = welcome.pop("client")
        assert isinstance(client_id, str)
        assert len(client_id) == 16  # 12 random bytes, base64url
        assert welcome == {
            "push": "welcome",
            "server": "wsguard",
            "protocol": 1,
            "user": None,
            "auth": "anonymous",
        }
        await ws.send_json({"id": 7, "op": "ping"})
        assert await ws.receive_json(timeout=5) == {"id": 7, "ok": True, "result": {}}


async def test_accepted_handshake_echoes_origin_and_varies_on_it(start_server):
    server = await start_server()
    origin = f"http://127.0.0.1:{server.port}"
    async with connect(f"ws://127.0.0.1:{server.port}/ws", origin=origin) as ws:
        headers = ws.response.headers
        assert headers["Access-Control-Allow-Origin"] == origin
        assert headers["Vary"] == "Origin"
        assert "Server" not in headers
        assert "Set-Cookie" not in headers
        await ws.recv()


async def test_websockets_client_gets_error_replies_for_bad_messages(start_server):
    server = await start_server()
    origin = f"http://127.0.0.1:{server.port}"
    async with connect(f"ws://127.0.0.1:{server.port}/ws", origin=origin) as ws:
        await ws.recv()  # welcome
        await ws.send("{not json")
        assert orjson.loads(await ws.recv()) == {
            "ok": False,
            "error": {"code": 400, "reason": "bad_json", "message": "invalid JSON"},
        }
        await ws.send('{"id": 3, "op": "teleport"}')
        assert orjson.loads(await ws.recv()) == {
            "id": 3,
            "ok": False,
            "error": {"code": 404, "reason": "unknown_op", "message": "unknown op"},
        }
        await ws.send("[1, 2]")
        reply = orjson.loads(await ws.recv())
        assert reply["error"]["code"] == 400
        assert reply["error"]["reason"] == "bad_envelope"
        # The connection survives every bad message.
        await ws.send('{"id": 4, "op": "ping"}')
        assert orjson.loads(await ws.recv()) == {"id": 4, "ok": True, "result": {}}


# ---------------------------------------------------------------- refused clients


async def test_websockets_client_from_foreign_origin_is_refused_403(start_server, audit):
    server = await start_server()
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(f"ws://127.0.0.1:{server.port}/ws", origin="http://evil.test"):
            pass
    assert info.value.response.status_code == 403
    assert info.value.response.body == b"403 Forbidden\n"
    [event] = audit.rejected()
    assert event["status"] == 403
    assert event["reason"] == "origin_not_allowed"
    assert event["origin"] == "http://evil.test"


async def test_aiohttp_client_with_suffix_origin_is_refused(start_server):
    server = await start_server(
        auth={"required": False},
        origins={"allowed": ("https://app.example.com",)},
    )
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(
                f"http://127.0.0.1:{server.port}/ws",
                origin="https://app.example.com.evil.test",
            )
    assert info.value.status == 403


@pytest.mark.parametrize(
    ("request_kwargs", "status", "reason"),
    [
        pytest.param({"origin": None}, 403, "origin_missing", id="missing-origin"),
        pytest.param({"origin": "null"}, 403, "origin_null", id="null-origin"),
        pytest.param(
            {"extra": [("Origin", "http://evil.test")]}, 400, "duplicate_header", id="two-origins"
        ),
        pytest.param({"host": "evil.test"}, 400, "host_not_allowed", id="dns-rebinding-host"),
        pytest.param({"drop": ("Sec-WebSocket-Key",)}, 400, "bad_key", id="missing-key"),
        pytest.param({"drop": ("Upgrade",)}, 400, "not_upgrade", id="no-upgrade"),
        pytest.param({"path": "/admin"}, 404, "unknown_path", id="unknown-path"),
    ],
)
async def test_malformed_or_hostile_handshake_gets_exact_status(
    start_server, audit, request_kwargs, status, reason
):
    server = await start_server()
    got, client = await raw_handshake(server.port, handshake_bytes(server.port, **request_kwargs))
    client.close()
    assert got == status
    assert audit.rejected()[-1]["reason"] == reason


async def test_wrong_version_gets_426_with_supported_version(start_server):
    server = await start_server()
    request = handshake_bytes(
        server.port,
        drop=("Sec-WebSocket-Version",),
        extra=[("Sec-WebSocket-Version", "8")],
    )
    client = await RawClient.connect(server.port)
    await client.send(request)
    response = await client.read_response()
    client.close()
    assert response.status == 426
    assert response.header("Sec-WebSocket-Version") == "13"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="not-http"),
        pytest.param(b"GET /ws HTTP/2.0\r\nHost: x\r\n\r\n", 400, id="http2-line"),
        pytest.param(
            b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            400,
            id="upgrade-with-body",
        ),
    ],
)
async def test_unparseable_requests_get_400_not_silence(start_server, audit, raw, status):
    server = await start_server()
    got, client = await raw_handshake(server.port, raw)
    assert got == status
    assert await client.at_eof()
    assert audit.rejected()[-1]["reason"] == "malformed_request"


async def test_header_flood_is_cut_at_max_header_bytes_with_431(start_server, audit):
    server = await start_server(auth={"required": False}, limits={"max_header_bytes": 4096})
    flood = [(f"X-Filler-{i}", "a" * 100) for i in range(60)]  # ~6.6 KB of headers
    got, client = await raw_handshake(server.port, handshake_bytes(server.port, extra=flood))
    client.close()
    assert got == 431
    assert audit.rejected()[-1]["reason"] == "header_too_large"


async def test_healthz_answers_ok_and_reveals_no_version(start_server):
    server = await start_server()
    client = await RawClient.connect(server.port)
    await client.send(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    response = await client.read_response()
    client.close()
    assert response.status == 200
    assert response.raw.endswith(b'{"status":"ok"}\n')
    assert response.header("Server") is None


@pytest.mark.parametrize(
    ("path", "name", "content_type"),
    [
        ("/wsguard.js", "wsguard.js", "text/javascript; charset=utf-8"),
        ("/wsguard.d.ts", "wsguard.d.ts", "text/plain; charset=utf-8"),
    ],
)
async def test_browser_client_is_served_by_every_server_with_page_headers(
    start_server, path, name, content_type
):
    server = await start_server()
    client = await RawClient.connect(server.port)
    await client.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    response = await client.read_response()
    client.close()
    assert response.status == 200
    assert response.header("Content-Type") == content_type
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert response.header("Cache-Control") == "no-store"
    assert response.header("Content-Security-Policy") is not None
    # Public, credential-free files: an app page on another origin may import them.
    assert response.header("Access-Control-Allow-Origin") == "*"
    assert response.header("Server") is None
    packaged = resources.files("wsguard.static").joinpath(name).read_bytes()
    assert response.raw.endswith(b"\r\n\r\n" + packaged)


# ---------------------------------------------------------------- transport and caps


async def test_trusted_proxy_saying_plain_http_is_refused_as_plaintext(start_server, audit):
    server = await start_server(
        auth={"required": False},
        server={"trusted_proxies": ("127.0.0.1",), "host": "127.0.0.1", "port": 0},
        origins={"allowed": ("https://app.example.com",)},
    )
    request = handshake_bytes(
        server.port,
        origin="https://app.example.com",
        extra=[("X-Forwarded-Proto", "http"), ("X-Forwarded-For", "203.0.113.9")],
    )
    got, client = await raw_handshake(server.port, request)
    client.close()
    assert got == 403
    assert audit.rejected()[-1]["reason"] == "plaintext"


async def test_trusted_proxy_saying_https_is_accepted_with_forwarded_client_ip(start_server, audit):
    server = await start_server(
        auth={"required": False},
        server={"trusted_proxies": ("127.0.0.1",), "host": "127.0.0.1", "port": 0},
        origins={"allowed": ("https://app.example.com",)},
    )
    request = handshake_bytes(
        server.port,
        origin="https://app.example.com",
        extra=[("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "203.0.113.9")],
    )
    got, client = await raw_handshake(server.port, request)
    client.close()
    assert got == 101
    accepted = [e for e in audit.events if e["event"] == "handshake_accepted"]
    assert accepted[-1]["client_ip"] == "203.0.113.9"


async def test_connections_over_per_ip_cap_get_429(start_server, audit):
    server = await start_server(auth={"required": False}, limits={"max_connections_per_ip": 2})
    clients = []
    for _ in range(2):
        got, client = await raw_handshake(server.port, handshake_bytes(server.port))
        assert got == 101
        clients.append(client)
    got, third = await raw_handshake(server.port, handshake_bytes(server.port))
    assert got == 429
    assert audit.rejected()[-1]["reason"] == "ip_connection_cap"
    # Closing one frees its slot.
    clients[0].close()
    await clients[0].writer.wait_closed()
    for _ in range(50):
        if server.connections < 3:
            break
        import asyncio

        await asyncio.sleep(0.02)
    got, again = await raw_handshake(server.port, handshake_bytes(server.port))
    assert got == 101
    for c in (*clients[1:], third, again):
        c.close()


async def test_handshake_flood_from_one_ip_is_rate_limited_429(start_server, audit):
    server = await start_server(
        auth={"required": False},
        limits={"handshake_rate": 0.001, "handshake_burst": 3},
    )
    statuses = []
    for _ in range(5):
        got, client = await raw_handshake(server.port, handshake_bytes(server.port))
        statuses.append(got)
        client.close()
    assert statuses == [101, 101, 101, 429, 429]
    assert audit.rejected()[-1]["reason"] == "handshake_rate"
