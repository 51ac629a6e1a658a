"""server/hub.py: one frame per publication, shared by every subscriber; held recoveries."""

from __future__ import annotations

import asyncio

import orjson

from wsguard.brokers.base import Publication
from wsguard.brokers.memory import MemoryBroker
from wsguard.metrics import Metrics
from wsguard.server.hub import Hub, encode_push, text_frame


class Recorder:
    """A hub member that keeps what it was given, and the flushes."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.outbox: list[bytes] = []
        self.flushes = 0
        self.closed: list[tuple[int, str]] = []

    def push_frame(self, frame: bytes, payload: bytes) -> bool:
        self.outbox.append(frame)
        return len(self.outbox) == 1

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))

    def flush_pushes(self) -> None:
        self.flushes += 1
        self.frames.extend(self.outbox)
        self.outbox.clear()

    def offsets(self) -> list[int]:
        return [orjson.loads(_payload(f))["offset"] for f in self.frames]


def _payload(frame: bytes) -> bytes:
    length = frame[1]
    start = 2 if length < 126 else 4 if length == 126 else 10
    return frame[start:]


async def publish(broker: MemoryBroker, channel: str, data: object) -> None:
    await broker.publish(channel, orjson.dumps(data), history_size=10, history_ttl=0)


async def test_each_publication_is_framed_once_and_flushed_once_per_loop_pass() -> None:
    broker = MemoryBroker()
    hub = Hub(broker, Metrics())
    members = [Recorder() for _ in range(3)]
    for member in members:
        hub.join("chat:a", member)
    for n in range(5):
        await publish(broker, "chat:a", n)
    await asyncio.sleep(0)  # the hub's flush runs once, at the end of this pass
    for member in members:
        assert member.offsets() == [1, 2, 3, 4, 5]
        assert member.flushes == 1
    # The very same bytes object went to every subscriber: serialized and framed once.
    for i in range(5):
        assert members[0].frames[i] is members[1].frames[i] is members[2].frames[i]


async def test_held_member_gets_buffered_publications_after_the_replay_without_duplicates() -> None:
    broker = MemoryBroker()
    hub = Hub(broker, Metrics())
    live, recovering = Recorder(), Recorder()
    hub.join("chat:a", live)
    await publish(broker, "chat:a", "one")
    hub.join("chat:a", recovering, hold=True)
    await publish(broker, "chat:a", "two")
    await publish(broker, "chat:a", "three")
    history = await broker.history("chat:a", since=None, limit=10)
    # Replay gives 1 and 2; 2 and 3 were also held: release skips 2.
    for publication in history.publications[:2]:
        hub.send(recovering, publication)
    hub.release("chat:a", recovering, history.position.epoch, after=2)
    await asyncio.sleep(0)
    assert recovering.offsets() == [1, 2, 3]
    assert live.offsets() == [1, 2, 3]


async def test_leave_unsubscribes_from_the_broker_when_the_last_member_goes() -> None:
    broker = MemoryBroker()
    hub = Hub(broker, Metrics())
    a, b = Recorder(), Recorder()
    hub.join("chat:a", a)
    hub.join("chat:a", b)
    assert hub.counts() == {"chat:a": 2}
    hub.leave("chat:a", a)
    hub.leave("chat:a", a)  # idempotent
    assert hub.counts() == {"chat:a": 1}
    hub.leave("chat:a", b)
    assert hub.counts() == {}
    assert len(broker) == 0  # no subscription, no history kept: the channel is gone


def test_text_frame_lengths_use_the_three_encodings_of_rfc6455() -> None:
    assert text_frame(b"x" * 125)[:2] == bytes((0x81, 125))
    assert text_frame(b"x" * 126)[:4] == bytes((0x81, 126, 0, 126))
    assert text_frame(b"x" * 65536)[:10] == bytes((0x81, 127)) + (65536).to_bytes(8, "big")


def test_push_embeds_the_encoded_data_unchanged() -> None:
    from wsguard.brokers.base import Publication

    push = encode_push(Publication("chat:a", "E1", 7, b'{"t":"&lt;b&gt;"}'))
    assert orjson.loads(push) == {
        "push": "message",
        "channel": "chat:a",
        "epoch": "E1",
        "offset": 7,
        "data": {"t": "&lt;b&gt;"},
    }


class LaggingBroker(MemoryBroker):
    """A memory broker whose delivery lags its store, as Redis pub/sub lags the Lua script that
    stored the publication: publications reach subscribers only at ``catch_up``."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight: list[tuple[object, Publication]] = []

    def subscribe(self, channel, callback, lost=None):  # type: ignore[no-untyped-def]
        return super().subscribe(channel, lambda p: self.in_flight.append((callback, p)), lost)

    def catch_up(self) -> None:
        for callback, publication in self.in_flight:
            callback(publication)  # type: ignore[operator]
        self.in_flight.clear()


async def test_a_member_released_ahead_of_a_lagging_delivery_gets_nothing_twice() -> None:
    broker = LaggingBroker()
    hub = Hub(broker, Metrics())
    early, joining = Recorder(), Recorder()
    hub.join("chat:a", early)
    for n in range(3):
        await publish(broker, "chat:a", n)
    # The joining member reads its position from the store (offset 3) while the three
    # publications are still on their way to this hub.
    hub.join("chat:a", joining, hold=True)
    position = (await broker.history("chat:a", since=None, limit=0)).position
    hub.release("chat:a", joining, position.epoch, after=position.offset)
    broker.catch_up()
    await publish(broker, "chat:a", 3)
    broker.catch_up()
    await asyncio.sleep(0)
    assert early.offsets() == [1, 2, 3, 4]
    assert joining.offsets() == [4]


async def test_lost_publications_close_every_member_of_the_channel_with_4510() -> None:
    broker = MemoryBroker()
    hub = Hub(broker, Metrics())
    live, held, elsewhere = Recorder(), Recorder(), Recorder()
    hub.join("chat:a", live)
    hub.join("chat:a", held, hold=True)
    hub.join("chat:b", elsewhere)
    subscription = next(iter(broker._channels["chat:a"].subscribers))
    assert subscription.lost is not None
    subscription.lost("chat:a")
    assert live.closed == [(4510, "insufficient state")]
    assert held.closed == [(4510, "insufficient state")]
    assert elsewhere.closed == []
