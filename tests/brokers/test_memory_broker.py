"""MemoryBroker: the shared broker contract, plus what only the embedded broker promises."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from brokers.contract import KEEP, BrokerContract, FakeClock, Recorder
from wsguard.brokers.base import Broker, Publication, StreamPosition
from wsguard.brokers.memory import MemoryBroker


class TestMemoryBrokerContract(BrokerContract):
    @pytest.fixture
    def make_broker(self, clock: FakeClock) -> Callable[[], Broker]:
        return lambda: MemoryBroker(clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> MemoryBroker:
    return MemoryBroker(clock)


async def test_delivery_happens_before_publish_returns(broker: MemoryBroker) -> None:
    recorder = Recorder()
    broker.subscribe("room:a", recorder)
    published = await broker.publish("room:a", b"x", **KEEP)
    assert recorder.received == [published]


async def test_a_new_broker_starts_a_new_epoch() -> None:
    first = await MemoryBroker().publish("room:a", b"x", **KEEP)
    second = await MemoryBroker().publish("room:a", b"x", **KEEP)
    assert (first.offset, second.offset) == (1, 1)
    assert first.epoch != second.epoch


async def test_subscribing_fixes_the_epoch_before_the_first_publication(
    broker: MemoryBroker,
) -> None:
    broker.subscribe("room:a", Recorder())
    start = await broker.history("room:a", since=None, limit=0)
    published = await broker.publish("room:a", b"x", **KEEP)
    assert start.position == StreamPosition(published.epoch, 0)
    result = await broker.history("room:a", since=start.position, limit=10)
    assert (result.publications, result.complete) == ([published], True)


async def test_unknown_channel_position_matches_only_itself(broker: MemoryBroker) -> None:
    empty = await broker.history("room:a", since=None, limit=0)
    same = await broker.history("room:a", since=empty.position, limit=0)
    other = await broker.history("room:a", since=StreamPosition("e", 0), limit=0)
    assert (empty.position, same.complete, other.complete) == (StreamPosition("", 0), True, False)
    assert len(broker) == 0


async def test_a_negative_since_offset_is_incomplete(broker: MemoryBroker) -> None:
    published = await broker.publish("room:a", b"x", **KEEP)
    result = await broker.history("room:a", since=StreamPosition(published.epoch, -1), limit=5)
    assert (result.publications, result.complete) == ([], False)


async def test_a_callback_unsubscribing_another_mid_fanout_stops_it_at_once(
    broker: MemoryBroker,
) -> None:
    victim = Recorder()

    def first(publication: Publication) -> None:
        broker.unsubscribe(victim_subscription)

    broker.subscribe("room:a", first)
    victim_subscription = broker.subscribe("room:a", victim)
    await broker.publish("room:a", b"x", **KEEP)
    assert victim.received == []


async def test_idle_channels_are_removed(broker: MemoryBroker, clock: FakeClock) -> None:
    subscription = broker.subscribe("room:sub", Recorder())
    await broker.presence_add("room:who", "c1", {})
    await broker.publish("room:ttl", b"x", history_size=5, history_ttl=10)
    await broker.publish("room:none", b"x", history_size=0, history_ttl=0)
    await broker.publish("room:forever", b"x", history_size=5, history_ttl=0)
    assert len(broker) == 4  # room:none kept nothing, so it is gone already
    broker.unsubscribe(subscription)
    await broker.presence_remove("room:who", "c1")
    clock.now += 11
    await broker.history("room:other", since=None, limit=0)  # any call sweeps
    assert len(broker) == 1  # only room:forever, which still holds history


async def test_a_channel_with_a_subscriber_outlives_its_history(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    broker.subscribe("room:a", Recorder())
    first = await broker.publish("room:a", b"x", history_size=5, history_ttl=10)
    clock.now += 11
    second = await broker.publish("room:a", b"x", history_size=5, history_ttl=10)
    assert (second.epoch, second.offset) == (first.epoch, 2)
    assert len(broker) == 1


async def test_a_smaller_history_size_trims_the_ring(broker: MemoryBroker) -> None:
    for _ in range(5):
        await broker.publish("room:a", b"x", history_size=5, history_ttl=0)
    await broker.publish("room:a", b"x", history_size=2, history_ttl=0)
    result = await broker.history("room:a", since=None, limit=10)
    assert [p.offset for p in result.publications] == [5, 6]


async def test_expiry_left_behind_by_a_removed_channel_is_ignored(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    await broker.publish("room:a", b"x", history_size=5, history_ttl=10)
    await broker.publish("room:a", b"x", history_size=0, history_ttl=0)  # channel removed
    clock.now += 5
    kept = await broker.publish("room:a", b"x", history_size=5, history_ttl=10)
    clock.now += 6  # the removed channel's deadline passes, not the new one's
    result = await broker.history("room:a", since=None, limit=10)
    assert result.publications == [kept]
    clock.now += 5
    assert len(broker) == 1
    await broker.history("room:a", since=None, limit=10)
    assert len(broker) == 0


async def test_close_deactivates_subscriptions(broker: MemoryBroker) -> None:
    subscription = broker.subscribe("room:a", Recorder())
    await broker.close()
    assert subscription.active is False
    assert "inactive" in repr(subscription)
    broker.unsubscribe(subscription)  # harmless after close
    assert len(broker) == 0
