"""The embedded broker state for one process."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

__all__ = ["MemoryTicketStore"]


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
