"""The embedded broker state for one process.

Every method here runs without awaiting anything, so each call is one atomic step of the event
loop: offsets need no lock to stay gap-free.
"""

from __future__ import annotations

import heapq
import itertools
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from wsguard.brokers.base import (
    ControlCallback,
    HistoryResult,
    LostCallback,
    PresenceInfo,
    Publication,
    PublicationCallback,
    StreamPosition,
    Subscription,
    deliver,
)
from wsguard.exceptions import InvalidState

__all__ = ["MemoryBroker", "MemoryTicketStore"]


class MemoryTicketStore:
    """Single-use ids in a dict, forgotten once they expire.

    Consumption is atomic because it never awaits: check and insert happen in one step of the
    event loop. Memory is bounded by the tickets minted within one ticket lifetime.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._used: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._used)

    async def consume(self, ticket_id: str, expires_at: float) -> bool:
        self._forget_expired()
        if ticket_id in self._used:
            return False
        self._used[ticket_id] = expires_at
        heapq.heappush(self._expiry, (expires_at, ticket_id))
        return True

    def _forget_expired(self) -> None:
        now = self._clock()
        expiry = self._expiry
        while expiry and expiry[0][0] < now:
            _, ticket_id = heapq.heappop(expiry)
            self._used.pop(ticket_id, None)


def _new_epoch() -> str:
    return secrets.token_urlsafe(9)


class _Channel:
    """One channel's stream, subscribers and presence."""

    __slots__ = ("epoch", "history", "presence", "schedule", "subscribers", "top")

    def __init__(self) -> None:
        self.epoch = _new_epoch()
        self.top = 0
        # (publication, expires_at); offsets contiguous, ending at ``top`` when not empty.
        self.history: deque[tuple[Publication, float]] = deque()
        self.subscribers: dict[Subscription, None] = {}  # insertion-ordered set
        self.presence: dict[str, PresenceInfo] = {}
        self.schedule = 0  # token of this channel's live entry in MemoryBroker._expiry (0: none)

    def position(self) -> StreamPosition:
        return StreamPosition(self.epoch, self.top)

    def idle(self) -> bool:
        return not (self.history or self.subscribers or self.presence)


class MemoryBroker:
    """The embedded broker of one process: a ring buffer per channel, local fan-out, presence.

    Bounds: a channel holds at most ``history_size`` publications (as given to its latest
    ``publish``), each dropped ``history_ttl`` seconds after it was published; a channel with no
    subscriber, no presence and no retained history is removed, together with its epoch, so
    the next publication starts a new epoch at offset 1. Reads (``history``, ``presence``) of an
    unknown channel allocate nothing. Memory is thus bounded by the retained publications plus
    the live subscriptions and presence entries. Expired history is swept lazily, on every call,
    through a heap holding at most one entry per channel.

    Args:
        clock: monotonic seconds, for ``history_ttl``.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._channels: dict[str, _Channel] = {}
        # (when, token, channel): at most one live entry per channel; the token tells a live
        # entry from one left behind by a channel that was removed (or recreated) meanwhile.
        self._expiry: list[tuple[float, int, str]] = []
        self._tokens = itertools.count(1)
        self._delivery_errors = 0
        self._closed = False

    def __len__(self) -> int:
        """The number of channels held in memory."""
        return len(self._channels)

    @property
    def delivery_errors(self) -> int:
        return self._delivery_errors

    async def publish(
        self, channel: str, data: bytes, *, history_size: int, history_ttl: float
    ) -> Publication:
        self._check_open()
        if history_size < 0:
            raise ValueError("history_size must be >= 0")
        if not history_ttl >= 0:  # also refuses NaN
            raise ValueError("history_ttl must be >= 0")
        now = self._clock()
        self._sweep(now)
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
        state.top += 1
        publication = Publication(channel, state.epoch, state.top, data)
        if history_size:
            expires_at = now + history_ttl if history_ttl else math.inf
            history = state.history
            history.append((publication, expires_at))
            while len(history) > history_size:
                history.popleft()
            self._schedule(channel, state)
        else:
            state.history.clear()
        self._deliver(state, publication)
        self._drop_if_idle(channel)
        return publication

    def subscribe(
        self, channel: str, callback: PublicationCallback, lost: LostCallback | None = None
    ) -> Subscription:
        # Nothing is ever lost in one process: ``lost`` is never called.
        self._check_open()
        self._sweep(self._clock())
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
        subscription = Subscription(channel, callback, lost)
        state.subscribers[subscription] = None
        return subscription

    async def subscribed(self, subscription: Subscription) -> None:
        """Delivery is synchronous: a subscription is live as soon as it exists."""

    async def send_control(self, message: dict[str, Any]) -> None:
        """One process is the only node: there is nobody else to tell."""

    def on_control(self, callback: ControlCallback) -> None:
        """No other node ever sends anything."""

    async def revocations(self, ttl: float, now: float) -> dict[str, float]:
        """The only node already applied its own revocations."""
        return {}

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.active = False
        state = self._channels.get(subscription.channel)
        if state is not None and subscription in state.subscribers:
            del state.subscribers[subscription]
            self._drop_if_idle(subscription.channel)

    async def history(
        self, channel: str, *, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        self._check_open()
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self._sweep(self._clock())
        state = self._channels.get(channel)
        if state is None:
            # No stream: nothing kept, no epoch. A client holding any position lost its stream.
            position = StreamPosition("", 0)
            return HistoryResult([], since is None or since == position, position)
        position = state.position()
        if since is None:
            return HistoryResult(self._take(state, 0, limit), True, position)
        if since.epoch != state.epoch or since.offset > state.top or since.offset < 0:
            return HistoryResult([], False, position)
        oldest = state.history[0][0].offset if state.history else state.top + 1
        complete = since.offset + 1 >= oldest
        return HistoryResult(self._take(state, since.offset, limit), complete, position)

    async def presence_add(self, channel: str, client_id: str, info: Mapping[str, Any]) -> None:
        self._check_open()
        self._sweep(self._clock())
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
        state.presence[client_id] = dict(info)

    async def presence_remove(self, channel: str, client_id: str) -> None:
        self._check_open()
        self._sweep(self._clock())
        state = self._channels.get(channel)
        if state is not None and state.presence.pop(client_id, None) is not None:
            self._drop_if_idle(channel)

    async def presence(self, channel: str) -> dict[str, PresenceInfo]:
        self._check_open()
        state = self._channels.get(channel)
        if state is None:
            return {}
        return {client_id: dict(info) for client_id, info in state.presence.items()}

    async def start(self) -> None:
        """Nothing runs in the background."""

    async def close(self) -> None:
        self._closed = True
        for state in self._channels.values():
            for subscription in state.subscribers:
                subscription.active = False
        self._channels.clear()
        self._expiry.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidState("the broker is closed")

    def _deliver(self, state: _Channel, publication: Publication) -> None:
        # A snapshot: callbacks may unsubscribe (themselves or others) while we iterate.
        self._delivery_errors += deliver(tuple(state.subscribers), publication)

    @staticmethod
    def _take(state: _Channel, after: int, limit: int) -> list[Publication]:
        history = state.history
        if not history or not limit:
            return []
        start = max(0, after + 1 - history[0][0].offset)
        stop = min(len(history), start + limit)
        return [history[i][0] for i in range(start, stop)]

    def _schedule(self, channel: str, state: _Channel) -> None:
        if state.schedule or not state.history:
            return
        expires_at = state.history[0][1]
        if expires_at != math.inf:
            state.schedule = next(self._tokens)
            heapq.heappush(self._expiry, (expires_at, state.schedule, channel))

    def _sweep(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] < now:
            _, token, channel = heapq.heappop(expiry)
            state = self._channels.get(channel)
            if state is None or state.schedule != token:
                continue  # left behind by a removed channel
            state.schedule = 0
            history = state.history
            while history and history[0][1] < now:
                history.popleft()
            self._schedule(channel, state)
            self._drop_if_idle(channel)

    def _drop_if_idle(self, channel: str) -> None:
        state = self._channels.get(channel)
        if state is not None and state.idle():
            del self._channels[channel]
