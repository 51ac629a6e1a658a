"""The broker contract: every ``Broker`` implementation passes these tests.

Subclass ``BrokerContract`` in a ``test_*.py`` module and override the ``make_broker`` fixture
(a factory of fresh, empty brokers reading the ``clock`` fixture). An implementation whose
delivery is not synchronous (Redis pub/sub) overrides ``settle`` to wait until everything
published so far has been delivered. Every broker reads its time from the ``clock`` fixture.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TypedDict

import pytest

from wsguard.brokers.base import Broker, Publication, StreamPosition, Subscription
from wsguard.exceptions import InvalidState


class Retention(TypedDict):
    history_size: int
    history_ttl: float


KEEP: Retention = {"history_size": 100, "history_ttl": 0.0}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A subscriber callback recording (offset, data) pairs."""

    def __init__(self) -> None:
        self.received: list[Publication] = []

    def __call__(self, publication: Publication) -> None:
        self.received.append(publication)

    @property
    def offsets(self) -> list[int]:
        return [p.offset for p in self.received]


def offsets(publications: list[Publication]) -> list[int]:
    return [p.offset for p in publications]


class BrokerContract:
    """The shared contract. Not collected itself (no ``Test`` prefix)."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def make_broker(self, clock: FakeClock) -> Callable[[], Broker]:
        raise NotImplementedError("override make_broker in the implementation's test module")

    @pytest.fixture
    async def broker(self, make_broker: Callable[[], Broker]) -> AsyncIterator[Broker]:
        broker = make_broker()
        yield broker
        await broker.close()

    async def settle(self, broker: Broker) -> None:
        """Wait until every publication made so far reached the local subscribers."""
        await asyncio.sleep(0)

    async def advance(self, clock: FakeClock, seconds: float) -> None:
        clock.now += seconds

    async def subscribe(
        self, broker: Broker, channel: str, callback: Callable[[Publication], None]
    ) -> Subscription:
        """Subscribe and wait until the subscription is live (``Broker.subscribed``)."""
        subscription = broker.subscribe(channel, callback)
        await broker.subscribed(subscription)
        return subscription

    # Offsets

    async def test_offsets_are_gap_free_under_1000_concurrent_publishes(
        self, broker: Broker
    ) -> None:
        recorder = Recorder()
        await self.subscribe(broker, "room:a", recorder)
        payloads = [b'{"n":%d}' % n for n in range(1000)]
        published = await asyncio.gather(
            *(broker.publish("room:a", p, history_size=1000, history_ttl=0) for p in payloads)
        )
        assert sorted(offsets(published)) == list(range(1, 1001))
        assert sorted(p.data for p in published) == sorted(payloads)
        assert len({p.epoch for p in published}) == 1
        await self.settle(broker)
        assert recorder.offsets == list(range(1, 1001))
        by_offset = {p.offset: p for p in published}
        assert recorder.received == [by_offset[n] for n in range(1, 1001)]
        result = await broker.history("room:a", since=None, limit=1000)
        assert result.publications == recorder.received
        assert result.complete
        assert result.position == StreamPosition(published[0].epoch, 1000)

    async def test_offsets_are_independent_per_channel(self, broker: Broker) -> None:
        a1 = await broker.publish("room:a", b"1", **KEEP)
        b1 = await broker.publish("room:b", b"1", **KEEP)
        a2 = await broker.publish("room:a", b"2", **KEEP)
        b2 = await broker.publish("room:b", b"2", **KEEP)
        b3 = await broker.publish("room:b", b"3", **KEEP)
        assert [a1.offset, a2.offset] == [1, 2]
        assert [b1.offset, b2.offset, b3.offset] == [1, 2, 3]
        assert (a2.channel, b3.channel) == ("room:a", "room:b")

    async def test_publish_returns_what_history_holds(self, broker: Broker) -> None:
        published = await broker.publish("room:a", b'{"x":1}', **KEEP)
        assert published == Publication("room:a", published.epoch, 1, b'{"x":1}')
        assert published.position == StreamPosition(published.epoch, 1)
        result = await broker.history("room:a", since=None, limit=10)
        assert result.publications == [published]

    # History

    async def test_history_since_returns_exactly_the_later_publications_in_order(
        self, broker: Broker
    ) -> None:
        published = [await broker.publish("room:a", b"%d" % n, **KEEP) for n in range(1, 11)]
        result = await broker.history("room:a", since=published[3].position, limit=100)
        assert result.publications == published[4:]
        assert [p.data for p in result.publications] == [b"%d" % n for n in range(5, 11)]
        assert result.complete
        assert result.position == published[-1].position

    async def test_history_since_the_top_is_complete_and_empty(self, broker: Broker) -> None:
        published = [await broker.publish("room:a", b"x", **KEEP) for _ in range(3)]
        result = await broker.history("room:a", since=published[-1].position, limit=100)
        assert (result.publications, result.complete) == ([], True)
        assert result.position == published[-1].position

    async def test_history_limit_returns_the_first_publications_after_since(
        self, broker: Broker
    ) -> None:
        published = [await broker.publish("room:a", b"x", **KEEP) for _ in range(10)]
        result = await broker.history("room:a", since=published[1].position, limit=3)
        assert offsets(result.publications) == [3, 4, 5]
        assert result.complete
        assert result.position.offset == 10

    async def test_history_limit_zero_returns_only_the_position(self, broker: Broker) -> None:
        published = [await broker.publish("room:a", b"x", **KEEP) for _ in range(4)]
        result = await broker.history("room:a", since=published[0].position, limit=0)
        assert (result.publications, result.complete) == ([], True)
        assert result.position == published[-1].position

    async def test_history_of_an_unknown_channel_is_empty_at_offset_zero(
        self, broker: Broker
    ) -> None:
        result = await broker.history("room:none", since=None, limit=10)
        assert (result.publications, result.complete, result.position.offset) == ([], True, 0)

    async def test_negative_sizes_and_limits_are_refused(self, broker: Broker) -> None:
        with pytest.raises(ValueError, match="history_size"):
            await broker.publish("room:a", b"x", history_size=-1, history_ttl=0)
        with pytest.raises(ValueError, match="history_ttl"):
            await broker.publish("room:a", b"x", history_size=1, history_ttl=-1)
        with pytest.raises(ValueError, match="limit"):
            await broker.history("room:a", since=None, limit=-1)

    # Ring buffer and ttl

    async def test_ring_buffer_keeps_the_last_n_publications(self, broker: Broker) -> None:
        for _ in range(5):
            await broker.publish("room:a", b"x", history_size=3, history_ttl=0)
        result = await broker.history("room:a", since=None, limit=100)
        assert offsets(result.publications) == [3, 4, 5]
        assert result.complete

    async def test_since_older_than_the_ring_buffer_is_incomplete(self, broker: Broker) -> None:
        published = [
            await broker.publish("room:a", b"x", history_size=3, history_ttl=0) for _ in range(5)
        ]
        gap = await broker.history("room:a", since=published[0].position, limit=100)
        assert gap.complete is False  # offset 2 is gone
        assert offsets(gap.publications) == [3, 4, 5]
        edge = await broker.history("room:a", since=published[1].position, limit=100)
        assert (offsets(edge.publications), edge.complete) == ([3, 4, 5], True)

    async def test_history_drops_publications_older_than_the_ttl(
        self, broker: Broker, clock: FakeClock
    ) -> None:
        await self.subscribe(broker, "room:a", Recorder())  # keeps the stream alive
        first = await broker.publish("room:a", b"1", history_size=10, history_ttl=10)
        await self.advance(clock, 5)
        await broker.publish("room:a", b"2", history_size=10, history_ttl=10)
        await self.advance(clock, 5)  # the first is exactly 10 s old: not older than the ttl
        kept = await broker.history("room:a", since=None, limit=10)
        assert offsets(kept.publications) == [1, 2]
        await self.advance(clock, 0.5)
        since_zero = StreamPosition(first.epoch, 0)
        result = await broker.history("room:a", since=since_zero, limit=10)
        assert offsets(result.publications) == [2]
        assert result.complete is False
        assert result.position == StreamPosition(first.epoch, 2)
        await self.advance(clock, 5)
        result = await broker.history("room:a", since=first.position, limit=10)
        assert (result.publications, result.complete) == ([], False)
        assert result.position == StreamPosition(first.epoch, 2)

    async def test_history_expired_entirely_restarts_the_stream_in_a_new_epoch(
        self, broker: Broker, clock: FakeClock
    ) -> None:
        await broker.publish("room:a", b"1", history_size=10, history_ttl=10)
        old = await broker.publish("room:a", b"2", history_size=10, history_ttl=10)
        await self.advance(clock, 11)
        new = await broker.publish("room:a", b"3", history_size=10, history_ttl=10)
        assert new.offset == 1
        assert new.epoch != old.epoch
        result = await broker.history("room:a", since=old.position, limit=10)
        assert (result.publications, result.complete) == ([], False)
        assert result.position == new.position

    async def test_history_since_another_epoch_is_incomplete(self, broker: Broker) -> None:
        published = await broker.publish("room:a", b"1", **KEEP)
        foreign = StreamPosition("another-epoch", 0)
        result = await broker.history("room:a", since=foreign, limit=10)
        assert (result.publications, result.complete) == ([], False)
        assert result.position == published.position

    async def test_history_since_beyond_the_top_is_incomplete(self, broker: Broker) -> None:
        published = await broker.publish("room:a", b"1", **KEEP)
        ahead = StreamPosition(published.epoch, 5)
        result = await broker.history("room:a", since=ahead, limit=10)
        assert (result.publications, result.complete) == ([], False)

    async def test_publish_without_history_keeps_nothing_but_still_delivers(
        self, broker: Broker
    ) -> None:
        recorder = Recorder()
        await self.subscribe(broker, "room:a", recorder)
        first = await broker.publish("room:a", b"1", history_size=0, history_ttl=0)
        second = await broker.publish("room:a", b"2", history_size=0, history_ttl=0)
        await self.settle(broker)
        assert recorder.received == [first, second]
        assert offsets([first, second]) == [1, 2]
        result = await broker.history("room:a", since=None, limit=10)
        assert result.publications == []
        assert result.position == second.position
        gap = await broker.history("room:a", since=first.position, limit=10)
        assert (gap.publications, gap.complete) == ([], False)

    # Fan-out

    async def test_subscribers_get_every_publication_exactly_once_in_order(
        self, broker: Broker
    ) -> None:
        first, second, elsewhere = Recorder(), Recorder(), Recorder()
        await self.subscribe(broker, "room:a", first)
        await self.subscribe(broker, "room:a", second)
        await self.subscribe(broker, "room:b", elsewhere)
        published = [await broker.publish("room:a", b"%d" % n, **KEEP) for n in range(20)]
        await self.settle(broker)
        assert first.received == published
        assert second.received == published
        assert elsewhere.received == []

    async def test_an_unsubscribed_callback_gets_nothing_more(self, broker: Broker) -> None:
        leaving, staying = Recorder(), Recorder()
        subscription = await self.subscribe(broker, "room:a", leaving)
        await self.subscribe(broker, "room:a", staying)
        await broker.publish("room:a", b"1", **KEEP)
        await self.settle(broker)
        broker.unsubscribe(subscription)
        broker.unsubscribe(subscription)  # idempotent
        await broker.publish("room:a", b"2", **KEEP)
        await self.settle(broker)
        assert leaving.offsets == [1]
        assert staying.offsets == [1, 2]

    async def test_a_raising_callback_does_not_stop_the_others(
        self, broker: Broker, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken(publication: Publication) -> None:
            raise RuntimeError("subscriber bug")

        before, after = Recorder(), Recorder()
        await self.subscribe(broker, "room:a", before)
        await self.subscribe(broker, "room:a", broken)
        await self.subscribe(broker, "room:a", after)
        with caplog.at_level(logging.ERROR, logger="wsguard.broker"):
            for _ in range(3):
                await broker.publish("room:a", b"x", **KEEP)
            await self.settle(broker)
        assert before.offsets == [1, 2, 3]
        assert after.offsets == [1, 2, 3]
        assert broker.delivery_errors == 3
        failures = [r for r in caplog.records if r.name == "wsguard.broker"]
        assert len(failures) == 3
        assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in failures)

    # Presence

    async def test_presence_lists_added_clients_until_removed(self, broker: Broker) -> None:
        await broker.presence_add("room:a", "c1", {"user": "alice"})
        await broker.presence_add("room:a", "c2", {"user": "bob"})
        await broker.presence_add("room:b", "c3", {"user": "carol"})
        assert await broker.presence("room:a") == {
            "c1": {"user": "alice"},
            "c2": {"user": "bob"},
        }
        await broker.presence_add("room:a", "c1", {"user": "alice", "away": True})
        await broker.presence_remove("room:a", "c2")
        await broker.presence_remove("room:a", "c2")  # idempotent
        await broker.presence_remove("room:none", "c2")
        assert await broker.presence("room:a") == {"c1": {"user": "alice", "away": True}}
        assert await broker.presence("room:b") == {"c3": {"user": "carol"}}
        assert await broker.presence("room:none") == {}

    async def test_presence_stores_and_returns_copies(self, broker: Broker) -> None:
        info = {"user": "alice"}
        await broker.presence_add("room:a", "c1", info)
        info["user"] = "mallory"
        listed = await broker.presence("room:a")
        listed["c1"]["user"] = "eve"
        assert await broker.presence("room:a") == {"c1": {"user": "alice"}}

    # Lifecycle

    async def test_a_closed_broker_refuses_work(self, broker: Broker) -> None:
        await broker.close()
        await broker.close()  # idempotent
        with pytest.raises(InvalidState):
            await broker.publish("room:a", b"x", **KEEP)
        with pytest.raises(InvalidState):
            broker.subscribe("room:a", Recorder())
        with pytest.raises(InvalidState):
            await broker.history("room:a", since=None, limit=1)
        with pytest.raises(InvalidState):
            await broker.presence("room:a")
