"""Real `wsguard serve` processes sharing one Redis, and the clients the cluster tests drive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support.processes import free_port
from wsguard.tickets import mint

SECRET = "t" * 48
API_KEY = "k" * 40
APP = "https://app.test"  # the page origin every node serves

CONFIG = """
[server]
host = "127.0.0.1"
port = {port}

[origins]
allowed = ["{app}"]

[auth]
methods = ["ticket"]
[auth.ticket]
secret_env = "TICKET_SECRET"

[limits]
# Relaxed for this test only: one machine plays hundreds of users from one address.
max_connections_per_ip = 2000
max_connections_per_user = 2000
handshake_rate = 10000
handshake_burst = 10000
messages_per_second = 100000
burst = 100000
user_messages_per_second = 100000
user_burst = 100000
bytes_per_second = 100000000
user_bytes_per_second = 100000000
max_send_queue_bytes = 16777216

[broker]
url = "{redis}"
prefix = "{prefix}"

[api]
port = {api_port}

[log]
level = "warning"

[[channels]]
pattern = "feed:*"
subscribe = ["authenticated"]
publish = ["role:publisher"]
history_size = 10000
"""


def ticket(user: str, roles: tuple[str, ...] = ()) -> str:
    return mint(user, APP, roles=roles, secret=SECRET.encode())


@dataclass
class Node:
    """One `wsguard serve` process."""

    port: int
    api_port: int
    process: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    async def api(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{self.api_port}{path}",
                json=body,
                headers={"Authorization": f"Bearer {API_KEY}"},
            ) as response,
        ):
            return response.status, await response.json()


def start_node(tmp: Path, redis_url: str, prefix: str) -> Node:
    """Start one node on two free ports. A port found free can be taken again before the node
    binds it (by any process's outgoing connection): then the node exits with "address already
    in use", and it is started again on new ports, three tries at most."""
    for _ in range(3):
        port, api_port = free_port(), free_port()
        config = tmp / f"node-{port}.toml"
        config.write_text(
            CONFIG.format(port=port, app=APP, redis=redis_url, prefix=prefix, api_port=api_port)
        )
        log_path = tmp / f"node-{port}.log"
        with log_path.open("wb") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                [sys.executable, "-m", "wsguard.cli", "serve", "-c", str(config)],
                stdout=subprocess.PIPE,
                stderr=log,
                env={
                    **os.environ,
                    "TICKET_SECRET": SECRET,
                    "WSGUARD_API_KEY": API_KEY,
                    "PYTHONUNBUFFERED": "1",
                },
            )
        node = Node(port, api_port, process)
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if line.startswith("wsguard listening on port "):
            return node
        stop_node(node)  # never leave a process (or its pipe) behind
        errors = log_path.read_text()
        if "address already in use" not in errors:
            raise AssertionError(errors)
    raise AssertionError(f"no free ports for a node after three tries: {errors}")


def stop_node(node: Node) -> None:
    if node.alive:
        node.process.send_signal(signal.SIGTERM)
        try:
            node.process.wait(15)
        except subprocess.TimeoutExpired:
            node.kill()
    if node.process.stdout is not None:
        node.process.stdout.close()


async def open_ws(port: int, user: str, roles: tuple[str, ...] = ()) -> ClientConnection:
    ws = await connect(
        f"ws://127.0.0.1:{port}/ws?ticket={ticket(user, roles)}",
        origin=APP,  # type: ignore[arg-type]
        max_queue=None,
        open_timeout=10,
    )
    welcome = orjson.loads(await ws.recv())
    assert welcome["push"] == "welcome", welcome
    return ws


@dataclass
class Subscriber:
    """A feed reader that, when its node goes away, reconnects to another node and recovers
    with ``since``: what a real client library does."""

    user: str
    channel: str
    ports: list[int]
    home: int
    received: list[int] = field(default_factory=list)
    epoch: str = ""
    offset: int = 0
    reconnects: int = 0
    recovering: bool = False
    incomplete: int = 0  # `recovered` pushes with complete: false
    closes: list[int | None] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # replies and non-message pushes
    ws: ClientConnection | None = None

    async def connect(self, since: bool) -> None:
        """Connect to the home node (or, when it refuses, the next ones) and subscribe."""
        last: Exception | None = None
        for step in range(len(self.ports) * 3):
            port = self.ports[(self.home + step) % len(self.ports)]
            try:
                ws = await open_ws(port, self.user)
            except (OSError, InvalidStatus, TimeoutError) as exc:
                last = exc
                await asyncio.sleep(0.05)
                continue
            request: dict[str, Any] = {"id": 1, "op": "subscribe", "channel": self.channel}
            if since:
                request["since"] = {"epoch": self.epoch, "offset": self.offset}
            await ws.send(orjson.dumps(request).decode())
            reply = orjson.loads(await ws.recv())
            self.events.append({"since": request.get("since"), "port": port, **reply})
            if not reply.get("ok"):
                await ws.close()
                last = AssertionError(reply)
                await asyncio.sleep(0.1)
                continue
            if not since:
                self.epoch = reply["result"]["epoch"]
                self.offset = reply["result"]["offset"]
            self.home = (self.home + step) % len(self.ports)
            self.ws = ws
            return
        raise AssertionError(f"{self.user} could not reconnect: {last!r}")

    async def read_until(self, last_n: int) -> None:
        """Read the feed until message ``last_n``, reconnecting (with recovery) on a close."""
        while not self.received or self.received[-1] < last_n or self.recovering:
            assert self.ws is not None
            try:
                frame = orjson.loads(await self.ws.recv())
            except ConnectionClosed:
                self.closes.append(self.ws.close_code)
                self.reconnects += 1
                await self.connect(since=True)
                self.recovering = True  # until its `recovered` push
                continue
            kind = frame.get("push")
            if kind == "message":
                self.epoch, self.offset = frame["epoch"], frame["offset"]
                self.received.append(frame["data"]["n"])
            else:
                self.events.append(frame)
            if kind == "recovered":
                self.recovering = False
                self.epoch, self.offset = frame["epoch"], frame["offset"]
                if not frame["complete"]:
                    self.incomplete += 1

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()


class Publisher:
    """Publishes numbered messages over one WebSocket, a window of them in flight."""

    def __init__(self, ws: ClientConnection, channel: str) -> None:
        self.ws = ws
        self.channel = channel
        self.next_id = 0

    async def publish(self, numbers: range, window: int = 64) -> list[dict[str, Any]]:
        """Publish ``{"n": n}`` for each n, in order; returns the replies in order."""
        replies: list[dict[str, Any]] = []
        pending = 0
        for n in numbers:
            self.next_id += 1
            message = {"id": self.next_id, "op": "publish", "channel": self.channel}
            await self.ws.send(orjson.dumps({**message, "data": {"n": n}}).decode())
            pending += 1
            if pending == window:
                replies.append(orjson.loads(await self.ws.recv()))
                pending -= 1
        for _ in range(pending):
            replies.append(orjson.loads(await self.ws.recv()))
        return replies

    async def publish_one(self, n: int) -> dict[str, Any]:
        return (await self.publish(range(n, n + 1)))[0]
