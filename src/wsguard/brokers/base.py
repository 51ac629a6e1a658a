"""The broker interfaces. ``MemoryBroker`` (one process) and ``RedisBroker`` (many) implement
them and pass the same contract tests."""

from __future__ import annotations

from typing import Protocol

__all__ = ["TicketStore"]


class TicketStore(Protocol):
    """Consumes single-use credential ids exactly once, across every node sharing the store."""

    async def consume(self, ticket_id: str, expires_at: float) -> bool:
        """Mark ``ticket_id`` used. True the first time, False for every later call (a replay),
        until ``expires_at`` (wall clock), after which the ticket is refused as expired anyway
        and the id may be forgotten."""
        ...
