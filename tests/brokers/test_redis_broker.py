"""RedisBroker on a real Redis: the shared broker contract, plus what only a shared broker
must promise (several nodes, a broken link, tickets consumed once across nodes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from brokers.contract import KEEP, BrokerContract, FakeClock, Recorder
from support.redisdb import REDIS_URL, drop_prefix, unique_prefix
from wsguard.brokers.base import Broker, StreamPosition
from wsguard.brokers.redis import RedisBroker, RedisTicketStore
from wsguard.exceptions import BrokerUnavailable

pytestmark = pytest.mark.redis


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = unique_prefix()
    yield value
    await drop_prefix(value)


def new_broker(prefix: str, clock: Callable[[], float], **options: float) -> RedisBroker:
    return RedisBroker.from_url(REDIS_URL, prefix=prefix, clock=clock, **options)


async def started(broker: RedisBroker) -> RedisBroker:
    await broker.start()
    assert await broker.wait_connected(5.0)
    return broker


async def settle(broker: RedisBroker) -> None:
    """Publications reach a node in order on one link: once a marker published now has
    arrived, so has everything published before it."""
    arrived = asyncio.Event()
    subscription = broker.subscribe("settle:marker", lambda _: arrived.set())
    await broker.subscribed(subscription)
    await broker.publish("settle:marker", b"0", history_size=0, history_ttl=0)
    await asyncio.wait_for(arrived.wait(), 5.0)
    broker.unsubscribe(subscription)


class TestRedisBrokerContract(BrokerContract):
    @pytest.fixture
    async def broker(self, prefix: str, clock: FakeClock) -> AsyncIterator[Broker]:
        broker = await started(new_broker(prefix, clock))
        yield broker
        await broker.close()

    async def settle(self, broker: Broker) -> None:
        assert isinstance(broker, RedisBroker)
        await settle(broker)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def nodes(prefix: str, clock: FakeClock) -> AsyncIterator[list[RedisBroker]]:
    brokers = [await started(new_broker(prefix, clock)) for _ in range(3)]
    yield brokers
    for broker in brokers:
        await broker.close()


async def test_offsets_are_gap_free_across_nodes_publishing_at_once(
    nodes: list[RedisBroker],
) -> None:
    recorders = [Recorder() for _ in nodes]
    for node, recorder in zip(nodes, recorders, strict=True):
        await node.subscribed(node.subscribe("room:a", recorder))
    published = await asyncio.gather(
        *(
            nodes[n % 3].publish("room:a", b"%d" % n, history_size=1000, history_ttl=0)
            for n in range(600)
        )
    )
    assert sorted(p.offset for p in published) == list(range(1, 601))
    for node in nodes:
        await settle(node)
    by_offset = {p.offset: p for p in published}
    for recorder in recorders:
        assert recorder.received == [by_offset[n] for n in range(1, 601)]


async def test_a_ticket_is_consumed_once_across_nodes(nodes: list[RedisBroker]) -> None:
    stores = [RedisTicketStore(node) for node in nodes]
    expires = 4_000_000_000.0
    results = await asyncio.gather(*(store.consume("t-1", expires) for store in stores * 5))
    assert sorted(results) == [False] * 14 + [True]
    assert await stores[0].consume("t-2", expires) is True
    assert await stores[2].consume("t-2", expires) is False


async def test_presence_is_shared_and_expires_when_its_node_stops_refreshing(
    nodes: list[RedisBroker], clock: FakeClock
) -> None:
    await nodes[0].presence_add("room:a", "c1", {"user": "alice"})
    await nodes[1].presence_add("room:a", "c2", {"user": "bob"})
    assert await nodes[2].presence("room:a") == {"c1": {"user": "alice"}, "c2": {"user": "bob"}}
    clock.now += 59
    assert set(await nodes[2].presence("room:a")) == {"c1", "c2"}
    clock.now += 2  # past the 60 s presence ttl: nobody refreshed
    assert await nodes[2].presence("room:a") == {}


async def test_control_messages_reach_every_other_node(nodes: list[RedisBroker]) -> None:
    got: list[list[dict[str, object]]] = [[], [], []]
    for node, inbox in zip(nodes, got, strict=True):
        node.on_control(inbox.append)
    await nodes[0].send_control({"op": "disconnect", "user": "alice", "code": 4403})
    for node in nodes:
        await settle(node)
    assert got[0] == []  # a node does not hear itself
    for inbox in got[1:]:
        assert [(m["op"], m["user"], m["code"]) for m in inbox] == [("disconnect", "alice", 4403)]


async def test_revocations_are_kept_for_nodes_that_connect_later(
    nodes: list[RedisBroker], clock: FakeClock
) -> None:
    await nodes[0].send_control({"op": "revoke", "user": "alice", "at": clock.now})
    await nodes[0].send_control({"op": "revoke", "user": "bob", "at": clock.now - 100})
    assert await nodes[1].revocations(ttl=50, now=clock.now) == {"alice": clock.now}
    # bob's is older than the ttl: deleted, not returned again
    assert await nodes[1].revocations(ttl=500, now=clock.now) == {"alice": clock.now}


async def test_a_broken_link_is_caught_up_from_the_history(prefix: str, clock: FakeClock) -> None:
    publisher = await started(new_broker(prefix, clock))
    node = await started(new_broker(prefix, clock))
    recorder, lost = Recorder(), []
    await node.subscribed(node.subscribe("room:a", recorder, lost.append))
    try:
        first = await publisher.publish("room:a", b"1", **KEEP)
        await settle(node)
        # Cut this node's pub/sub connection (as a network failure would) and publish
        # while it is down: the node must replay 2..4 from the history, then go on live.
        await kill_pubsub_link(node)
        for n in (2, 3, 4):
            await publisher.publish("room:a", b"%d" % n, **KEEP)
        assert await node.wait_connected(10.0)
        await publisher.publish("room:a", b"5", **KEEP)
        await settle(node)
        assert recorder.offsets == [1, 2, 3, 4, 5]
        assert [p.data for p in recorder.received] == [b"1", b"2", b"3", b"4", b"5"]
        assert {p.epoch for p in recorder.received} == {first.epoch}
        assert lost == []
    finally:
        await publisher.close()
        await node.close()


async def test_a_gap_the_history_cannot_cover_is_reported_not_skipped(
    prefix: str, clock: FakeClock
) -> None:
    publisher = await started(new_broker(prefix, clock))
    node = await started(new_broker(prefix, clock))
    recorder, lost = Recorder(), []
    await node.subscribed(node.subscribe("room:a", recorder, lost.append))
    try:
        await publisher.publish("room:a", b"1", history_size=2, history_ttl=0)
        await settle(node)
        await kill_pubsub_link(node)
        for n in (2, 3, 4, 5):  # the history keeps only 4 and 5: 2 and 3 are gone
            await publisher.publish("room:a", b"%d" % n, history_size=2, history_ttl=0)
        assert await node.wait_connected(10.0)
        await settle(node)
        assert lost == ["room:a"]
        assert recorder.offsets == [1]
        await publisher.publish("room:a", b"6", history_size=2, history_ttl=0)
        await settle(node)
        assert recorder.offsets == [1, 6]  # then live again, from the stream's top
    finally:
        await publisher.close()
        await node.close()


async def test_publishing_without_redis_fails_clearly(clock: FakeClock) -> None:
    broker = RedisBroker.from_url("redis://127.0.0.1:1/0", clock=clock, wait_timeout=0.5)
    await broker.start()
    try:
        with pytest.raises(BrokerUnavailable):
            await broker.publish("room:a", b"x", **KEEP)
        with pytest.raises(BrokerUnavailable):
            await broker.history("room:a", since=None, limit=1)
        subscription = broker.subscribe("room:a", Recorder())
        with pytest.raises(BrokerUnavailable):
            await broker.subscribed(subscription)
        with pytest.raises(BrokerUnavailable):
            await RedisTicketStore(broker).consume("t", 4_000_000_000.0)
        assert broker.connected is False
    finally:
        await broker.close()


async def test_history_since_a_position_of_a_stream_that_never_existed(
    prefix: str, clock: FakeClock
) -> None:
    broker = await started(new_broker(prefix, clock))
    try:
        none = await broker.history("room:a", since=StreamPosition("", 0), limit=10)
        assert (none.complete, none.position) == (True, StreamPosition("", 0))
        other = await broker.history("room:a", since=StreamPosition("e", 3), limit=10)
        assert other.complete is False
    finally:
        await broker.close()


async def kill_pubsub_link(node: RedisBroker) -> None:
    """Close the node's pub/sub connection from the Redis side (CLIENT KILL), as a network
    failure or a Redis restart would."""
    clients = await node.redis.client_list(_type="pubsub")
    victims = [c["id"] for c in clients if c.get("name") == node.client_name]
    assert len(victims) == 1, clients
    await node.redis.client_kill_filter(_id=victims[0])
    node._connected.clear()


async def test_a_jump_in_the_live_stream_is_filled_from_the_history_once(
    prefix: str, clock: FakeClock
) -> None:
    node = await started(new_broker(prefix, clock))
    recorder, lost = Recorder(), []
    try:
        await node.subscribed(node.subscribe("room:a", recorder, lost.append))
        for n in (1, 2, 3):
            await node.publish("room:a", b"%d" % n, **KEEP)
        await settle(node)
        # As if 2 and 3 had never arrived: the next live publication (4) is a jump.
        state = node._channels["room:a"]
        assert state.position is not None
        state.position = StreamPosition(state.position.epoch, 1)
        await node.publish("room:a", b"4", **KEEP)
        await settle(node)
        assert recorder.offsets == [1, 2, 3, 2, 3, 4]
        assert lost == []
        # A stream this node never saw the start of (another epoch): the loss is reported,
        # then the publication is delivered once.
        state.position = StreamPosition("an-old-epoch", 9)
        await node.publish("room:a", b"5", **KEEP)
        await settle(node)
        assert lost == ["room:a"]
        assert recorder.offsets == [1, 2, 3, 2, 3, 4, 5]
    finally:
        await node.close()


async def test_a_node_keeps_its_presence_entries_alive(prefix: str, clock: FakeClock) -> None:
    # presence_ttl 0.3 s: the housekeeping pass runs every 0.1 s of real time; expiry is judged
    # on the fake clock, which only this test moves.
    node = await started(new_broker(prefix, clock, presence_ttl=0.3))
    other = await started(new_broker(prefix, clock))
    try:
        await node.presence_add("room:a", "c1", {"user": "alice"})
        clock.now += 0.2
        await asyncio.sleep(0.35)  # at least one refresh: the entry now lives until +0.5
        clock.now += 0.2  # +0.4: past the first expiry
        assert await other.presence("room:a") == {"c1": {"user": "alice"}}
        await node.close()  # no more refreshes; close also removes its entries
        assert await other.presence("room:a") == {}
    finally:
        await node.close()
        await other.close()
