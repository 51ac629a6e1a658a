"""``Client``: the operations of the wire protocol, and subscriptions that survive reconnects.

After each reconnect every subscription is resubscribed from the position it holds
(``since``); the server replays what was missed, then ``recovered``, then live messages, and
offsets already delivered are dropped (docs/reference/wire-protocol.md#positions-and-recovery).
"""

from __future__ import annotations

import asyncio
import random
import ssl as ssl_lib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from yarl import URL

from wsguard.client.dial import CredentialProvider, Dialer, Retry, WebSocket
from wsguard.client.errors import ClientError
from wsguard.client.link import Link, log
from wsguard.client.message import History, Message, Position
from wsguard.client.pending import Hook, Pending
from wsguard.client.subscription import GapCallback, MessageCallback, Subscription, call_back
from wsguard.exceptions import InvalidState

__all__ = ["Client"]


class Client(Link):
    """An asyncio client for a wsguard server.

    Example::

        async def ticket() -> str:  # your backend's ticket endpoint, or ApiClient.ticket
            return await api.ticket("alice", "https://app.example.com")

        async with Client("wss://ws.example.com/ws", ticket=ticket,
                          origin="https://app.example.com") as client:
            sub = await client.subscribe("chat:lobby")
            await client.publish("chat:lobby", {"text": "hi"})
            async for message in sub:
                print(message.offset, message.data)

    Args:
        url: the server's WebSocket URL (``wss://host/ws``).
        ticket: returns a fresh ticket; called before every connect and reconnect, sent as
            ``?ticket=``.
        token: returns a JWT, sent as the first message (``{"op": "auth", "token": ...}``)
            after every connect and in ``refresh``. Give ``ticket`` or ``token``, not both;
            neither for an anonymous connection (or credentials in ``headers``).
        origin: sent as ``Origin``; servers refuse a handshake without one by default.
        headers: more handshake headers (``Authorization: Bearer <JWT>``, ...).
        backoff_base: ceiling of the first reconnect delay, in seconds.
        backoff_cap: the largest ceiling, in seconds.
        timeout: seconds for each handshake, each credential call and each request.
        max_retries: consecutive failed attempts before giving up (None: never; 0: never
            reconnect).
        ssl: an ``ssl.SSLContext`` for ``wss://`` (default: the system's trust store).
        rng: the random source of the jitter (seed it in tests).
        sleep: awaited with each backoff delay (inject a fake in tests).
        keepalive: seconds between keepalives: an ``{"op": "ping"}`` (a connection that
            subscribes to nothing is otherwise closed after ``limits.idle_timeout``) and a
            WebSocket ping that detects a dead network. None disables both.

    Raises:
        ValueError: both ``ticket`` and ``token``, or a negative setting.
    """

    def __init__(
        self,
        url: str,
        *,
        ticket: CredentialProvider | None = None,
        token: CredentialProvider | None = None,
        origin: str | None = None,
        headers: Mapping[str, str] | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        timeout: float = 10.0,
        max_retries: int | None = None,
        ssl: ssl_lib.SSLContext | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        keepalive: float | None = 60.0,
    ) -> None:
        if ticket is not None and token is not None:
            raise ValueError("give a ticket provider or a token provider, not both")
        dialer = Dialer(
            URL(url),
            ticket,
            token,
            origin,
            dict(headers or {}),
            ssl if ssl is not None else True,
            timeout,
            keepalive,
        )
        super().__init__(
            dialer,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            timeout=timeout,
            max_retries=max_retries,
            rng=rng,
            sleep=sleep,
            keepalive=keepalive,
        )
        self._subs: dict[str, Subscription] = {}
        self._on_recovered: list[Callable[[str, bool, str, int], Any]] = []
        self._refreshing = False
        self._ending: list[Subscription] = []  # ended at shutdown; close() drains them

    def on_recovered(self, callback: Callable[[str, bool, str, int], Any]) -> None:
        """Call ``callback(channel, complete, epoch, offset)`` at each ``recovered`` push:
        after a reconnect, once the missed messages of ``channel`` were delivered.
        ``complete`` False means some could not be: resynchronise that channel."""
        self._on_recovered.append(callback)

    # ------------------------------------------------------------------ operations

    async def subscribe(
        self,
        channel: str,
        *,
        on_message: MessageCallback | None = None,
        on_gap: GapCallback | None = None,
    ) -> Subscription:
        """Subscribe to ``channel``; the messages published after the reply are delivered.

        Args:
            channel: the channel name.
            on_message: called with each ``Message``, in order; a coroutine function is
                awaited before the next call. Without it, iterate the subscription.
            on_gap: called with the subscription when a recovery reports a gap.

        Raises:
            ClientError: the server's refusal (403 ``forbidden``, 404 ``unknown_channel``,
                429 ``too_many_channels``, ...), 409 ``already_subscribed`` (this client
                subscribes already), ``timeout``, ``disconnected``, ``closed``.
        """
        if channel in self._subs:
            raise ClientError(409, "already_subscribed", "this client subscribes already")
        sub = Subscription(channel, self._unsubscribe, on_message, on_gap)
        self._subs[channel] = sub

        def subscribed(result: Any, error: ClientError | None) -> None:
            # In the reader, before the first live message: the position starts here.
            if error is None and self._subs.get(channel) is sub:
                sub._subscribed(result)

        try:
            await self._request("subscribe", {"channel": channel}, hook=subscribed)
        except BaseException as exc:
            if self._subs.get(channel) is sub:
                del self._subs[channel]
            sub._finish(None)
            if isinstance(exc, ClientError) and exc.reason == "timeout":
                # The server may have subscribed after all: do not leave it so.
                self._spawn(self._quietly("unsubscribe", {"channel": channel}))
            raise
        return sub

    async def publish(self, channel: str, data: Any) -> Position:
        """Publish ``data`` (any JSON value) on ``channel``; returns its position.

        Raises:
            ClientError: 403 ``forbidden``, 404 ``unknown_channel``, 422 ``invalid_data``, 503
                ``unavailable``, ``timeout``, ``disconnected`` (it may have been published),
                ``closed``.
        """
        result = await self._request("publish", {"channel": channel, "data": data})
        return Position(str(result["epoch"]), int(result["offset"]))

    async def rpc(self, method: str, data: Any = None) -> Any:
        """Call the server's rpc ``method`` with ``data``; returns the handler's result.

        Raises:
            ClientError: 404 ``unknown_method``, 403 ``forbidden``, 422 ``invalid_data``, 503
                ``timeout`` (the server's limit), the handler's own errors, ``timeout`` (code
                0: no reply within this client's timeout), ...
        """
        fields: dict[str, Any] = {"method": method}
        if data is not None:
            fields["data"] = data
        return await self._request("rpc", fields)

    async def history(
        self, channel: str, since: tuple[str, int] | None = None, limit: int | None = None
    ) -> History:
        """The publications of ``channel`` still held after ``since`` (a ``Position``), at
        most ``limit`` (1-1000, default 100).

        Raises:
            ClientError: 403 ``forbidden``, 404 ``unknown_channel``, 400 ``bad_field``, ...
        """
        fields: dict[str, Any] = {"channel": channel}
        if since is not None:
            fields["since"] = {"epoch": since[0], "offset": since[1]}
        if limit is not None:
            fields["limit"] = limit
        result = await self._request("history", fields)
        epoch = str(result["epoch"])
        publications = [
            Message(channel, epoch, int(p["offset"]), p["data"]) for p in result["publications"]
        ]
        return History(publications, epoch, int(result["offset"]), bool(result["complete"]))

    async def presence(self, channel: str) -> dict[str, dict[str, Any]]:
        """The connections subscribed to ``channel``: ``{client_id: {"user": ...}}``.

        Raises:
            ClientError: 403 ``forbidden``, 404 ``unknown_channel``, ...
        """
        result = await self._request("presence", {"channel": channel})
        clients: dict[str, dict[str, Any]] = result["clients"]
        return clients

    async def ping(self) -> None:
        """A round trip to the server.

        Raises:
            ClientError: ``timeout``, ``disconnected``, ``closed``.
        """
        await self._request("ping", {})

    async def refresh(self) -> None:
        """Renew the connection's credential from the token (else ticket) provider. Done by
        itself when the server announces the expiry with an ``expiring`` push.

        Raises:
            ClientError: 401 ``unauthorized`` (refused: the current credential stays in force
                until it expires), ``credential_failed``, ``timeout``, ``disconnected``.
            InvalidState: the client has no credential provider.
        """
        dialer = self._dialer
        provider, field = (dialer.token, "token") if dialer.token else (dialer.ticket, "ticket")
        if provider is None:
            raise InvalidState("no token or ticket provider to refresh with")
        try:
            credential = await dialer.credential(provider)
        except Retry as retry:
            raise retry.error from None
        await self._request("refresh", {field: credential}, wait_open=False)

    # ------------------------------------------------------------------ subscriptions

    async def _unsubscribe(self, sub: Subscription) -> None:
        if self._subs.get(sub.channel) is sub:
            del self._subs[sub.channel]
        active = sub.active
        sub._finish(None)
        if not active or self.state != "open":
            return  # the next connection will not resubscribe it: nothing to tell
        try:
            await self._request("unsubscribe", {"channel": sub.channel}, wait_open=False)
        except ClientError as exc:
            if exc.reason not in ("not_subscribed", "disconnected", "closed", "timeout"):
                raise

    async def _on_open(self, ws: WebSocket) -> None:
        """Resubscribe every channel from the position it holds."""
        for sub in list(self._subs.values()):
            position = sub.position
            if position is None:
                continue  # its first subscribe is on its way: the caller will see it fail
            fields: dict[str, Any] = {"channel": sub.channel}
            if position.epoch:
                fields["since"] = {"epoch": position.epoch, "offset": position.offset}
            try:
                await self._send(ws, "subscribe", fields, Pending(None, self._resubscribed(sub)))
            except ClientError:
                return  # dropped again: the next connection tries

    def _resubscribed(self, sub: Subscription) -> Hook:
        def hook(result: Any, error: ClientError | None) -> None:
            if error is None:
                return  # the position moves with the replay and the recovered push
            if error.reason == "disconnected":
                return  # the next connection resubscribes it
            log.warning("resubscribing to %s was refused: %s", sub.channel, error.reason)
            if self._subs.get(sub.channel) is sub:
                del self._subs[sub.channel]
            sub._finish(error)
            self._report(error)

        return hook

    def _on_push(self, push: Any, frame: dict[str, Any]) -> None:
        channel = frame.get("channel")
        sub = self._subs.get(channel) if isinstance(channel, str) else None
        position = _position(frame)
        if push == "message" and sub is not None and position is not None:
            sub._message(position.epoch, position.offset, frame.get("data"))
        elif push == "recovered" and isinstance(channel, str) and position is not None:
            complete = frame.get("complete") is True
            if sub is not None:
                sub._recovered(complete, position.epoch, position.offset)
            for callback in self._on_recovered:
                call_back(callback, channel, complete, position.epoch, position.offset)
        elif push == "unsubscribed" and sub is not None:
            del self._subs[sub.channel]
            reason = str(frame.get("reason", "forbidden"))
            error = ClientError(403, reason, "the server dropped the subscription")
            sub._finish(error)
            self._report(error)
        elif push == "expiring" and not self._refreshing:
            self._refreshing = True
            self._spawn(self._refresh_on_notice())
        elif push == "welcome":
            self.welcome = frame

    async def _refresh_on_notice(self) -> None:
        try:
            await self.refresh()
        except ClientError as exc:
            log.warning("refresh failed (%s): the socket stays until the credential expires", exc)
            self._report(exc)
        except InvalidState:
            log.warning("the credential expires and there is no provider to refresh it")
        finally:
            self._refreshing = False

    def _on_shutdown(self) -> None:
        subs, self._subs = self._subs, {}
        self._ending = list(subs.values())
        error = None if self._closing and self.error is None else self._closed_error()
        for sub in self._ending:
            sub._finish(error)

    async def _drain(self, within: float) -> None:
        for sub in self._ending:
            await sub._drain(within)


def _position(frame: dict[str, Any]) -> Position | None:
    epoch, offset = frame.get("epoch"), frame.get("offset")
    if isinstance(epoch, str) and type(offset) is int:
        return Position(epoch, offset)
    return None
