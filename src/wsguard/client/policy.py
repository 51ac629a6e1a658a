"""When the client reconnects, and how long it waits first. Pure functions: no I/O, no clock.

Randomness comes in as an argument (a ``random.Random``), so a test replays the exact delays
from a seeded generator.
"""

from __future__ import annotations

import random
from typing import Final, Literal

__all__ = ["Action", "backoff_delay", "close_action", "handshake_action"]

Action = Literal["reconnect", "stop"]

# 2.0 ** 1024 overflows a float; the cap is reached long before this exponent anyway.
_MAX_EXPONENT: Final = 64

# RFC 6455 §7.4.1 codes that report a bug in this client (1002 protocol error, 1007 invalid
# UTF-8, 1009 message too big) or a policy the server will apply again (1008): reconnecting
# unchanged would be refused the same way.
_CLIENT_FAULTS: Final = frozenset({1002, 1007, 1008, 1009})

# Handshake statuses worth another attempt: the server is busy, overloaded or restarting.
_RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before reconnect attempt number ``attempt`` (0 for the first).

    Exponential backoff with *full jitter*: a uniform draw from ``[0, min(cap, base *
    2**attempt))``. The randomness matters more than the growth: when a server restarts,
    every client it dropped reconnects at once, and identical delays would bring them back in
    lock-step, a thundering herd knocking the server over again.

    Args:
        attempt: consecutive failed attempts so far (reset after each ``welcome``).
        base: the ceiling of the first delay, in seconds.
        cap: the largest ceiling, in seconds.
        rng: the source of randomness (seed it in tests).

    Raises:
        ValueError: a negative ``attempt``, ``base`` or ``cap``.
    """
    if attempt < 0 or base < 0 or cap < 0:
        raise ValueError("attempt, base and cap must be >= 0")
    ceiling = min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT))
    return rng.random() * ceiling


def close_action(code: int) -> Action:
    """What to do after the server closed the connection with ``code``.

    4400-4499 are terminal (docs/reference/codes.md: the client must change something first:
    4401 unauthorized, 4403 revoked, 4408 too many violations); so are the codes that report a
    client bug. Everything else reconnects: 1000 and 1001 (shutdown, idle), 1006 (no close
    frame: the network dropped), 1011, 1013 (overloaded: the backoff spreads the retries),
    4500-4599 (4503 shutting down, 4509 slow consumer, 4510 insufficient state). A 1000 the
    client sent itself never gets here: ``Client.close`` stops without asking.
    """
    if 4400 <= code <= 4499 or code in _CLIENT_FAULTS:
        return "stop"
    return "reconnect"


def handshake_action(status: int) -> Action:
    """What to do after the server refused the opening handshake with HTTP ``status``.

    401 and 403 (a bad, replayed, revoked or foreign-origin credential; a refused Origin) stop:
    the same request would be refused again. So do the other 4xx (a wrong path or a malformed
    request). 408, 429 (rate or connection caps) and 5xx (the connection cap, a restart) are
    retried with backoff.
    """
    return "reconnect" if status in _RETRY_STATUSES else "stop"
