"""A client subscription fed frames directly: positions, duplicates, gaps and endings."""

from __future__ import annotations

import asyncio

import pytest

from wsguard.client import ClientError, Message, Position, Subscription
from wsguard.exceptions import InvalidState


async def _never(sub: Subscription) -> None:
    raise AssertionError("not unsubscribed in these tests")


def drained(sub: Subscription) -> list[Message]:
    messages = []
    while not sub._queue.empty():
        item = sub._queue.get_nowait()
        assert isinstance(item, Message)
        messages.append(item)
    return messages


async def test_the_position_starts_at_the_subscribe_reply_and_follows_each_message():
    sub = Subscription("room:1", _never)
    assert sub.position is None
    sub._subscribed({"epoch": "e1", "offset": 4})
    assert sub.position == Position("e1", 4)
    sub._message("e1", 5, "five")
    assert sub.position == Position("e1", 5)
    assert drained(sub) == [Message("room:1", "e1", 5, "five")]


async def test_offsets_already_delivered_are_never_delivered_again():
    sub = Subscription("room:1", _never)
    sub._subscribed({"epoch": "e1", "offset": 0})
    for offset in (1, 2, 3, 2, 3, 1, 4):  # a replay overlapping what was delivered
        sub._message("e1", offset, offset)
    assert [m.offset for m in drained(sub)] == [1, 2, 3, 4]


async def test_a_new_epoch_restarts_the_offsets():
    sub = Subscription("room:1", _never)
    sub._subscribed({"epoch": "e1", "offset": 7})
    sub._message("e2", 1, "new stream")
    assert [m.position for m in drained(sub)] == [Position("e2", 1)]


async def test_an_incomplete_recovery_counts_a_gap_and_calls_on_gap():
    seen: list[tuple[int, Position | None]] = []
    sub = Subscription("room:1", _never, on_gap=lambda s: seen.append((s.gaps, s.position)))
    sub._subscribed({"epoch": "e1", "offset": 3})
    sub._recovered(True, "e1", 3)
    assert (sub.gaps, seen) == (0, [])
    sub._recovered(False, "e2", 9)
    assert (sub.gaps, seen) == (1, [(1, Position("e2", 9))])


async def test_a_clean_end_stops_iteration_for_good():
    sub = Subscription("room:1", _never)
    sub._subscribed({"epoch": "e1", "offset": 0})
    sub._message("e1", 1, "a")
    sub._finish(None)
    sub._message("e1", 2, "after the end")
    assert [m.data async for m in sub] == ["a"]
    with pytest.raises(StopAsyncIteration):
        await anext(sub)
    assert (sub.active, sub.error) == (False, None)


async def test_an_end_with_an_error_raises_it_to_every_reader():
    sub = Subscription("room:1", _never)
    error = ClientError(403, "forbidden", "the server dropped the subscription")
    sub._finish(error)
    for _ in range(2):
        with pytest.raises(ClientError) as info:
            await anext(sub)
        assert info.value is error
    assert sub.error is error


async def test_a_callback_subscription_cannot_be_iterated_and_gets_messages_in_order():
    got: list[int] = []

    async def on_message(message: Message) -> None:
        await asyncio.sleep(0)
        got.append(message.offset)

    sub = Subscription("room:1", _never, on_message=on_message)
    sub._subscribed({"epoch": "e1", "offset": 0})
    for offset in range(1, 6):
        sub._message("e1", offset, None)
    with pytest.raises(InvalidState):
        await anext(sub)
    sub._finish(None)
    await sub._drain(1.0)
    assert got == [1, 2, 3, 4, 5]
