"""Local fan-out: one broker subscription per channel, one frame per publication.

Server frames are not masked (RFC 6455 §5.1), so the bytes of a ``message`` push are the same
for every subscriber: the hub builds the frame once and hands the same ``bytes`` to each local
subscriber (a connection that negotiated compression gets the payload instead and frames it
itself). Each connection appends it to its outbox; the hub flushes every outbox once per event
loop pass, so N publications in one pass cost each subscriber one ``write``. A subscriber whose
queue passes ``limits.max_send_queue_bytes`` is closed with 4509 by its own connection and
costs the others nothing: nothing here waits for a socket.

A subscriber joins held: publications for it are buffered while its position (and, with
``since``, its history) is read, then ``release`` sends those after that position, so the
client sees every offset once and in order, whatever the broker's delivery latency.

When the broker reports publications lost for good (the Redis link broke and the history no
longer covers the gap), every subscriber of that channel is closed with 4510 (reconnect
allowed): the client resubscribes with ``since`` and is told ``complete: false`` truthfully,
instead of silently missing messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import orjson

from wsguard.brokers.base import Broker, Publication, Subscription
from wsguard.codes import CloseCode
from wsguard.metrics import Metrics
from wsguard.server.frames import TEXT, server_frame

__all__ = ["Hub", "Member", "encode_push", "text_frame"]


class Member(Protocol):
    """What the hub needs of a subscriber (``WsConnection`` implements it)."""

    def push_frame(self, frame: bytes, payload: bytes) -> bool:
        """Queue one pre-built frame; True when the outbox was empty (flush it later)."""

    def flush_pushes(self) -> None:
        """Write the queued frames."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection."""


def encode_push(publication: Publication) -> bytes:
    """The JSON of the ``message`` push for ``publication`` (its data is already JSON)."""
    head = orjson.dumps(
        {
            "push": "message",
            "channel": publication.channel,
            "epoch": publication.epoch,
            "offset": publication.offset,
        }
    )
    return b"".join((head[:-1], b',"data":', publication.data, b"}"))


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame (FIN set, opcode 1) carrying ``payload``."""
    return server_frame(TEXT, payload)


class _Channel:
    __slots__ = ("floors", "last", "members", "subscription")

    def __init__(self) -> None:
        # member -> None when live, or the publications held while it recovers.
        self.members: dict[Member, list[Publication] | None] = {}
        self.subscription: Subscription | None = None
        # The last publication delivered here: (epoch, offset).
        self.last: tuple[str, int] = ("", 0)
        # Members released at a position this hub has not delivered yet (a shared broker's
        # delivery lags the store it was read from): what they already have is skipped.
        self.floors: dict[Member, tuple[str, int]] = {}


class Hub:
    """The channels with local subscribers, and the delivery of their publications.

    Args:
        broker: where publications come from.
        metrics: counts messages sent and times each fan-out.
        clock: a perf counter for the fan-out histogram.
    """

    def __init__(
        self,
        broker: Broker,
        metrics: Metrics,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._broker = broker
        self._metrics = metrics
        self._clock = clock
        self._channels: dict[str, _Channel] = {}
        self._dirty: list[Member] = []
        self._flush_scheduled = False

    def counts(self) -> dict[str, int]:
        """Local subscribers per channel."""
        return {name: len(channel.members) for name, channel in self._channels.items()}

    def join(self, channel: str, member: Member, *, hold: bool = False) -> None:
        """Deliver ``channel``'s publications to ``member`` from now on (``hold``: buffer them
        until ``release``)."""
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
            state.subscription = self._broker.subscribe(channel, self._deliver, self._lost)
        state.members[member] = [] if hold else None

    async def ready(self, channel: str) -> None:
        """Return once the broker delivers ``channel``'s later publications here.

        Raises:
            BrokerUnavailable: the broker could not confirm it.
        """
        state = self._channels.get(channel)
        if state is not None and state.subscription is not None:
            await self._broker.subscribed(state.subscription)

    def release(self, channel: str, member: Member, epoch: str, after: int) -> None:
        """End the hold of ``member``: send what was buffered, skipping what the replay
        already gave (offsets up to ``after`` in ``epoch``)."""
        state = self._channels.get(channel)
        if state is None or member not in state.members:
            return
        held = state.members[member]
        state.members[member] = None
        for publication in held or ():
            if publication.epoch != epoch or publication.offset > after:
                self.send(member, publication)
        last_epoch, last_offset = state.last
        if epoch and (last_epoch != epoch or last_offset < after):
            state.floors[member] = (epoch, after)

    def leave(self, channel: str, member: Member) -> None:
        """Stop delivering ``channel`` to ``member``. Idempotent."""
        state = self._channels.get(channel)
        if state is None or member not in state.members:
            return
        del state.members[member]
        state.floors.pop(member, None)
        if not state.members:
            del self._channels[channel]
            if state.subscription is not None:
                self._broker.unsubscribe(state.subscription)

    def _lost(self, channel: str) -> None:
        state = self._channels.get(channel)
        if state is None:
            return
        for member in tuple(state.members):
            member.close(CloseCode.INSUFFICIENT_STATE, "insufficient state")

    def _deliver(self, publication: Publication) -> None:
        state = self._channels.get(publication.channel)
        if state is None:
            return
        started = self._clock()
        state.last = (publication.epoch, publication.offset)
        payload = encode_push(publication)
        frame = text_frame(payload)
        sent = 0
        floors = state.floors
        dirty = self._dirty
        for member, held in tuple(state.members.items()):
            if held is not None:
                held.append(publication)
                continue
            if floors and member in floors:
                epoch, offset = floors[member]
                if publication.epoch == epoch and publication.offset <= offset:
                    continue  # the member has it already (replayed, or read as its start)
                del floors[member]
            if member.push_frame(frame, payload):
                dirty.append(member)  # _mark_dirty's append, one call less per subscriber
            sent += 1
        if dirty:
            self._schedule_flush()
        self._metrics.messages_sent(sent)
        self._metrics.observe_fanout(self._clock() - started)

    def send(self, member: Member, publication: Publication) -> None:
        """Push one publication to one member (recovery replays), in the same queue."""
        payload = encode_push(publication)
        if member.push_frame(text_frame(payload), payload):
            self._mark_dirty(member)
        self._metrics.messages_sent(1)

    def _mark_dirty(self, member: Member) -> None:
        self._dirty.append(member)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Flush the dirty members once, at the end of this event loop pass."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for member in dirty:
            member.flush_pushes()
