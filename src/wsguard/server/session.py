"""Application sessions: the JSON wire protocol (DESIGN.md §6) and the conformance echo.

``ProtocolSession`` runs the message pipeline of DESIGN.md §5 for one connection. The stages
that do not depend on the principal (rate, decode, envelope: ``core.pipeline.MessageGate``) run
as each frame arrives. The rest run in message order, one message at a time: authorization
(``core.authz``, with the principal as it is when the message's turn comes), the data schemas,
then the op itself, which may await the broker or an rpc handler. A refused message gets an
error reply and has no effect; ``limits.max_violations`` refusals within
``limits.violation_window`` seconds close the connection with 4408.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson

from wsguard.brokers.base import HistoryResult, StreamPosition
from wsguard.codes import CloseCode, ReplyCode
from wsguard.core.authz import authorize, grants_allow
from wsguard.core.codec import Violation
from wsguard.core.envelope import (
    Auth,
    Envelope,
    History,
    Ping,
    Presence,
    Publish,
    Refresh,
    Rpc,
    Subscribe,
    Unsubscribe,
)
from wsguard.core.limits import client_key
from wsguard.core.pipeline import MessageGate, ViolationCounter
from wsguard.exceptions import ReplyError
from wsguard.server.authflow import AuthFlow
from wsguard.server.eager import start_eagerly
from wsguard.server.engine import Connection
from wsguard.server.rpc import RpcContext, run_bounded

__all__ = ["EchoSession", "ProtocolSession"]

log = logging.getLogger("wsguard.server")

HISTORY_LIMIT: Final = 100  # a history op without ``limit``
RECOVERY_LIMIT: Final = 10_000  # the most a recovery replays (history_size is capped there)
# Messages waiting for their turn before the connection stops reading (backpressure on a
# client that sends faster than its ops complete, e.g. while the broker is slow).
_QUEUE_PAUSE: Final = 64
_QUEUE_RESUME: Final = 16

_BINARY: Final = Violation(
    ReplyCode.BAD_REQUEST, "binary_unsupported", "messages are JSON text frames"
)
_AUTH_REQUIRED: Final = Violation(ReplyCode.UNAUTHORIZED, "auth_required", "authenticate first")
# Refusals that are the client's doing count towards max_violations; conflicts, application
# errors and the server's own failures do not.
_UNCOUNTED: Final = frozenset({409, 500, 503})
_REPLY_CODES: Final = frozenset(int(code) for code in ReplyCode)


def _reply(msg_id: object, result: Any) -> bytes:
    if msg_id is None:
        return orjson.dumps({"ok": True, "result": result})
    return orjson.dumps({"id": msg_id, "ok": True, "result": result})


def _error(msg_id: object, code: int, reason: str, message: str) -> bytes:
    error = {"code": int(code), "reason": reason, "message": message}
    if msg_id is None:
        return orjson.dumps({"ok": False, "error": error})
    return orjson.dumps({"id": msg_id, "ok": False, "error": error})


class ProtocolSession:
    """Speaks the wsguard wire protocol on one connection."""

    __slots__ = (
        "_closed",
        "_context",
        "_queue",
        "_task",
        "auth",
        "channels",
        "client_id",
        "conn",
        "gate",
        "services",
        "violations",
    )

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.services = services = conn.services
        limits = services.limits
        self.auth = AuthFlow(conn, conn.auth.settings, self._welcome, clock=conn.auth.clock)
        self.gate = MessageGate(limits, services.user_rates)
        # Made at the first refusal (with its deque, about 600 bytes): most connections never
        # have one.
        self.violations: ViolationCounter | None = None
        self.client_id = secrets.token_urlsafe(12)
        # channel -> whether this connection is in its presence.
        self.channels: dict[str, bool] = {}
        self._queue: deque[Envelope | Violation] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # The RpcContext of the current principal, built once per principal, not per call
        # (it is frozen: a handler cannot change what the next call sees).
        self._context: RpcContext | None = None

    # ------------------------------------------------------------------ engine callbacks

    def on_open(self) -> None:
        if self.conn.principal.is_pending:
            return  # welcome after {"op": "auth"} succeeds
        self._welcome()
        self.auth.start()

    def on_text(self, text: str) -> None:
        if self._closed or not self.conn.is_open:
            return
        services = self.services
        services.metrics.message_received()
        size = len(text) if text.isascii() else len(text.encode())
        item = self.gate.admit(text, size, self._user_key(), services.monotonic())
        self._submit(item)

    def on_binary(self, data: bytes) -> None:
        if self._closed or not self.conn.is_open:
            return
        services = self.services
        services.metrics.message_received()
        refused = self.gate.charge(len(data), self._user_key(), services.monotonic())
        self._submit(refused or _BINARY)

    def on_close(self, code: int | None) -> None:
        self._closed = True
        self.auth.cancel()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._queue.clear()
        for channel in list(self.channels):
            self._leave(channel)

    def keeps_alive(self) -> bool:
        # A subscriber may legitimately send nothing for hours: it only listens.
        return bool(self.channels)

    # ------------------------------------------------------------------ ordering

    def _submit(self, item: Envelope | Violation) -> None:
        queue = self._queue
        idle = not queue and self._task is None
        if isinstance(item, Violation):
            if idle:
                self._refuse(item)
                return
            # Counted now (a flood closes at once), answered in its turn.
            self._count(item)
        elif isinstance(item, Ping) and idle and not self.conn.principal.is_pending:
            self.conn.send_text(_reply(item.id, {}))  # the fast path: no task for a ping
            return
        queue.append(item)
        if len(queue) >= _QUEUE_PAUSE:
            self.conn.pause_reading()

    def on_read_end(self) -> None:
        """Run what this read queued: in one task for all of its messages, started eagerly, so
        that ops that do not wait are answered within the read (in its one write) and only an
        op that waits costs a loop pass."""
        if self._task is not None or not self._queue or self._closed:
            return  # a running drain takes what was queued, in order
        task = start_eagerly(self._drain())
        if task is not None and self._closed:
            task.cancel()  # closed during that step, before on_close could see the task
        # The drain may have emptied the queue already (and cleared _task itself).
        self._task = task

    async def _drain(self) -> None:
        queue = self._queue
        conn = self.conn
        try:
            # A connection we are closing (revoked, 4401, 4403) runs nothing it still had queued.
            while queue and not self._closed and conn.is_open:
                item = queue.popleft()
                if len(queue) == _QUEUE_RESUME:
                    conn.resume_reading()
                if isinstance(item, Violation):
                    self._answer(item)
                elif conn.principal.is_pending and not isinstance(item, Auth):
                    # Nothing but authentication until the first message authenticated the
                    # socket.
                    self._refuse(_with_id(_AUTH_REQUIRED, item.id))
                else:
                    # The op runs here rather than in an ``_execute`` coroutine of its own: one
                    # coroutine less to create and await per message.
                    try:
                        await _OPS[type(item)](self, item)
                    except ReplyError as error:
                        self._fail(item.id, error)
                    except ConnectionError:
                        # The shared broker (Redis) is down: the operation did not happen; say so.
                        log.warning("broker unavailable; %s refused", type(item).__name__.lower())
                        self._fail(
                            item.id,
                            ReplyError(
                                ReplyCode.UNAVAILABLE, "unavailable", "the broker is unavailable"
                            ),
                        )
        except Exception:
            # Fail closed: a bug here must not leave the connection half-handled.
            log.exception("session failed; closing the connection with 1011")
            self.conn.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self._task = None
            if not self._closed:
                conn.resume_reading()
            # The batch's replies leave now rather than a loop pass later, when the connection
            # would flush them itself (within a read, the read's end writes them).
            conn.flush_pushes()

    # ------------------------------------------------------------------ refusals

    def _refuse(self, violation: Violation) -> None:
        """Answer a refusal now and count it."""
        self._answer(violation)
        self._count(violation)

    def _answer(self, violation: Violation) -> None:
        self.conn.send_text(
            _error(violation.id, violation.code, violation.reason, violation.message)
        )

    def _count(self, violation: Violation) -> None:
        self.services.metrics.rejected("message", violation.reason)
        self.conn.audit("message_refused", reason=violation.reason, code=int(violation.code))
        if int(violation.code) in _UNCOUNTED or self._closed:
            return
        violations = self.violations
        if violations is None:
            limits = self.services.limits
            violations = self.violations = ViolationCounter(
                limits.max_violations, limits.violation_window
            )
        if violations.add(self.services.monotonic()):
            self._closed = True
            self.conn.audit("violations_exceeded", limit=violations.limit)
            self.conn.close(CloseCode.TOO_MANY_VIOLATIONS, "too many violations")

    def _fail(self, msg_id: int | str | None, error: ReplyError, *, counted: bool = True) -> None:
        code = int(error.code)
        if code not in _REPLY_CODES:
            # An rpc handler's own code outside the protocol's set: the caller learns nothing
            # more than that the call failed.
            log.error("reply code %d is not one of the protocol's; answering 500", code)
            code, error = 500, ReplyError(500, "internal_error", "internal error")
        violation = Violation(ReplyCode(code), error.reason, error.message, msg_id)
        if counted:
            self._refuse(violation)
        else:
            self._answer(violation)

    # ------------------------------------------------------------------ ops

    async def _ping(self, msg: Ping) -> None:
        self.conn.send_text(_reply(msg.id, {}))

    def _authorize(self, msg_id: object, action: str, channel: str) -> bool:
        denied = authorize(self.services.rules, self.conn.principal, action, channel)  # type: ignore[arg-type]
        if denied is None:
            return True
        message = {
            400: "invalid channel name",
            404: "no such channel",
            403: f"not allowed to {action} on this channel",
        }[denied.code]
        self._refuse(Violation(ReplyCode(denied.code), denied.reason, message, msg_id))  # type: ignore[arg-type]
        return False

    async def _publish(self, msg: Publish) -> None:
        if not self._authorize(msg.id, "publish", msg.channel):
            return
        services = self.services
        rule = services.rules.match(msg.channel)
        assert rule is not None  # noqa: S101 - authorize() found it
        publication = await services.publish(rule, msg.channel, msg.data)
        self.conn.send_text(
            _reply(msg.id, {"epoch": publication.epoch, "offset": publication.offset})
        )

    async def _subscribe(self, msg: Subscribe) -> None:
        channel = msg.channel
        if not self._authorize(msg.id, "subscribe", channel):
            return
        if channel in self.channels:
            raise ReplyError(ReplyCode.CONFLICT, "already_subscribed", "already subscribed")
        services = self.services
        if len(self.channels) >= services.limits.max_channels_per_connection:
            raise ReplyError(
                ReplyCode.TOO_MANY_REQUESTS,
                "too_many_channels",
                "limits.max_channels_per_connection reached",
            )
        rule = services.rules.match(channel)
        assert rule is not None  # noqa: S101 - authorize() found it
        present = bool(rule.presence)
        self.channels[channel] = present
        hub, broker, conn = services.hub, services.broker, self.conn
        since = msg.since
        # Join held, wait until the broker delivers here, then read the position: whatever is
        # published meanwhile is held and deduplicated by offset, never lost nor doubled.
        hub.join(channel, conn, hold=True)
        try:
            await hub.ready(channel)
            if since is None:
                result = await broker.history(channel, since=None, limit=0)
            else:
                result = await broker.history(
                    channel, since=StreamPosition(since.epoch, since.offset), limit=RECOVERY_LIMIT
                )
                if not result.complete and result.position.epoch != since.epoch:
                    # The stream restarted (another epoch): the client lost what it missed in
                    # the old one, and gets everything the new one still holds.
                    fresh = await broker.history(channel, since=None, limit=RECOVERY_LIMIT)
                    result = HistoryResult(fresh.publications, False, fresh.position)
        except ConnectionError:
            if channel in self.channels:
                self._leave(channel)
            raise ReplyError(
                ReplyCode.UNAVAILABLE, "unavailable", "the broker is unavailable"
            ) from None
        if self._closed or channel not in self.channels:
            return
        position = result.position
        conn.send_text(_reply(msg.id, {"epoch": position.epoch, "offset": position.offset}))
        last = position.offset
        if since is not None:
            last = since.offset if result.complete else 0
            for publication in result.publications:
                hub.send(conn, publication)
                last = publication.offset
            complete = result.complete and last >= position.offset
            recovered = {
                "push": "recovered",
                "channel": channel,
                "complete": complete,
                "epoch": position.epoch,
                "offset": last,
            }
            conn.send_text(orjson.dumps(recovered))
        hub.release(channel, conn, position.epoch, last)
        if present:
            try:
                await broker.presence_add(channel, self.client_id, {"user": conn.principal.user_id})
                if self._closed or channel not in self.channels:
                    await broker.presence_remove(channel, self.client_id)
            except ConnectionError:
                # The subscription stands (already answered); a broker that keeps its own
                # presence entries (Redis) adds this one when it is back.
                log.warning("broker unavailable; presence of %s not recorded", channel)

    async def _unsubscribe(self, msg: Unsubscribe) -> None:
        if msg.channel not in self.channels:
            raise ReplyError(ReplyCode.CONFLICT, "not_subscribed", "not subscribed")
        self._leave(msg.channel)
        self.conn.send_text(_reply(msg.id, {}))

    def _leave(self, channel: str) -> None:
        present = self.channels.pop(channel, False)
        services = self.services
        services.hub.leave(channel, self.conn)
        if present:
            services.spawn(services.broker.presence_remove(channel, self.client_id))

    async def _history(self, msg: History) -> None:
        if not self._authorize(msg.id, "history", msg.channel):
            return
        since = msg.since
        result = await self.services.broker.history(
            msg.channel,
            since=None if since is None else StreamPosition(since.epoch, since.offset),
            limit=msg.limit or HISTORY_LIMIT,
        )
        publications = [
            {"offset": p.offset, "data": orjson.Fragment(p.data)} for p in result.publications
        ]
        self.conn.send_text(
            _reply(
                msg.id,
                {
                    "publications": publications,
                    "epoch": result.position.epoch,
                    "offset": result.position.offset,
                    "complete": result.complete,
                },
            )
        )

    async def _presence(self, msg: Presence) -> None:
        if not self._authorize(msg.id, "presence", msg.channel):
            return
        clients = await self.services.broker.presence(msg.channel)
        self.conn.send_text(_reply(msg.id, {"clients": clients}))

    async def _rpc(self, msg: Rpc) -> None:
        services = self.services
        method = services.rpc.get(msg.method)
        principal = self.conn.principal
        if method is None:
            self._refuse(Violation(ReplyCode.NOT_FOUND, "unknown_method", "unknown method", msg.id))
            return
        if not grants_allow(method.allow, principal, ""):
            self._refuse(
                Violation(ReplyCode.FORBIDDEN, "forbidden", "not allowed to call it", msg.id)
            )
            return
        if method.schema is not None:
            violation = method.schema.check(msg.data, "data")
            if violation is not None:
                self._refuse(_with_id(violation, msg.id))
                return
        data = msg.data
        converter = method.converter
        if converter is not None:
            try:
                data = converter.load(data)
            except ValueError as exc:
                self._refuse(Violation(ReplyCode.UNPROCESSABLE, "invalid_data", str(exc), msg.id))
                return
        context = self._context
        if context is None or context.principal is not principal:
            context = self._context = RpcContext(principal, self.client_id, self._publish_as_server)
        try:
            result = await run_bounded(method.handler(context, data), services.limits.rpc_timeout)
        except ReplyError as error:
            # The handler's own answer, not the client breaking the protocol: not counted.
            self._fail(msg.id, error, counted=False)
            return
        except TimeoutError:
            raise ReplyError(ReplyCode.UNAVAILABLE, "timeout", "the method timed out") from None
        except Exception:
            log.exception("rpc %s failed", method.name)
            raise ReplyError(ReplyCode.INTERNAL_ERROR, "internal_error", "internal error") from None
        if method.output_schema is not None:
            violation = method.output_schema.check(result, "result")
            if violation is not None:
                log.error("rpc %s returned data its output schema refuses", method.name)
                raise ReplyError(ReplyCode.INTERNAL_ERROR, "bad_output", "internal error")
        if converter is not None:
            try:
                result = converter.dump(result)
            except ValueError as exc:
                # The converter's text names a path and a rule, never the value.
                log.error("rpc %s returned data its output model refuses: %s", method.name, exc)
                raise ReplyError(ReplyCode.INTERNAL_ERROR, "bad_output", "internal error") from None
        try:
            reply = _reply(msg.id, result)
        except TypeError:
            log.exception("rpc %s returned data that is not JSON", method.name)
            raise ReplyError(ReplyCode.INTERNAL_ERROR, "bad_output", "internal error") from None
        self.conn.send_text(reply)

    async def _publish_as_server(self, channel: str, data: Any) -> Any:
        services = self.services
        return await services.publish(services.rule(channel), channel, data, trusted=True)

    async def _auth(self, msg: Auth) -> None:
        if not self.conn.principal.is_pending:
            raise ReplyError(ReplyCode.CONFLICT, "already_authenticated", "use refresh")
        await self.auth.run(msg.id, _credential(msg), refresh=False)

    async def _refresh(self, msg: Refresh) -> None:
        if self.conn.principal.is_anonymous:
            raise ReplyError(ReplyCode.CONFLICT, "nothing_to_refresh", "not authenticated")
        if await self.auth.run(msg.id, _credential(msg), refresh=True):
            self._recheck()

    def _recheck(self) -> None:
        """Drop the subscriptions the refreshed principal may no longer hold."""
        services, principal = self.services, self.conn.principal
        for channel in list(self.channels):
            if authorize(services.rules, principal, "subscribe", channel) is not None:
                self._leave(channel)
                self.conn.audit("subscription_revoked", channel=channel)
                push = {"push": "unsubscribed", "channel": channel, "reason": "forbidden"}
                self.conn.send_text(orjson.dumps(push))

    # ------------------------------------------------------------------ helpers

    def _welcome(self) -> None:
        principal = self.conn.principal
        welcome = {
            "push": "welcome",
            "server": "wsguard",
            "protocol": 1,
            "user": principal.user_id,
            "auth": principal.method,
            "client": self.client_id,
        }
        self.conn.send_text(orjson.dumps(welcome))

    def _user_key(self) -> str:
        user_id = self.conn.principal.user_id
        if user_id is not None:
            return user_id
        return "ip:" + client_key(self.conn.client_ip)


# One handler per op (the envelope's classes); every one is awaited in message order.
_OPS: Final[dict[type[Envelope], Callable[[ProtocolSession, Any], Awaitable[None]]]] = {
    Ping: ProtocolSession._ping,
    Publish: ProtocolSession._publish,
    Subscribe: ProtocolSession._subscribe,
    Unsubscribe: ProtocolSession._unsubscribe,
    History: ProtocolSession._history,
    Presence: ProtocolSession._presence,
    Rpc: ProtocolSession._rpc,
    Auth: ProtocolSession._auth,
    Refresh: ProtocolSession._refresh,
}


def _with_id(violation: Violation, msg_id: int | str | None) -> Violation:
    return Violation(violation.code, violation.reason, violation.message, msg_id)


def _credential(msg: Auth | Refresh) -> dict[str, str]:
    return {"token": msg.token} if msg.token is not None else {"ticket": msg.ticket or ""}


class EchoSession:
    """Echoes every data message back unchanged (``server.echo``: conformance and benchmarks)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def on_open(self) -> None:
        pass

    def on_text(self, text: str) -> None:
        self.conn.send_text(text.encode())

    def on_binary(self, data: bytes) -> None:
        self.conn.send_binary(data)

    def on_read_end(self) -> None:
        pass

    def on_close(self, code: int | None) -> None:
        pass

    def keeps_alive(self) -> bool:
        return True
