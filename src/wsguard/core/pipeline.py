"""The inbound message pipeline's stateless-per-principal stages (DESIGN.md §5).

Performs no I/O; reads no clock (every call takes ``now``). ``MessageGate.admit`` runs, in order,
on every data frame of one connection:

1. size: the engine has already closed with 1009 past ``limits.max_message_bytes``;
2. rate: token buckets per connection and per user, for messages and for bytes (429
   ``rate_limited``). Threat: one socket, or one user with many sockets, flooding the server or
   the other subscribers of a channel;
3. decode: ``codec.decode`` (400: malformed JSON, duplicate keys, depth, number range,
   prototype-polluting keys);
4. envelope: ``envelope.parse_envelope`` (400/404: ids, ops, fields, channel names).

Authorization and the data schemas come next, in the session, when the message's turn comes:
they must see the principal as it is then (a ``refresh`` queued before a ``publish`` changes
what the publish may do).

Every refusal, at any stage, is also counted by ``ViolationCounter``: ``limits.max_violations``
refusals within ``limits.violation_window`` seconds close the connection with 4408. Threat: a
client probing channels, ids or payload shapes at the rate limit's pace for as long as it likes.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from wsguard.codes import ReplyCode
from wsguard.core.codec import Violation, decode
from wsguard.core.envelope import Envelope, parse_envelope
from wsguard.core.limits import KeyedRateLimiter, TokenBucket
from wsguard.settings import LimitsConfig

__all__ = ["RATE_LIMITED", "MessageGate", "UserRates", "ViolationCounter"]

RATE_LIMITED: Final = Violation(
    ReplyCode.TOO_MANY_REQUESTS, "rate_limited", "too many messages; slow down"
)


def _byte_burst(rate: int, max_message_bytes: int) -> float:
    # Two seconds' worth, and never less than one message of the largest size allowed (else
    # that message could never pass).
    return float(max(2 * rate, max_message_bytes))


class UserRates:
    """The message and byte buckets of every user, shared by all their connections.

    Keys are user ids, or ``ip:<client key>`` for anonymous connections, so one address
    opening many anonymous sockets shares one budget too. Memory is bounded by
    ``KeyedRateLimiter``'s ``max_keys``.
    """

    __slots__ = ("_bytes", "_messages")

    def __init__(self, limits: LimitsConfig, max_keys: int = 100_000) -> None:
        self._messages = KeyedRateLimiter(
            limits.user_messages_per_second, limits.user_burst, max_keys
        )
        self._bytes = KeyedRateLimiter(
            limits.user_bytes_per_second,
            _byte_burst(limits.user_bytes_per_second, limits.max_message_bytes),
            max_keys,
        )

    def allow(self, key: str, size: int, now: float) -> bool:
        """Charge one message of ``size`` bytes to ``key``; whether both budgets allowed it."""
        return self._messages.allow(key, now) and self._bytes.allow(key, now, size)


class ViolationCounter:
    """Counts refused messages in a sliding window.

    Args:
        limit: ``limits.max_violations``.
        window: ``limits.violation_window`` seconds.
    """

    __slots__ = ("_times", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque(maxlen=limit)

    def add(self, now: float) -> bool:
        """Record one refusal at ``now``; True when the connection must close (4408)."""
        times = self._times
        times.append(now)
        # The deque keeps the last ``limit`` refusals: too many when the oldest is recent.
        return len(times) == self.limit and now - times[0] < self.window


class MessageGate:
    """Rate, decode and envelope for the data frames of one connection.

    Args:
        limits: ``[limits]``.
        users: the server's ``UserRates``.
    """

    __slots__ = ("_bytes", "_max_depth", "_messages", "_users")

    def __init__(self, limits: LimitsConfig, users: UserRates) -> None:
        self._messages = TokenBucket(limits.messages_per_second, limits.burst)
        self._bytes = TokenBucket(
            limits.bytes_per_second, _byte_burst(limits.bytes_per_second, limits.max_message_bytes)
        )
        self._users = users
        self._max_depth = limits.json_max_depth

    def charge(self, size: int, user_key: str, now: float) -> Violation | None:
        """The rate stage alone: charge one message of ``size`` bytes (binary frames too)."""
        if (
            self._messages.take(now)
            and self._bytes.take(now, size)
            and self._users.allow(user_key, size, now)
        ):
            return None
        return RATE_LIMITED

    def admit(self, text: str, size: int, user_key: str, now: float) -> Envelope | Violation:
        """Run rate, decode and envelope on one text message.

        Args:
            text: the message.
            size: its size on the wire in bytes (UTF-8).
            user_key: the user id, or ``ip:<client key>`` when anonymous.
            now: monotonic seconds.

        Returns:
            The checked envelope, or the ``Violation`` to reply with. Never raises.
        """
        refused = self.charge(size, user_key, now)
        if refused is not None:
            return refused
        message = decode(text, max_depth=self._max_depth)
        if isinstance(message, Violation):
            return message
        return parse_envelope(message)
