"""The memory ticket store: each id consumed once, forgotten after its expiry."""

from __future__ import annotations

import asyncio

from wsguard.brokers.memory import MemoryTicketStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_id_is_consumed_exactly_once():
    store = MemoryTicketStore(Clock())

    async def scenario() -> list[bool]:
        return [await store.consume("ticket-a", 1030.0) for _ in range(3)]

    assert asyncio.run(scenario()) == [True, False, False]


def test_fifty_concurrent_consumers_get_one_success():
    store = MemoryTicketStore(Clock())

    async def scenario() -> list[bool]:
        return await asyncio.gather(*(store.consume("ticket-a", 1030.0) for _ in range(50)))

    assert sorted(asyncio.run(scenario())) == [False] * 49 + [True]


def test_expired_ids_are_forgotten_and_memory_shrinks():
    clock = Clock()
    store = MemoryTicketStore(clock)

    async def scenario() -> None:
        await store.consume("old", 1010.0)
        await store.consume("new", 1100.0)
        clock.now = 1010.5
        await store.consume("third", 1200.0)

    asyncio.run(scenario())
    assert len(store) == 2  # "old" forgotten: past its expiry it is refused as expired anyway
