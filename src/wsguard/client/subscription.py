"""One channel subscription of the Python client: its position, its messages, its gaps.

The client's reader calls the underscore methods in frame order, synchronously; they never
await, so the position they keep is always the one of the last frame read.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from wsguard.client.errors import ClientError
from wsguard.client.message import Message, Position
from wsguard.exceptions import InvalidState

__all__ = ["GapCallback", "MessageCallback", "Subscription", "call_back"]

log = logging.getLogger("wsguard.client")

MessageCallback = Callable[[Message], Awaitable[Any] | None]
GapCallback = Callable[["Subscription"], Any]


class _End:
    """The last item of a subscription's queue: ``error`` is None for a clean end."""

    __slots__ = ("error",)

    def __init__(self, error: ClientError | None) -> None:
        self.error = error


class Subscription:
    """A subscription to one channel; returned by ``Client.subscribe``.

    Iterate it (``async for message in sub:``) or give ``on_message`` to ``subscribe``, not
    both. The iteration ends after ``unsubscribe()`` or ``Client.close()``, and raises
    ``ClientError`` when the subscription ended otherwise: the server dropped it (a
    ``refresh`` removed the grant: 403 ``forbidden``), a resubscribe after a reconnect was
    refused, or the connection closed for good (4403, ...).

    Messages arrive in offset order and never twice: after a reconnect the client
    resubscribes from the position it holds, the server replays what was missed, and offsets
    already delivered are dropped. A replay that cannot be complete (history no longer holds
    the missed publications, or the stream restarted with a new epoch) counts in ``gaps`` and
    calls ``on_gap``: resynchronise what you derive from the channel, then carry on.

    Attributes:
        channel: the channel name.
        gaps: how many recoveries reported ``complete: false``.
    """

    def __init__(
        self,
        channel: str,
        unsubscribe: Callable[[Subscription], Awaitable[None]],
        on_message: MessageCallback | None = None,
        on_gap: GapCallback | None = None,
    ) -> None:
        self.channel = channel
        self.gaps = 0
        self._epoch: str | None = None
        self._offset: int | None = None
        self._unsubscribe = unsubscribe
        self._on_message = on_message
        self._on_gap = on_gap
        self._queue: asyncio.Queue[Message | _End] = asyncio.Queue()
        self._end: _End | None = None
        self._pump: asyncio.Task[None] | None = None
        if on_message is not None:
            self._pump = asyncio.get_running_loop().create_task(self._run_callback(on_message))

    def __repr__(self) -> str:
        return f"<Subscription {self.channel!r} at {self.position} active={self.active}>"

    @property
    def position(self) -> Position | None:
        """The position of the last message delivered (or of the subscribe reply, or of the
        last ``recovered`` push); None until the server answered the subscribe."""
        if self._epoch is None or self._offset is None:
            return None
        return Position(self._epoch, self._offset)

    @property
    def active(self) -> bool:
        """False once the subscription ended (unsubscribed, dropped, or the client closed)."""
        return self._end is None

    @property
    def error(self) -> ClientError | None:
        """Why the subscription ended, when it did not end cleanly."""
        return self._end.error if self._end is not None else None

    async def unsubscribe(self) -> None:
        """Stop the subscription; no message is delivered after this returns.

        Raises:
            ClientError: the server refused the unsubscribe (a ``not_subscribed`` answer, a
                drop or a timeout are not errors: the subscription ends anyway).
        """
        await self._unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        if self._on_message is not None:
            raise InvalidState("this subscription delivers to its on_message callback")
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # every later call ends the same way
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    # ------------------------------------------------------------------ called by the client

    def _subscribed(self, result: Any) -> None:
        """The reply to a subscribe without ``since``: live messages start after it."""
        self._epoch, self._offset = str(result["epoch"]), int(result["offset"])

    def _message(self, epoch: str, offset: int, data: Any) -> None:
        if self._end is not None:
            return
        if epoch == self._epoch and self._offset is not None and offset <= self._offset:
            return  # already delivered (a replay overlapping what we had)
        self._epoch, self._offset = epoch, offset
        self._queue.put_nowait(Message(self.channel, epoch, offset, data))

    def _recovered(self, complete: bool, epoch: str, offset: int) -> None:
        if self._end is not None:
            return
        self._epoch, self._offset = epoch, offset
        if not complete:
            self.gaps += 1
            if self._on_gap is not None:
                call_back(self._on_gap, self)

    def _finish(self, error: ClientError | None) -> None:
        if self._end is None:
            self._end = _End(error)
            self._queue.put_nowait(self._end)

    async def _drain(self, within: float) -> None:
        """Let the callback task deliver what was queued, for at most ``within`` seconds."""
        pump = self._pump
        if pump is None or pump.done():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pump), within)
        if not pump.done():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _run_callback(self, callback: MessageCallback) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                return
            try:
                result = callback(item)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("on_message callback failed on %s", self.channel)


def call_back(callback: Callable[..., Any], *args: Any) -> None:
    """Call a user callback from the reader: its failure is logged, never raised into it.

    A coroutine it returns runs as a task of its own, so a callback may await the client.
    """
    try:
        result = callback(*args)
    except Exception:
        log.exception("client callback %r failed", callback)
        return
    if inspect.iscoroutine(result):
        task = asyncio.get_running_loop().create_task(result)
        _background.add(task)
        task.add_done_callback(_forget)


_background: set[asyncio.Task[Any]] = set()


def _forget(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("client callback failed", exc_info=task.exception())
