"""The broker interfaces. ``MemoryBroker`` (one process) and ``RedisBroker`` (many) implement
them and pass the same contract tests (``tests/brokers/contract.py``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "Broker",
    "ControlCallback",
    "HistoryResult",
    "LostCallback",
    "PresenceInfo",
    "Publication",
    "PublicationCallback",
    "StreamPosition",
    "Subscription",
    "TicketStore",
    "deliver",
]


class TicketStore(Protocol):
    """Consumes single-use credential ids exactly once, across every node sharing the store."""

    async def consume(self, ticket_id: str, expires_at: float) -> bool:
        """Mark ``ticket_id`` used. True the first time, False for every later call (a replay),
        until ``expires_at`` (wall clock), after which the ticket is refused as expired anyway
        and the id may be forgotten."""
        ...


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A place in one channel's stream.

    Attributes:
        epoch: names one life of the stream; it changes whenever the stream is recreated (the
            broker restarted, or the history expired entirely), so offsets restarted from 1.
        offset: the offset of the last publication (0: none yet in this epoch).
    """

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Publication:
    """One message published to a channel.

    Attributes:
        channel: the channel name.
        epoch: the stream epoch the offset belongs to.
        offset: 1, 2, 3, … gap-free within one epoch of one channel.
        data: the payload, already encoded (JSON) once before fan-out.
    """

    channel: str
    epoch: str
    offset: int
    data: bytes

    @property
    def position(self) -> StreamPosition:
        """The stream position right after this publication."""
        return StreamPosition(self.epoch, self.offset)


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """The answer to a history (recovery) query.

    Attributes:
        publications: offsets above ``since``, in order, at most ``limit`` of them.
        complete: False when the publications after ``since`` can no longer all be given: the
            history dropped some (size or ttl), or the stream restarted (another epoch). The
            client must then resynchronise: never a silent gap (DESIGN.md §2, principle 5).
        position: the current top of the stream.
    """

    publications: list[Publication]
    complete: bool
    position: StreamPosition


PublicationCallback = Callable[[Publication], None]
LostCallback = Callable[[str], None]
"""Called with a channel name when publications on it were lost and cannot be replayed."""
ControlCallback = Callable[[dict[str, Any]], None]
"""Called with each control message (revoke, disconnect) sent by another node."""
PresenceInfo = dict[str, Any]


class Subscription:
    """A handle on one local subscription; give it back to ``Broker.unsubscribe``."""

    __slots__ = ("active", "callback", "channel", "lost")

    def __init__(
        self, channel: str, callback: PublicationCallback, lost: LostCallback | None = None
    ) -> None:
        self.channel = channel
        self.callback = callback
        self.lost = lost
        self.active = True

    def __repr__(self) -> str:
        state = "active" if self.active else "inactive"
        return f"<Subscription {self.channel!r} {state}>"


logger = logging.getLogger("wsguard.broker")


def deliver(subscriptions: Iterable[Subscription], publication: Publication) -> int:
    """Call each active subscription's callback with ``publication``; returns how many raised.

    One broken subscriber must not starve the others: each failure is logged and counted
    (DESIGN.md §2, principle 5: nothing lost silently). Give a snapshot when callbacks may
    unsubscribe (themselves or others) meanwhile.
    """
    failures = 0
    for subscription in subscriptions:
        if not subscription.active:
            continue
        try:
            subscription.callback(publication)
        except Exception:
            failures += 1
            logger.exception(
                "subscriber callback failed on %s offset %d",
                publication.channel,
                publication.offset,
            )
    return failures


class Broker(Protocol):
    """Publications with gap-free offsets, bounded history, local fan-out and presence."""

    @property
    def delivery_errors(self) -> int:
        """How many subscriber callbacks raised (each logged to ``wsguard.broker``)."""
        ...

    async def publish(
        self, channel: str, data: bytes, *, history_size: int, history_ttl: float
    ) -> Publication:
        """Append ``data`` to the channel's stream and deliver it to the local subscribers.

        Args:
            channel: the channel name.
            data: the encoded payload.
            history_size: how many recent publications to keep (0: none).
            history_ttl: seconds a publication stays in the history (0: no ttl).

        Returns:
            The publication, with its epoch and its offset (the previous top + 1).
        """
        ...

    def subscribe(
        self, channel: str, callback: PublicationCallback, lost: LostCallback | None = None
    ) -> Subscription:
        """Call ``callback`` in publish order, once per publication made after
        ``subscribed`` returned, with no gap and no duplicate.

        When the broker cannot keep that promise (its link to the shared store broke and the
        history no longer covers what was missed, or the stream restarted), it calls ``lost``
        with the channel name instead of skipping silently, then goes on with the new stream.
        A callback that raises is logged and counted; delivery to the others goes on.
        """
        ...

    async def subscribed(self, subscription: Subscription) -> None:
        """Return once every later publication will reach ``subscription``.

        Raises:
            BrokerUnavailable: the broker could not confirm it in time.
        """
        ...

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription`` (at once, even mid fan-out). Idempotent."""
        ...

    async def history(
        self, channel: str, *, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        """The publications after ``since`` (all retained ones when None), at most ``limit``."""
        ...

    async def presence_add(self, channel: str, client_id: str, info: Mapping[str, Any]) -> None:
        """Record (or replace) ``client_id`` as present in ``channel``."""
        ...

    async def presence_remove(self, channel: str, client_id: str) -> None:
        """Forget ``client_id`` in ``channel``. Idempotent."""
        ...

    async def presence(self, channel: str) -> dict[str, PresenceInfo]:
        """The clients present in ``channel``: client id -> info (a copy)."""
        ...

    async def send_control(self, message: dict[str, Any]) -> None:
        """Send ``message`` (JSON-able, with an ``op``) to every other node's control callback.

        Raises:
            BrokerUnavailable: it could not be sent.
        """
        ...

    def on_control(self, callback: ControlCallback) -> None:
        """Call ``callback`` with every control message another node sends."""
        ...

    async def revocations(self, ttl: float, now: float) -> dict[str, float]:
        """Revocations sent through ``send_control`` in the last ``ttl`` seconds: user id ->
        time. A node replays them when it (re)connects, for what it missed meanwhile."""
        ...

    async def start(self) -> None:
        """Start background work (a shared broker's listener). Idempotent; does not wait for
        a shared store to answer."""
        ...

    async def close(self) -> None:
        """Drop every subscription and release resources. Idempotent."""
        ...
