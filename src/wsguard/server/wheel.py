"""Far deadlines of an event loop, held in one bucket per second instead of a timer each.

Most deadlines a server arms are cancelled before they are due: the handshake timeout of
every connection that opens, the keepalive of every connection that closes within a ping
interval, the expiry notice of every credential that outlives its socket. A loop timer per
deadline, armed and then cancelled, costs the loop more than a dict entry does, and while it
waits it is objects the garbage collector walks on every full collection (five on uvloop: the
handle, its context, uvloop's timer and two bound methods).

Here a deadline goes into the bucket of the second (loop time) it falls in. One loop timer per
second that holds any fires at the start of that second and hands each deadline still there
to its owner (``wheel_due``), which arms a ``call_at`` at the exact time: a deadline fires
when a ``call_later`` armed at the start would have, and one cancelled before its second costs
a dict insertion and a deletion. (The owner's timer is armed from the bucket's, so it runs in a
copy of the context of whoever opened that second's bucket; wsguard sets no context
variables, so nothing can tell.)
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from typing import Any, Protocol

log = logging.getLogger("wsguard.server")

__all__ = ["Bucket", "DeadlineWheel", "Due", "wheel_for"]

# owner -> (loop time of its deadline, what the owner asked to be handed back)
Bucket = dict[Any, tuple[float, Any]]


class Due(Protocol):
    """An owner of deadlines: told when one of its deadlines' second has come."""

    def wheel_due(self, when: float, payload: Any) -> None:
        """Arm a timer of its own at ``when`` (loop time), which may be a moment ago."""


class DeadlineWheel:
    """The far deadlines of one event loop, grouped by the second they fall in.

    Args:
        loop: the loop whose ``time`` the deadlines are in, and whose timers fire them.
    """

    __slots__ = ("__weakref__", "_buckets", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: _WHEELS is keyed by the loop, and a value that held its key would keep
        # every loop that ever had a wheel alive.
        self._loop = weakref.ref(loop)
        self._buckets: dict[int, Bucket] = {}

    def add(self, owner: Due, when: float, payload: Any = None) -> Bucket:
        """Hold ``owner``'s deadline at ``when`` (loop time); one per owner per bucket.

        Returns:
            The bucket it is in: the owner cancels by deleting itself from it (``pop``).
        """
        second = math.floor(when)
        bucket = self._buckets.get(second)
        if bucket is None:
            loop = self._loop()
            assert loop is not None  # noqa: S101 (deadlines are added from the running loop)
            bucket = self._buckets[second] = {}
            loop.call_at(second, self._fire, second)
        bucket[owner] = (when, payload)
        return bucket

    def _fire(self, second: int) -> None:
        bucket = self._buckets.pop(second, None)
        if not bucket:
            return
        for owner, (when, payload) in bucket.items():
            try:
                owner.wheel_due(when, payload)
            except Exception:
                # One owner's failure must not drop the deadlines of the rest of its second.
                log.exception("arming a deadline failed")


_WHEELS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DeadlineWheel] = (
    weakref.WeakKeyDictionary()
)


def wheel_for(loop: asyncio.AbstractEventLoop) -> DeadlineWheel:
    """The wheel of ``loop`` (made at the first call)."""
    wheel = _WHEELS.get(loop)
    if wheel is None:
        wheel = _WHEELS[loop] = DeadlineWheel(loop)
    return wheel
