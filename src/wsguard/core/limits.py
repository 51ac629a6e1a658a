"""Rate limits and connection caps.

Performs no I/O; reads no clock: every method that needs the time takes ``now`` (seconds on any
monotonic clock the caller chooses). Each limit here names the threat it guards against.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from typing import Final

from wsguard.core.decisions import Reject

__all__ = ["ConnectionCaps", "KeyedRateLimiter", "TokenBucket", "client_key"]

_IPV6_PREFIX: Final = 64


def client_key(ip: str) -> str:
    """The key per-IP limits count under: the address, or its /64 for IPv6.

    Threat: one IPv6 host is routinely given a whole /64 (2**64 addresses), so counting single
    IPv6 addresses would let one attacker open unlimited "per-IP" connections and never run out
    of fresh handshake buckets. A /64 is one end site, as one NATed IPv4 address is.
    """
    if ":" not in ip:
        # Not IPv6: an IPv4 address or not an address at all, both counted as written (what
        # the parse below would answer, at a tenth of its cost on every handshake and close).
        return ip
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((int(address), _IPV6_PREFIX), strict=False))
    return ip


class TokenBucket:
    """A token bucket: ``burst`` tokens, refilled at ``rate`` tokens per second.

    Starts full. A clock that steps backwards refills nothing (and is not remembered), so a
    wrong ``now`` can never mint tokens.
    """

    __slots__ = ("_tokens", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._updated: float | None = None

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are enough; return whether they were taken."""
        # The refill, in locals: this runs up to four times per message (DESIGN.md §5). A clock
        # that stepped back refills nothing and is not remembered.
        updated = self._updated
        tokens = self._tokens
        if updated is None or now > updated:
            if updated is not None:
                tokens += (now - updated) * self.rate
                burst = self.burst
                if not tokens < burst:  # min(burst, tokens), without the call
                    tokens = burst
            self._updated = now
        if tokens >= cost:
            self._tokens = tokens - cost
            return True
        self._tokens = tokens
        return False

    def is_full(self, now: float) -> bool:
        """Whether the bucket has refilled to ``burst`` by ``now`` (it then carries no state).

        Changes nothing: the eviction sweep asks every bucket, and a bucket it keeps must stay
        as its own takes left it (a refill written here, at the sweep's ``now``, would credit
        time to a bucket whose next take comes with an earlier ``now``)."""
        updated = self._updated
        tokens = self._tokens
        if updated is not None and now > updated:
            tokens += (now - updated) * self.rate
        return tokens >= self.burst


class KeyedRateLimiter:
    """One token bucket per key (a client IP), with bounded memory.

    Threat: a handshake flood. Every handshake costs TLS, parsing and policy work before any
    cap applies; one bucket per client bounds how fast one address may make us do it. A flood
    from many addresses must not grow memory without bound either, so at most ``max_keys``
    buckets are kept. Past that, buckets that refilled to full are dropped (a full bucket is
    exactly what a new one would be, so nothing is lost), then the least recently used ones.
    The full-bucket sweep is O(n), so it runs at most once per ``max_keys // 10`` new keys;
    in between, only the least recently used bucket goes (the likeliest to be full anyway).
    An attacker with more than ``max_keys`` addresses can reset somebody's bucket that way;
    the per-IP and total connection caps still hold.

    Args:
        rate: tokens per second per key.
        burst: bucket size per key.
        max_keys: the most buckets kept at once.
    """

    __slots__ = ("_buckets", "_sweep_due", "_sweep_every", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._sweep_every = max(1, max_keys // 10)
        self._sweep_due = 0
        # Least recently used first; OrderedDict pops from the front in O(1).
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket; return whether the event is allowed."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = TokenBucket(self.rate, self.burst)
            self._sweep_due -= 1
            if len(buckets) > self.max_keys:
                self._evict(now)
        else:
            buckets.move_to_end(key)
        return bucket.take(now, cost)

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        if self._sweep_due <= 0:
            self._sweep_due = self._sweep_every
            newest = next(reversed(buckets))  # just created, full, and about to be used
            for key in [k for k, b in buckets.items() if k != newest and b.is_full(now)]:
                del buckets[key]
        # More than max_keys >= 1 entries means the oldest is never the newest.
        while len(buckets) > self.max_keys:
            buckets.popitem(last=False)


class ConnectionCaps:
    """Counts open connections per client key, per user and in total.

    Threat: connection exhaustion. Each open WebSocket holds memory and a file descriptor for
    as long as the peer likes; without caps one client (or one stolen account) could hold them
    all. The per-IP cap answers 429 (that client should slow down), the total cap 503 (the
    server is full for everyone).

    Args:
        max_total: connections in total.
        max_per_ip: connections per client key (see ``client_key``).
        max_per_user: connections per authenticated user.
    """

    __slots__ = ("_per_ip", "_per_user", "_total", "max_per_ip", "max_per_user", "max_total")

    def __init__(self, max_total: int, max_per_ip: int, max_per_user: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.max_per_user = max_per_user
        self._total = 0
        self._per_ip: dict[str, int] = {}
        self._per_user: dict[str, int] = {}

    @property
    def total(self) -> int:
        """Connections currently held."""
        return self._total

    def per_ip(self, ip: str) -> int:
        """Connections currently held by ``ip`` (a client key)."""
        return self._per_ip.get(ip, 0)

    def per_user(self, user_id: str) -> int:
        """Connections currently held by ``user_id``."""
        return self._per_user.get(user_id, 0)

    def check_ip(self, ip: str) -> Reject | None:
        """Whether one more connection from ``ip`` fits: per-IP first, then the total."""
        if self._per_ip.get(ip, 0) >= self.max_per_ip:
            return Reject(429, "Too Many Requests", "ip_connection_cap")
        if self._total >= self.max_total:
            return Reject(503, "Service Unavailable", "connection_cap")
        return None

    def check_user(self, user_id: str) -> Reject | None:
        """Whether one more connection for ``user_id`` fits."""
        if self._per_user.get(user_id, 0) >= self.max_per_user:
            return Reject(429, "Too Many Requests", "user_connection_cap")
        return None

    def acquire(self, ip: str, user_id: str | None) -> None:
        """Count one connection (call only after the checks passed)."""
        self._total += 1
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        if user_id is not None:
            self._per_user[user_id] = self._per_user.get(user_id, 0) + 1

    def release(self, ip: str, user_id: str | None) -> None:
        """Uncount one connection. Releasing what was not acquired changes nothing."""
        if _decrement(self._per_ip, ip):
            self._total -= 1
        if user_id is not None:
            _decrement(self._per_user, user_id)


def _decrement(counts: dict[str, int], key: str) -> bool:
    count = counts.get(key, 0)
    if count <= 0:
        return False
    if count == 1:
        del counts[key]
    else:
        counts[key] = count - 1
    return True
