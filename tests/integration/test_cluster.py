"""Several `wsguard serve` processes on one real Redis: every message delivered exactly once and
in order, across nodes, through a node crash and through a Redis restart; tickets and
revocations shared by every node."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support.cluster import (
    APP,
    Node,
    Publisher,
    Subscriber,
    free_port,
    open_ws,
    start_node,
    stop_node,
)
from support.redisdb import REDIS_URL, drop_prefix, unique_prefix
from wsguard.codes import CloseCode

pytestmark = [pytest.mark.integration, pytest.mark.redis]

MESSAGES = 5000
SUBSCRIBERS = 300


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = unique_prefix()
    yield value
    await drop_prefix(value)


@contextlib.contextmanager
def cluster(tmp_path: Path, redis_url: str, prefix: str, size: int = 3) -> Iterator[list[Node]]:
    nodes: list[Node] = []
    try:
        for _ in range(size):
            nodes.append(start_node(tmp_path, redis_url, prefix))
        yield nodes
    finally:
        for node in nodes:
            stop_node(node)


async def subscribe_all(nodes: list[Node], channel: str, count: int) -> list[Subscriber]:
    ports = [node.port for node in nodes]
    subscribers = [Subscriber(f"reader{i}", channel, ports, i % len(ports)) for i in range(count)]
    for start in range(0, count, 50):  # 50 handshakes at a time
        await asyncio.gather(*(s.connect(since=False) for s in subscribers[start : start + 50]))
    return subscribers


async def stop_reading(
    readers: list[asyncio.Task[None]], publisher: Publisher, subscribers: list[Subscriber]
) -> None:
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await publisher.ws.close()
    for subscriber in subscribers:
        await subscriber.close()


def describe(s: Subscriber) -> str:
    """What went wrong for one subscriber, short enough for an assertion message."""
    seen = s.received
    missing = sorted(set(range(1, MESSAGES + 1)) - set(seen))
    doubled = len(seen) - len(set(seen))
    order = next((i for i in range(1, len(seen)) if seen[i] <= seen[i - 1]), None)
    return (
        f"{s.user}: {len(seen)} received, missing {missing[:5]}..{len(missing)}, "
        f"{doubled} doubled, first out of order at {order}, closes {s.closes}, "
        f"events {s.events}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("crash", [False, True], ids=["steady", "node-killed-mid-stream"])
async def test_every_subscriber_on_every_node_gets_exactly_1_to_5000_in_order(
    tmp_path: Path, prefix: str, crash: bool
) -> None:
    with cluster(tmp_path, REDIS_URL, prefix) as nodes:
        subscribers = await subscribe_all(nodes, "feed:prices", SUBSCRIBERS)
        publisher = Publisher(await open_ws(nodes[0].port, "desk", ("publisher",)), "feed:prices")
        readers = [asyncio.create_task(s.read_until(MESSAGES)) for s in subscribers]
        try:
            replies = await publisher.publish(range(1, MESSAGES // 2 + 1))
            if crash:
                nodes[2].kill()  # SIGKILL: no close frames, no goodbye
            replies += await publisher.publish(range(MESSAGES // 2 + 1, MESSAGES + 1))
            assert [r["result"]["offset"] for r in replies] == list(range(1, MESSAGES + 1))
            await asyncio.wait_for(asyncio.gather(*readers), 240)
        finally:
            await stop_reading(readers, publisher, subscribers)
    expected = list(range(1, MESSAGES + 1))
    wrong = [s for s in subscribers if s.received != expected]
    assert [describe(s) for s in wrong] == []
    moved = [s for s in subscribers if s.reconnects]
    if crash:
        # Every client of the killed node (a third) reconnected elsewhere and recovered in full.
        assert len(moved) == SUBSCRIBERS // 3
        assert {s.home for s in moved} <= {0, 1}
        assert all(s.closes == [1006] and s.incomplete == 0 for s in moved)
    else:
        assert moved == []


async def test_a_ticket_minted_on_node_a_opens_once_on_b_and_is_refused_on_c(
    tmp_path: Path, prefix: str
) -> None:
    with cluster(tmp_path, REDIS_URL, prefix) as (a, b, c):
        status, reply = await a.api("/api/tickets", {"user": "alice", "origin": APP})
        assert status == 200
        value = reply["result"]["ticket"]
        url = "ws://127.0.0.1:{}/ws?ticket=" + value
        ws = await connect(url.format(b.port), origin=APP)  # type: ignore[arg-type]
        try:
            assert orjson.loads(await ws.recv())["push"] == "welcome"
            with pytest.raises(InvalidStatus) as replay:
                await connect(url.format(c.port), origin=APP)  # type: ignore[arg-type]
            assert replay.value.response.status_code == 401
        finally:
            await ws.close()


async def test_revoking_on_node_a_disconnects_the_user_on_b_and_c_within_a_second(
    tmp_path: Path, prefix: str
) -> None:
    with cluster(tmp_path, REDIS_URL, prefix) as (a, b, c):
        victims = [await open_ws(node.port, "mallory") for node in (b, c, c)]
        bystander = await open_ws(b.port, "bob")
        started = time.monotonic()
        status, reply = await a.api("/api/revoke", {"user": "mallory"})
        assert (status, reply) == (200, {"ok": True, "result": {"closed": 0}})
        for ws in victims:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 1.0)
            assert ws.close_code == CloseCode.FORBIDDEN
        assert time.monotonic() - started < 1.0
        await bystander.send('{"id":1,"op":"ping"}')
        assert orjson.loads(await bystander.recv()) == {"id": 1, "ok": True, "result": {}}
        await bystander.close()


# ---------------------------------------------------------------- a Redis of our own, restarted


class PrivateRedis:
    """A redis-server of this test's own, on a free port, that the test stops and restarts
    (nothing persisted: a restart loses everything, like a crash of a cache)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed (.ci/run installs it)"
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        client = redis.Redis(port=self.port)
        try:
            for _ in range(100):
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                time.sleep(0.05)
            raise AssertionError("the private redis-server did not start")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_a_redis_restart_refuses_publishes_with_503_then_recovery_tells_the_truth(
    tmp_path: Path, private_redis: PrivateRedis
) -> None:
    with cluster(tmp_path, private_redis.url, "wsguard:", size=2) as nodes:
        subscribers = await subscribe_all(nodes, "feed:fx", 20)
        publisher = Publisher(await open_ws(nodes[0].port, "desk", ("publisher",)), "feed:fx")
        readers = [asyncio.create_task(s.read_until(200)) for s in subscribers]
        try:
            replies = await publisher.publish(range(1, 101))
            assert all(r["ok"] for r in replies)
            before = [s.epoch for s in subscribers]

            private_redis.stop()  # Redis goes away, with everything it held (no persistence)
            refused = 0
            for _ in range(20):
                reply = await publisher.publish_one(-1)
                assert reply["ok"] is False
                assert reply["error"] == {
                    "code": 503,
                    "reason": "unavailable",
                    "message": "the broker is unavailable",
                }
                refused += 1
            assert refused == 20

            private_redis.start()
            # The first publishes after the restart may still meet a dead pooled connection:
            # a client retries a 503. Bounded: 50 tries, 0.1 s apart.
            for _ in range(50):
                reply = await publisher.publish_one(101)
                if reply["ok"]:
                    break
                assert reply["error"]["code"] == 503
                await asyncio.sleep(0.1)
            assert reply["ok"] is True
            # Redis lost the stream: it restarted in a new epoch, at offset 1.
            new_epoch = reply["result"]["epoch"]
            assert reply["result"]["offset"] == 1
            assert new_epoch not in before
            replies = await publisher.publish(range(102, 201))
            assert [r["result"]["offset"] for r in replies] == list(range(2, 101))
            await asyncio.wait_for(asyncio.gather(*readers), 60)
        finally:
            await stop_reading(readers, publisher, subscribers)
    for s in subscribers:
        # Nothing doubled, nothing out of order, no refused publication delivered.
        assert s.received[:100] == list(range(1, 101)), s.user
        after = s.received[100:]
        assert after == sorted(set(after)), s.user
        assert after[-1] == 200
        # Each was closed with 4510 when its node found the stream gone, and its recovery
        # said complete: false (the old epoch is lost), never a silent gap.
        assert s.closes == [CloseCode.INSUFFICIENT_STATE], (s.user, s.closes)
        assert s.incomplete == 1, s.events
        # What was published in the new epoch after the reconnect arrived, in order: the
        # recovery replayed the new stream from its start (101 at offset 1) up to now.
        assert after == list(range(101, 201)), s.user
