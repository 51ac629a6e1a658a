"""One logical connection to a wsguard server, reopened after every drop: the part of
``Client`` that knows nothing about channels.

Rules:

- One reader per connection reads every frame in order and never awaits user code: replies
  settle their request, pushes go to ``_on_push``, callbacks that return a coroutine run as
  tasks of their own. Whatever the reader keeps (a subscription's position) therefore always
  matches the last frame read.
- A drop reconnects after ``backoff_delay`` (exponential, full jitter); terminal close codes
  and refused handshakes stop (``policy``). The attempt counter resets at each ``welcome``.
- Requests wait for an open connection within their timeout; those on a connection that
  drops fail with ``disconnected`` (the server may or may not have acted on them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Literal, Self

import aiohttp
import orjson

from wsguard.client.dial import Dialer, Retry, WebSocket
from wsguard.client.errors import ClientError
from wsguard.client.pending import Hook, Pending, PendingTable, decode
from wsguard.client.policy import backoff_delay, close_action
from wsguard.client.subscription import call_back
from wsguard.exceptions import InvalidState

__all__ = ["Link", "State"]

log = logging.getLogger("wsguard.client")

State = Literal["connecting", "open", "reconnecting", "closed"]


class Link:
    """Connection, reconnection and request/reply; ``Client`` adds the operations."""

    def __init__(
        self,
        dialer: Dialer,
        *,
        backoff_base: float,
        backoff_cap: float,
        timeout: float,
        max_retries: int | None,
        rng: random.Random | None,
        sleep: Callable[[float], Awaitable[Any]],
        keepalive: float | None,
    ) -> None:
        if backoff_base < 0 or backoff_cap < 0 or not timeout > 0:
            raise ValueError("backoff_base and backoff_cap must be >= 0, timeout > 0")
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be >= 0 or None")
        if keepalive is not None and not keepalive > 0:
            raise ValueError("keepalive must be > 0 or None")
        self._dialer = dialer
        self._base = backoff_base
        self._cap = backoff_cap
        self._timeout = timeout
        self._max_retries = max_retries
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._sleep = sleep
        self._keepalive = keepalive
        self.welcome: dict[str, Any] | None = None
        """The last ``welcome`` push (``client`` is this connection's id)."""
        self.error: ClientError | None = None
        """Why the client closed for good (None while it runs, and after ``close()``)."""
        self._state: State = "connecting"
        self._changed = asyncio.Event()  # set, then replaced, at every state change
        self._ws: WebSocket | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._ever_open = False
        self._pending = PendingTable()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_state: list[Callable[[State], Any]] = []
        self._on_error: list[Callable[[ClientError], Any]] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._dialer.url.with_query(None)} {self._state}>"

    @property
    def state(self) -> State:
        """``"connecting"`` (never open yet), ``"open"``, ``"reconnecting"`` or ``"closed"``."""
        return self._state

    async def connect(self) -> None:
        """Connect and wait for the ``welcome`` push, retrying as a reconnect would.

        Bound the wait with ``max_retries`` or ``asyncio.timeout``: a server that is down
        is retried for ever by default.

        Raises:
            ClientError: the client closed for good before opening: ``handshake_refused``
                (``code`` is the HTTP status: 401, 403), ``closed`` (a terminal close code,
                or a refused ``auth``), ``retries_exhausted``.
            InvalidState: ``connect`` was called before.
        """
        if self._runner is not None:
            raise InvalidState("connect() was already called")
        self._http = aiohttp.ClientSession()
        self._runner = asyncio.get_running_loop().create_task(self._run())
        try:
            while True:
                changed = self._changed
                if self._state == "open":
                    return
                if self._state == "closed":
                    raise self._closed_error()
                await changed.wait()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection with 1000 and stop reconnecting. Requests still waiting fail
        with ``ClientError`` ``closed``. Idempotent."""
        self._closing = True
        runner = self._runner
        if runner is None:
            self._shutdown()
            return
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await ws.close(code=1000)
        if not runner.done():
            runner.cancel()
        await asyncio.wait({runner})
        await self._drain(self._timeout)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self._http is not None:
            await self._http.close()

    async def wait_closed(self) -> ClientError | None:
        """Wait until the client is closed; return why (None after ``close()``)."""
        while self._state != "closed":
            await self._changed.wait()
        return self.error

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def on_state(self, callback: Callable[[State], Any]) -> None:
        """Call ``callback(state)`` at every state change."""
        self._on_state.append(callback)

    def on_error(self, callback: Callable[[ClientError], Any]) -> None:
        """Call ``callback(error)`` for each failure the client handles by itself: a drop, a
        failed attempt, a failed refresh, a refused resubscribe."""
        self._on_error.append(callback)

    # ------------------------------------------------------------------ for subclasses

    async def _on_open(self, ws: WebSocket) -> None:
        """A connection opened (after ``welcome``), before its first frame is read."""

    def _on_push(self, push: Any, frame: dict[str, Any]) -> None:
        """The reader got a push."""

    def _on_shutdown(self) -> None:
        """The client closed for good (``self.error`` says why, None after ``close()``)."""

    async def _drain(self, within: float) -> None:
        """``close()`` lets callbacks finish for at most ``within`` seconds."""

    # ------------------------------------------------------------------ requests

    async def _request(
        self, op: str, fields: dict[str, Any], *, hook: Hook | None = None, wait_open: bool = True
    ) -> Any:
        """Send a request and return its result, within the timeout.

        Raises:
            ClientError: the server's error reply, ``timeout``, ``disconnected``, ``closed``.
        """
        if self._runner is None:
            raise InvalidState("connect first: await client.connect(), or async with Client()")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        request_id = -1
        try:
            async with asyncio.timeout(self._timeout):
                ws = await self._open_socket(wait_open)
                request_id = await self._send(ws, op, fields, Pending(future, hook))
                return await future
        except TimeoutError:
            raise ClientError(0, "timeout", f"no reply to {op} in {self._timeout} s") from None
        finally:
            self._pending.discard(request_id)

    async def _open_socket(self, wait: bool) -> WebSocket:
        while True:
            changed = self._changed
            ws = self._ws
            if self._state == "open" and ws is not None and not ws.closed:
                return ws
            if self._state == "closed":
                raise self._closed_error()
            if not wait:
                raise ClientError(1006, "disconnected", "not connected")
            await changed.wait()

    async def _send(self, ws: WebSocket, op: str, fields: dict[str, Any], pending: Pending) -> int:
        """Send one request whose reply settles ``pending``; returns its id."""
        request_id = self._pending.add(pending)
        try:
            await ws.send_str(orjson.dumps({"id": request_id, "op": op, **fields}).decode())
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            self._pending.discard(request_id)
            raise ClientError(1006, "disconnected", "the connection is closing") from None
        return request_id

    async def _quietly(self, op: str, fields: dict[str, Any]) -> None:
        with contextlib.suppress(ClientError):
            await self._request(op, fields, wait_open=False)

    # ------------------------------------------------------------------ the connection loop

    async def _run(self) -> None:
        try:
            await self._reconnect()
        except ClientError as exc:
            self.error = exc
        finally:
            self._shutdown()
        if not self._closing and self._http is not None:
            await self._http.close()

    async def _reconnect(self) -> None:
        retries = 0  # consecutive failed attempts: the backoff exponent, reset by a welcome
        http = self._http
        if http is None:  # pragma: no cover - connect() opened it
            raise InvalidState("no HTTP session")
        while not self._closing:
            try:
                ws, welcome = await self._dialer.dial(http)
            except Retry as retry:
                last = retry.error
            else:
                retries = 0
                last = await self._serve(ws, welcome)
                if self._closing:
                    return
                if close_action(last.code) == "stop":
                    log.warning("closed by the server with %d: not reconnecting", last.code)
                    raise ClientError(last.code, "closed", last.message)
            self._report(last)
            if self._max_retries is not None and retries >= self._max_retries:
                raise ClientError(last.code, "retries_exhausted", f"after {retries}: {last}")
            if self._ever_open:
                self._set_state("reconnecting")
            delay = backoff_delay(retries, base=self._base, cap=self._cap, rng=self._rng)
            retries += 1
            log.info("reconnecting in %.3f s (%s)", delay, last.reason)
            await self._sleep(delay)

    async def _serve(self, ws: WebSocket, welcome: dict[str, Any]) -> ClientError:
        """Read an open connection until it closes; returns how it closed."""
        self._ws = ws
        self.welcome = welcome
        self._ever_open = True
        self._set_state("open")
        pinger = None
        if self._keepalive is not None:
            pinger = asyncio.get_running_loop().create_task(self._ping_every(self._keepalive))
        reason = ""
        try:
            await self._on_open(ws)
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._dispatch(msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    log.warning("ignored a binary frame")
                else:
                    if msg.type is aiohttp.WSMsgType.CLOSE:
                        reason = str(msg.extra or "")
                    break
        finally:
            if pinger is not None:
                pinger.cancel()
            self._ws = None
        code = ws.close_code or 1006
        dropped = ClientError(code, "disconnected", reason or "the connection dropped")
        self._pending.fail_all(dropped)
        return dropped

    async def _ping_every(self, interval: float) -> None:
        """An ``{"op": "ping"}`` now and then: the server closes quiet connections that
        subscribe to nothing (``limits.idle_timeout``)."""
        while True:
            await asyncio.sleep(interval)
            await self._quietly("ping", {})

    def _dispatch(self, text: str) -> None:
        frame = decode(text)
        if frame is None:
            log.warning("ignored a frame that is not a JSON object")
            return
        push = frame.get("push")
        if push is not None:
            self._on_push(push, frame)
        elif "ok" in frame:
            unanswered = self._pending.reply(frame)
            if unanswered is not None:
                log.warning("error reply to no waiting request: %s", unanswered)
                self._report(unanswered)

    # ------------------------------------------------------------------ state

    def _closed_error(self) -> ClientError:
        return self.error or ClientError(1000, "closed", "the client is closed")

    def _set_state(self, state: State) -> None:
        if state == self._state:
            return
        self._state = state
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for callback in self._on_state:
            call_back(callback, state)

    def _report(self, error: ClientError) -> None:
        for callback in self._on_error:
            call_back(callback, error)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _shutdown(self) -> None:
        self._ws = None
        self._pending.fail_all(self._closed_error())
        self._on_shutdown()
        self._set_state("closed")
