"""The internal API driving a real server: tickets it mints open one socket once; a revoke
closes the user's sockets with 4403 within a second; a publication reaches a subscriber, and the
channel listing and metrics show it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from support.rawws import RawClient, handshake_bytes
from wsguard.server.api import ApiServer
from wsguard.server.lifecycle import Server
from wsguard.settings import ChannelConfig, Settings
from wsguard.testing import loopback_settings

pytestmark = pytest.mark.integration

API_KEY = "k" * 40
ENV = {"WSGUARD_TICKET_SECRET": "t" * 48, "WSGUARD_API_KEY": API_KEY}


@contextlib.asynccontextmanager
async def api_client(settings: Settings, server: Server) -> AsyncIterator[aiohttp.ClientSession]:
    """The internal API of ``server``, and an HTTP session holding its key."""
    async with (
        ApiServer(settings, server, env=ENV) as api,
        aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{api.port}",
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as http,
    ):
        yield http


async def open_with_ticket(port: int, ticket: str) -> tuple[int, RawClient]:
    client = await RawClient.connect(port)
    await client.send(handshake_bytes(port, path=f"/ws?ticket={ticket}"))
    return (await client.read_response()).status, client


async def test_api_ticket_opens_once_and_api_revoke_closes_4403(start_server):
    settings = loopback_settings(auth={"required": True, "methods": ("ticket",)}, api={"port": 0})
    server = await start_server(settings=settings, env=ENV)
    origin = f"http://127.0.0.1:{server.port}"
    async with (
        api_client(settings, server) as http,
    ):
        tickets = []
        for _ in range(2):
            async with http.post("/api/tickets", json={"user": "alice", "origin": origin}) as r:
                assert r.status == 200
                tickets.append((await r.json())["result"]["ticket"])
        sockets = []
        for ticket in tickets:
            status, client = await open_with_ticket(server.port, ticket)
            assert status == 101
            sockets.append(client)
        status, _ = await open_with_ticket(server.port, tickets[0])
        assert status == 401  # replayed

        started = time.monotonic()
        async with http.post("/api/revoke", json={"user": "alice"}) as r:
            assert r.status == 200
            assert await r.json() == {"ok": True, "result": {"closed": 2}}
        codes = await asyncio.gather(*(c.read_until_close(timeout=1) for c in sockets))
        assert codes == [4403, 4403]
        assert time.monotonic() - started < 1.0

        # A ticket minted after the revocation works again (the user logged in anew).
        await asyncio.sleep(0.01)
        async with http.post("/api/tickets", json={"user": "alice", "origin": origin}) as r:
            fresh = (await r.json())["result"]["ticket"]
        status, _ = await open_with_ticket(server.port, fresh)
        assert status == 101


async def test_api_publish_reaches_a_subscriber_and_shows_in_channels_and_metrics(start_server):
    chat = ChannelConfig(pattern="chat:*", subscribe=("anonymous",))  # no client may publish
    settings = loopback_settings(auth={"required": False}, api={"port": 0}, channels=[chat])
    server = await start_server(settings=settings, env=ENV)
    origin = f"http://127.0.0.1:{server.port}"
    async with (
        api_client(settings, server) as http,
        connect(f"ws://127.0.0.1:{server.port}/ws", origin=origin) as ws,
    ):
        assert orjson.loads(await ws.recv())["push"] == "welcome"
        await ws.send('{"id": 1, "op": "subscribe", "channel": "chat:1"}')
        subscribed = orjson.loads(await ws.recv())
        assert subscribed["ok"] is True, subscribed

        body = {"channel": "chat:1", "data": {"text": "from the backend"}}
        async with http.post("/api/publish", json=body) as r:
            reply = await r.json()
            assert (r.status, reply["ok"]) == (200, True)
        epoch, offset = reply["result"]["epoch"], reply["result"]["offset"]
        assert offset == subscribed["result"]["offset"] + 1
        push = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        assert push == {
            "push": "message",
            "channel": "chat:1",
            "epoch": epoch,
            "offset": offset,
            "data": {"text": "from the backend"},
        }

        async with http.post("/api/publish", json={"channel": "room:1", "data": 1}) as r:
            assert r.status == 404
            assert (await r.json())["error"]["reason"] == "unknown_channel"

        async with http.get("/api/channels") as r:
            assert await r.json() == {
                "ok": True,
                "result": {"channels": [{"channel": "chat:1", "subscribers": 1}]},
            }

        async with http.get("/metrics") as r:
            assert r.status == 200
            text = await r.text()
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.labels
        }
        assert samples["wsguard_connections"] == 1
        assert samples["wsguard_publications_total"] == 1
        assert samples["wsguard_fanout_seconds_count"] == 1
