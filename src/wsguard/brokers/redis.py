"""The Redis broker: many processes and machines share one Redis (extra ``wsguard[redis]``).

What lives in Redis, under ``prefix`` (every key of a channel shares the hash tag ``{channel}``):

- ``ch:{c}:meta``: a hash with the stream's epoch (``e``) and its top offset (``t``).
- ``ch:{c}:hist``: a stream holding the history; entry id ``0-<offset>``, fields ``d`` (the
  payload) and ``x`` (expiry, Unix ms; 0 for none).
- ``pub:c``: the pub/sub channel carrying ``epoch \\n offset \\n payload`` to every node.
- ``pr:{c}`` / ``pr:{c}:exp``: presence: client id -> info (JSON), and client id -> expiry (ms).
- ``ticket:<id>``: a consumed ticket, kept until it would have expired anyway.
- ``revoked``: user id -> revocation time, replayed to a node that (re)connects.
- ``control``: the pub/sub channel of revoke/disconnect messages.

One Lua script appends to the history, increments the offset and publishes, atomically: offsets
are gap-free whichever node publishes. Expiry (history ttl, presence, idle streams) is
judged by the time the broker's clock gives, so nodes must keep their clocks in step (NTP).

Each node holds one pub/sub connection, subscribed to the channels it has local subscribers for.
Live delivery is checked, not trusted: every publication must carry the next offset of the epoch
this node last saw. After the pub/sub link broke (Redis restarted, the network failed), the
node resubscribes with backoff, reads each channel's top and replays what it missed from the
history; when the history no longer covers it, or the stream restarted, it tells the
subscription's ``lost`` callback instead of skipping anything silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

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
from wsguard.exceptions import BrokerUnavailable, InvalidState

__all__ = ["RedisBroker", "RedisTicketStore"]

logger = logging.getLogger("wsguard.broker")

T = TypeVar("T")

# Every script takes "now" (Unix ms) from the broker's clock: nodes must keep their clocks in
# step (NTP), as for any expiry shared between machines. A channel's meta hash holds its epoch
# (e), top offset (t) and the time it expires (x): a meta past x counts as gone, so the stream
# restarts in a new epoch, like the memory broker's idle channel. Real key expiry (PEXPIRE) only
# reclaims memory, a minute after the logical expiry.

# Shared by the scripts below: the live epoch and top of KEYS[1], or nil.
_LIVE_META = """
local function live_meta(meta, now)
  local m = redis.call('HMGET', meta, 'e', 't', 'x')
  if not m[1] then return nil, 0 end
  local x = tonumber(m[3] or '0')
  if x > 0 and x <= now then
    redis.call('DEL', meta)
    return nil, 0
  end
  return m[1], tonumber(m[2])
end
local function keep_meta(meta, now, keep)
  local x = tonumber(redis.call('HGET', meta, 'x') or '0')
  if now + keep > x then
    redis.call('HSET', meta, 'x', now + keep)
    redis.call('PEXPIRE', meta, keep + 60000)
  end
end
"""

# KEYS: meta, hist. ARGV: payload, history_size, history_ttl_ms, new epoch, meta_ttl_ms,
# pub/sub channel, now_ms. Returns {epoch, offset}.
_PUBLISH = (
    _LIVE_META
    + """
local meta, hist = KEYS[1], KEYS[2]
local size, ttl, meta_ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local now = tonumber(ARGV[7])
local epoch, top = live_meta(meta, now)
if not epoch then
  epoch = ARGV[4]
  redis.call('HSET', meta, 'e', epoch, 't', 0, 'x', 0)
  redis.call('DEL', hist)
end
top = redis.call('HINCRBY', meta, 't', 1)
local keep = meta_ttl
if size > 0 and ttl > 0 then keep = ttl end
keep_meta(meta, now, keep)
if size > 0 then
  local expires = 0
  if ttl > 0 then expires = now + ttl end
  redis.call('XADD', hist, 'MAXLEN', size, '0-' .. top, 'd', ARGV[1], 'x', expires)
  redis.call('PEXPIRE', hist, keep + 60000)
else
  redis.call('DEL', hist)
end
redis.call('PUBLISH', ARGV[6], epoch .. '\\n' .. top .. '\\n' .. ARGV[1])
return {epoch, top}
"""
)

# KEYS: meta, hist. ARGV: after (-1: from the oldest), limit, now_ms. Drops expired entries,
# then returns {epoch, top, oldest retained offset (top + 1: none), [offset, payload, ...]}.
_HISTORY = (
    _LIVE_META
    + """
local meta, hist = KEYS[1], KEYS[2]
local after, limit, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local epoch, top = live_meta(meta, now)
if not epoch then return {'', 0, 1, {}} end
local oldest = top + 1
while true do
  local batch = redis.call('XRANGE', hist, '-', '+', 'COUNT', 64)
  if #batch == 0 then break end
  local stop = false
  for _, entry in ipairs(batch) do
    local expires = tonumber(entry[2][4])
    if expires > 0 and expires < now then
      redis.call('XDEL', hist, entry[1])
    else
      oldest = tonumber(string.sub(entry[1], 3))
      stop = true
      break
    end
  end
  if stop then break end
end
local out = {}
if limit > 0 and oldest <= top then
  local start = math.max(after + 1, oldest)
  local entries = redis.call('XRANGE', hist, '0-' .. start, '+', 'COUNT', limit)
  for _, entry in ipairs(entries) do
    out[#out + 1] = string.sub(entry[1], 3)
    out[#out + 1] = entry[2][2]
  end
end
return {epoch, top, oldest, out}
"""
)

# KEYS: meta, hist. ARGV: new epoch, meta_ttl_ms, now_ms. The stream's position, kept alive
# for meta_ttl; creates the epoch when the stream has none, so a subscriber holds a real
# position before the first publication.
_POSITION = (
    _LIVE_META
    + """
local now = tonumber(ARGV[3])
local epoch, top = live_meta(KEYS[1], now)
if not epoch then
  epoch = ARGV[1]
  top = 0
  redis.call('HSET', KEYS[1], 'e', epoch, 't', 0, 'x', 0)
  redis.call('DEL', KEYS[2])
end
keep_meta(KEYS[1], now, tonumber(ARGV[2]))
return {epoch, top}
"""
)

# KEYS: info hash, expiry zset. ARGV: client id, info JSON, ttl_ms, now_ms.
_PRESENCE_ADD = """
local ttl, now = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl + 60000)
redis.call('PEXPIRE', KEYS[2], ttl + 60000)
return 1
"""

# KEYS: info hash, expiry zset. ARGV: now_ms. Drops the expired entries, returns the live ones.
_PRESENCE_GET = """
local now = tonumber(ARGV[1])
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, client in ipairs(gone) do redis.call('HDEL', KEYS[1], client) end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
return redis.call('HGETALL', KEYS[1])
"""

_UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


def _new_epoch() -> str:
    return secrets.token_urlsafe(9)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Channel:
    """One channel this node has local subscribers for."""

    __slots__ = ("position", "ready", "subscribers")

    def __init__(self) -> None:
        self.subscribers: dict[Subscription, None] = {}  # insertion-ordered set
        # The last publication delivered here (None until the first sync with Redis).
        self.position: StreamPosition | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class RedisBroker:
    """The broker of a node among many, on one Redis.

    Args:
        redis: the client (``decode_responses`` off). ``RedisBroker.from_url`` makes one with
            short timeouts, so that a Redis outage turns into 503 replies within seconds.
        prefix: put before every key and pub/sub channel; isolates deployments (and tests)
            sharing one Redis.
        meta_ttl: seconds a channel's epoch and offset outlive its last publication (nodes with
            subscribers keep refreshing it); after that the next publication starts a new epoch.
        presence_ttl: seconds a presence entry lives unless its node refreshes it (every third
            of that); the clients of a node that died leave the presence within it.
        wait_timeout: seconds ``subscribed`` waits for Redis before giving up.
        clock: wall-clock seconds, for every expiry.
        node: this node's id (random by default); control messages it sends come back to
            every node but this one.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "wsguard:",
        meta_ttl: float = 86400.0,
        presence_ttl: float = 60.0,
        wait_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        node: str | None = None,
    ) -> None:
        self.redis = redis
        self._clock = clock
        self.prefix = prefix
        self._meta_ttl_ms = int(meta_ttl * 1000)
        self._presence_ttl = presence_ttl
        self._wait_timeout = wait_timeout
        self._publish_script = redis.register_script(_PUBLISH)
        self._history_script = redis.register_script(_HISTORY)
        self._position_script = redis.register_script(_POSITION)
        self._presence_add_script = redis.register_script(_PRESENCE_ADD)
        self._presence_get_script = redis.register_script(_PRESENCE_GET)
        self._channels: dict[str, _Channel] = {}
        # Pub/sub name -> SUBSCRIBE requests not yet confirmed: a channel syncs with Redis on
        # the confirmation of its latest request only.
        self._unconfirmed: dict[str, int] = {}
        self._present: dict[tuple[str, str], bytes] = {}  # this node's presence entries
        self._control_callbacks: list[ControlCallback] = []
        self._control_name = f"{prefix}control"
        self._node = node or secrets.token_urlsafe(9)
        self.client_name = f"wsguard-{self._node}"
        self._pubsub: PubSub | None = None
        self._connected = asyncio.Event()
        self._outage = False  # the latest attempt to reach Redis failed
        self._tasks: list[asyncio.Task[None]] = []
        self._delivery_errors = 0
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBroker:
        """A broker on a new client for ``url`` (``redis://`` or ``rediss://``)."""
        node = secrets.token_urlsafe(9)
        # A bounded pool that waits for a free connection: a burst of publishes queues here
        # instead of opening hundreds of connections to Redis.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=64,
            timeout=5.0,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            health_check_interval=15,
            client_name=f"wsguard-{node}",  # CLIENT LIST shows which node holds what
            # One quick retry gets past a pooled connection that died with a Redis restart;
            # beyond that the caller gets its 503 at once rather than after seconds.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
        )
        return cls(Redis.from_pool(pool), node=node, **options)

    # ------------------------------------------------------------------ lifecycle

    @property
    def delivery_errors(self) -> int:
        return self._delivery_errors

    @property
    def connected(self) -> bool:
        """Whether this node's pub/sub link to Redis is up."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Start the pub/sub listener and the housekeeping. Does not wait for Redis: while it is
        unreachable the node runs, refusing what needs it with ``BrokerUnavailable``."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen(), name="wsguard-redis-listen"),
            loop.create_task(self._housekeeping(), name="wsguard-redis-housekeeping"),
        ]

    async def wait_connected(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the pub/sub link; True when it is up."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), seconds)
        return self._connected.is_set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=3.0)
        for state in self._channels.values():
            for subscription in state.subscribers:
                subscription.active = False
            if not state.ready.done():
                state.ready.cancel()
        self._channels.clear()
        with contextlib.suppress(Exception):
            await self._redis_call(self._drop_presence())
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    # ------------------------------------------------------------------ keys

    def _meta(self, channel: str) -> str:
        return f"{self.prefix}ch:{{{channel}}}:meta"

    def _hist(self, channel: str) -> str:
        return f"{self.prefix}ch:{{{channel}}}:hist"

    def _pub(self, channel: str) -> str:
        return f"{self.prefix}pub:{channel}"

    def _presence_keys(self, channel: str) -> list[str]:
        return [f"{self.prefix}pr:{{{channel}}}", f"{self.prefix}pr:{{{channel}}}:exp"]

    # ------------------------------------------------------------------ publishing, history

    async def publish(
        self, channel: str, data: bytes, *, history_size: int, history_ttl: float
    ) -> Publication:
        self._check_open()
        if history_size < 0:
            raise ValueError("history_size must be >= 0")
        if not history_ttl >= 0:  # also refuses NaN
            raise ValueError("history_ttl must be >= 0")
        epoch, offset = await self._redis_call(
            self._publish_script(
                keys=[self._meta(channel), self._hist(channel)],
                args=[
                    data,
                    history_size,
                    int(history_ttl * 1000),
                    _new_epoch(),
                    self._meta_ttl_ms,
                    self._pub(channel),
                    self._now_ms(),
                ],
            )
        )
        return Publication(channel, _text(epoch), int(offset), data)

    async def history(
        self, channel: str, *, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        self._check_open()
        if limit < 0:
            raise ValueError("limit must be >= 0")
        after = -1 if since is None else since.offset
        if since is not None and since.offset < 0:
            limit = 0
        raw_epoch, top, oldest, flat = await self._redis_call(
            self._history_script(
                keys=[self._meta(channel), self._hist(channel)],
                args=[after, limit, self._now_ms()],
            )
        )
        epoch, top, oldest = _text(raw_epoch), int(top), int(oldest)
        position = StreamPosition(epoch, top)
        publications = [
            Publication(channel, epoch, int(flat[i]), bytes(flat[i + 1]))
            for i in range(0, len(flat), 2)
        ]
        if since is None:
            return HistoryResult(publications, True, position)
        if not epoch:
            # No stream at all: nothing kept. Only "no position" is still complete.
            return HistoryResult([], since == position, position)
        if since.epoch != epoch or since.offset > top or since.offset < 0:
            return HistoryResult([], False, position)
        return HistoryResult(publications, since.offset + 1 >= oldest, position)

    # ------------------------------------------------------------------ subscriptions

    def subscribe(
        self, channel: str, callback: PublicationCallback, lost: LostCallback | None = None
    ) -> Subscription:
        self._check_open()
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
            self._request_subscribe(channel)
        subscription = Subscription(channel, callback, lost)
        state.subscribers[subscription] = None
        return subscription

    async def subscribed(self, subscription: Subscription) -> None:
        state = self._channels.get(subscription.channel)
        if state is None or not subscription.active:
            raise InvalidState("the subscription is not active")
        if state.ready.done():
            return
        if self._outage:
            raise BrokerUnavailable("Redis is unreachable")
        try:
            await asyncio.wait_for(asyncio.shield(state.ready), self._wait_timeout)
        except TimeoutError:
            raise BrokerUnavailable("Redis did not confirm the subscription in time") from None

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.active = False
        state = self._channels.get(subscription.channel)
        if state is None or subscription not in state.subscribers:
            return
        del state.subscribers[subscription]
        if not state.subscribers:
            del self._channels[subscription.channel]
            if not state.ready.done():
                state.ready.cancel()
            if self._pubsub is not None:
                self._spawn(self._pubsub_command("unsubscribe", self._pub(subscription.channel)))

    def _request_subscribe(self, channel: str) -> None:
        if self._pubsub is None:
            return  # the listener subscribes every channel when it (re)connects
        name = self._pub(channel)
        self._unconfirmed[name] = self._unconfirmed.get(name, 0) + 1
        self._spawn(self._pubsub_command("subscribe", name))

    # ------------------------------------------------------------------ presence

    async def presence_add(self, channel: str, client_id: str, info: Mapping[str, Any]) -> None:
        self._check_open()
        encoded = orjson.dumps(dict(info))
        self._present[(channel, client_id)] = encoded
        await self._redis_call(self._add_presence(channel, client_id, encoded))

    async def presence_remove(self, channel: str, client_id: str) -> None:
        self._check_open()
        self._present.pop((channel, client_id), None)
        info, expiry = self._presence_keys(channel)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(info, client_id)
        pipe.zrem(expiry, client_id)
        await self._redis_call(pipe.execute())

    async def presence(self, channel: str) -> dict[str, PresenceInfo]:
        self._check_open()
        flat = await self._redis_call(
            self._presence_get_script(keys=self._presence_keys(channel), args=[self._now_ms()])
        )
        return {_text(flat[i]): orjson.loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    def _add_presence(
        self, channel: str, client_id: str, encoded: bytes, client: Pipeline | None = None
    ) -> Awaitable[Any]:
        return self._presence_add_script(
            keys=self._presence_keys(channel),
            args=[client_id, encoded, int(self._presence_ttl * 1000), self._now_ms()],
            client=client,
        )

    async def _drop_presence(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for channel, client_id in self._present:
            info, expiry = self._presence_keys(channel)
            pipe.hdel(info, client_id)
            pipe.zrem(expiry, client_id)
        self._present.clear()
        await pipe.execute()

    # ------------------------------------------------------------------ control

    async def send_control(self, message: dict[str, Any]) -> None:
        self._check_open()
        body = {**message, "node": self._node}
        if message.get("op") == "revoke":
            # Kept for nodes that are down or disconnected now: replayed when they connect.
            await self._redis_call(
                self.redis.hset(f"{self.prefix}revoked", message["user"], message["at"])
            )
        await self._redis_call(self.redis.publish(self._control_name, orjson.dumps(body)))

    def on_control(self, callback: ControlCallback) -> None:
        self._control_callbacks.append(callback)

    async def revocations(self, ttl: float, now: float) -> dict[str, float]:
        """Revocations younger than ``ttl`` seconds; older ones are deleted."""
        key = f"{self.prefix}revoked"
        raw = await self._redis_call(self.redis.hgetall(key))
        live: dict[str, float] = {}
        stale: list[str] = []
        for user, at in raw.items():
            when = float(at)
            if now - when > ttl:
                stale.append(_text(user))
            else:
                live[_text(user)] = when
        if stale:
            await self._redis_call(self.redis.hdel(key, *stale))
        return live

    def _control(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            logger.warning("ignored a control message that is not JSON")
            return
        if not isinstance(message, dict) or message.get("node") == self._node:
            return
        for callback in self._control_callbacks:
            try:
                callback(message)
            except Exception:
                logger.exception("control callback failed on %r", message.get("op"))

    # ------------------------------------------------------------------ the pub/sub listener

    async def _listen(self) -> None:
        backoff = 0.1
        while not self._closed:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.connect()  # type: ignore[no-untyped-call]
                # Usable first: a channel created from here on subscribes on its own. The
                # link counts as up (``connected``) once the control channel is confirmed.
                self._pubsub = pubsub
                self._outage = False
                names = [self._pub(channel) for channel in self._channels]
                self._unconfirmed = dict.fromkeys(names, 1)
                await pubsub.subscribe(self._control_name, *names)
                logger.info("connected to Redis; %d channels", len(names))
                backoff = 0.1
                # A short wait, and the flag checked between: redis-py can swallow a
                # cancellation inside get_message, and close() must still finish.
                while not self._closed:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        await self._on_message(message)
            except asyncio.CancelledError:
                raise
            except _UNAVAILABLE as exc:
                self._outage = True
                logger.warning("Redis pub/sub link lost (%s); retrying in %.1fs", exc, backoff)
            except Exception:
                logger.exception("Redis listener failed; retrying in %.1fs", backoff)
            finally:
                self._connected.clear()
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            # Full jitter: many nodes losing Redis at once do not come back in lock-step.
            await asyncio.sleep(random.uniform(0, backoff))  # noqa: S311 - not a secret
            backoff = min(backoff * 2, 5.0)

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = _text(message["type"])
        name = _text(message["channel"])
        if kind == "message":
            if name == self._control_name:
                self._control(message["data"])
                return
            epoch, offset, data = bytes(message["data"]).split(b"\n", 2)
            channel = name[len(self.prefix) + 4 :]
            state = self._channels.get(channel)
            if state is not None:
                publication = Publication(channel, epoch.decode(), int(offset), data)
                await self._accept(state, publication)
        elif kind == "subscribe":
            pending = self._unconfirmed.get(name, 0) - 1
            if pending > 0:
                self._unconfirmed[name] = pending
                return
            self._unconfirmed.pop(name, None)
            if name == self._control_name:
                # Subscribed (again): also after redis-py reconnected the link on its own,
                # which it does once before giving up. Revocations sent meanwhile apply now;
                # each channel's own confirmation follows and catches up on its history.
                self._connected.set()
                for callback in self._control_callbacks:
                    callback({"op": "connected"})
                return
            state = self._channels.get(name[len(self.prefix) + 4 :])
            if state is not None:
                await self._sync(name[len(self.prefix) + 4 :], state)

    async def _sync(self, channel: str, state: _Channel) -> None:
        """Align ``state`` with the stream now that this node's subscription is live: set the
        starting position, or replay what was missed while the link was down."""
        epoch, top = await self._position_script(
            keys=[self._meta(channel), self._hist(channel)],
            args=[_new_epoch(), self._meta_ttl_ms, self._now_ms()],
        )
        current = StreamPosition(_text(epoch), int(top))
        if state.position is None:
            state.position = current
            if not state.ready.done():
                state.ready.set_result(None)
            return
        await self._catch_up(channel, state, current)

    async def _accept(self, state: _Channel, publication: Publication) -> None:
        position = state.position
        if position is None:
            return  # published before this node's subscription started: not ours to deliver
        if publication.epoch == position.epoch and publication.offset <= position.offset:
            return  # already delivered (replayed from the history)
        if publication.epoch != position.epoch or publication.offset > position.offset + 1:
            # A jump: fill in up to the one before this publication (or report the loss).
            before = StreamPosition(publication.epoch, publication.offset - 1)
            await self._catch_up(publication.channel, state, before)
            if self._channels.get(publication.channel) is not state:
                return
            now = state.position
            if (
                now is not None
                and now.epoch == publication.epoch
                and now.offset >= publication.offset
            ):
                return  # delivered meanwhile
        state.position = publication.position
        self._deliver(state, publication)

    async def _catch_up(self, channel: str, state: _Channel, target: StreamPosition) -> None:
        """Deliver the publications between ``state.position`` and ``target`` from the
        history, or report the loss when it cannot."""
        position = state.position
        assert position is not None  # noqa: S101 - set by the first sync
        while position.epoch == target.epoch and position.offset < target.offset:
            result = await self.history(channel, since=position, limit=1000)
            if not result.complete or not result.publications:
                break
            for publication in result.publications:
                if publication.offset > target.offset:
                    break
                position = state.position = publication.position
                self._deliver(state, publication)
        if position.epoch == target.epoch and position.offset >= target.offset:
            return
        logger.warning(
            "lost publications on %s: at %s/%d, stream at %s/%d",
            channel,
            position.epoch,
            position.offset,
            target.epoch,
            target.offset,
        )
        state.position = target
        self._report_lost(state, channel)

    def _deliver(self, state: _Channel, publication: Publication) -> None:
        self._delivery_errors += deliver(tuple(state.subscribers), publication)

    def _report_lost(self, state: _Channel, channel: str) -> None:
        for subscription in tuple(state.subscribers):
            if subscription.active and subscription.lost is not None:
                try:
                    subscription.lost(channel)
                except Exception:
                    logger.exception("lost callback failed on %s", channel)

    # ------------------------------------------------------------------ housekeeping

    async def _housekeeping(self) -> None:
        """Keep this node's presence entries and its channels' epochs alive."""
        interval = self._presence_ttl / 3
        while True:
            await asyncio.sleep(interval)
            if not self._connected.is_set():
                continue
            # One round trip for all of them, not one per entry and channel. (Awaiting a script
            # call on a pipeline only queues it.)
            pipe = self.redis.pipeline(transaction=False)
            for (channel, client_id), encoded in list(self._present.items()):
                await self._add_presence(channel, client_id, encoded, client=pipe)
            for channel in list(self._channels):
                await self._position_script(
                    keys=[self._meta(channel), self._hist(channel)],
                    args=[_new_epoch(), self._meta_ttl_ms, self._now_ms()],
                    client=pipe,
                )
            if not len(pipe):
                continue
            try:
                await pipe.execute()
            except _UNAVAILABLE:
                logger.warning("Redis unavailable; presence refresh skipped")

    # ------------------------------------------------------------------ helpers

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidState("the broker is closed")

    async def _redis_call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except _UNAVAILABLE as exc:
            raise BrokerUnavailable(f"Redis is unavailable: {exc}") from None

    async def _pubsub_command(self, command: str, name: str) -> None:
        """SUBSCRIBE or UNSUBSCRIBE on the current link; a broken link is the listener's to
        handle (it resubscribes every channel when it reconnects)."""
        pubsub = self._pubsub
        if pubsub is None:
            return
        with contextlib.suppress(*_UNAVAILABLE):
            if command == "subscribe":
                await pubsub.subscribe(name)
            else:
                await pubsub.unsubscribe(name)

    def _spawn(self, call: Awaitable[None]) -> None:
        task = asyncio.ensure_future(call)
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)


class RedisTicketStore:
    """Single-use ticket ids, consumed with ``SET NX`` so exactly one node wins."""

    def __init__(self, broker: RedisBroker) -> None:
        self._redis = broker.redis
        self._prefix = f"{broker.prefix}ticket:"

    async def consume(self, ticket_id: str, expires_at: float) -> bool:
        # Kept one second past the ticket's expiry, when it is refused as expired anyway.
        until_ms = int(expires_at * 1000) + 1000
        try:
            created = await self._redis.set(self._prefix + ticket_id, b"1", nx=True, pxat=until_ms)
        except _UNAVAILABLE as exc:
            raise BrokerUnavailable(f"Redis is unavailable: {exc}") from None
        return bool(created)
