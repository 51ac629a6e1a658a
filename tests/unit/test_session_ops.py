"""ProtocolSession on a fake connection: the order of checks and replies of queued ops, and the
rpc context handed to handlers (built once per principal, rebuilt when the principal changes)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from wsguard.brokers.memory import MemoryBroker
from wsguard.core.decisions import PENDING, Principal
from wsguard.exceptions import ReplyError
from wsguard.metrics import Metrics
from wsguard.server.rpc import RpcContext
from wsguard.server.services import Services
from wsguard.server.session import ProtocolSession
from wsguard.settings import ChannelConfig
from wsguard.testing import loopback_settings

ALICE = Principal(user_id="alice", method="jwt")
BOB = Principal(user_id="bob", method="jwt")


class DownBroker(MemoryBroker):
    """A broker whose history fails as a Redis connection loss does."""

    async def history(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("down")


class BrokenConverter:
    """A converter with a bug (not a ValueError: not the caller's data at fault)."""

    def load(self, data: Any) -> Any:
        raise RuntimeError("bug")

    def dump(self, result: Any) -> Any:
        return result


class FakeAuth:
    settings = loopback_settings().auth
    clock = staticmethod(time.time)


class FakeConn:
    def __init__(self, services: Services, principal: Principal) -> None:
        self.services = services
        self.principal = principal
        self.is_open = True
        self.auth = FakeAuth()
        self.client_ip = "127.0.0.1"
        self.origin = None
        self.sent: list[dict[str, Any]] = []
        self.audits: list[tuple[str, dict[str, object]]] = []
        self.closed: tuple[int, str] | None = None

    def send_text(self, data: bytes) -> None:
        self.sent.append(orjson.loads(data))

    def flush_pushes(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def audit(self, event: str, **fields: object) -> None:
        self.audits.append((event, fields))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.is_open = False


def session(principal: Principal = ALICE, broker: MemoryBroker | None = None) -> FakeConn:
    settings = loopback_settings(
        channels=[ChannelConfig(pattern="chat:*", history=("authenticated",))]
    )
    services = Services(settings, MemoryBroker() if broker is None else broker, Metrics())
    conn = FakeConn(services, principal)
    conn.session = ProtocolSession(conn)  # type: ignore[attr-defined]
    return conn


def from_a_read(conn: FakeConn, *messages: dict[str, Any]) -> asyncio.Future[list[dict[str, Any]]]:
    """Deliver messages from a loop callback, as a read does; the replies sent by the time the
    callback returned (before any other loop pass)."""
    loop = asyncio.get_running_loop()
    replies: asyncio.Future[list[dict[str, Any]]] = loop.create_future()

    def read() -> None:
        before = len(conn.sent)
        for message in messages:
            conn.session.on_text(orjson.dumps(message).decode())  # type: ignore[attr-defined]
        conn.session.on_read_end()  # type: ignore[attr-defined]
        replies.set_result(conn.sent[before:])

    loop.call_soon(read)
    return replies


async def send(conn: FakeConn, *messages: dict[str, Any]) -> list[dict[str, Any]]:
    """Deliver messages as one read delivers them, let the session drain, return the replies."""
    before = len(conn.sent)
    await from_a_read(conn, *messages)
    for _ in range(5):
        await asyncio.sleep(0)
    return conn.sent[before:]


async def test_rpc_context_is_built_per_principal_and_follows_a_new_one() -> None:
    conn = session()
    seen: list[RpcContext] = []

    async def who(ctx: RpcContext, data: Any) -> Any:
        seen.append(ctx)
        return ctx.principal.user_id

    conn.services.rpc.register("who", who)
    replies = await send(conn, *({"id": i, "op": "rpc", "method": "who"} for i in range(3)))
    assert replies == [{"id": i, "ok": True, "result": "alice"} for i in range(3)]
    assert seen[0] is seen[1] is seen[2]  # frozen, so sharing it is safe

    conn.principal = BOB  # a refresh bound another principal
    assert await send(conn, {"id": 9, "op": "rpc", "method": "who"}) == [
        {"id": 9, "ok": True, "result": "bob"}
    ]
    assert seen[-1].principal is BOB
    assert seen[-1].client_id == seen[0].client_id


async def test_queued_ops_of_a_pending_connection_are_refused_401() -> None:
    conn = session(PENDING)

    async def echo(ctx: RpcContext, data: Any) -> Any:
        return data

    conn.services.rpc.register("echo", echo)
    replies = await send(conn, {"id": 1, "op": "rpc", "method": "echo"}, {"id": 2, "op": "ping"})
    assert [(r["id"], r["error"]["code"], r["error"]["reason"]) for r in replies] == [
        (1, 401, "auth_required"),
        (2, 401, "auth_required"),
    ]
    assert [event for event, _ in conn.audits] == ["message_refused"] * 2


async def test_an_op_failing_with_a_reply_error_is_answered_in_its_turn() -> None:
    conn = session()

    async def refuse(ctx: RpcContext, data: Any) -> Any:
        raise ReplyError(409, "taken", "already taken")

    conn.services.rpc.register("refuse", refuse)
    replies = await send(
        conn,
        {"id": 1, "op": "rpc", "method": "refuse"},
        {"id": 2, "op": "rpc", "method": "nope"},
        {"id": 3, "op": "ping"},
    )
    assert replies == [
        {
            "id": 1,
            "ok": False,
            "error": {"code": 409, "reason": "taken", "message": "already taken"},
        },
        {
            "id": 2,
            "ok": False,
            "error": {"code": 404, "reason": "unknown_method", "message": "unknown method"},
        },
        {"id": 3, "ok": True, "result": {}},
    ]
    # The handler's own error is not the client's fault: only the unknown method is audited.
    assert [fields["reason"] for _, fields in conn.audits] == ["unknown_method"]


async def test_a_broker_down_during_an_op_is_503_and_the_next_op_runs() -> None:
    conn = session(broker=DownBroker())
    replies = await send(
        conn,
        {"id": 1, "op": "history", "channel": "chat:a"},
        {"id": 2, "op": "ping"},
    )
    assert replies == [
        {
            "id": 1,
            "ok": False,
            "error": {
                "code": 503,
                "reason": "unavailable",
                "message": "the broker is unavailable",
            },
        },
        {"id": 2, "ok": True, "result": {}},
    ]
    assert conn.closed is None


async def test_a_bug_in_an_op_closes_with_1011() -> None:
    conn = session()

    async def echo(ctx: RpcContext, data: Any) -> Any:
        return data

    conn.services.rpc.register("boom", echo, converter=BrokenConverter())
    await send(conn, {"id": 1, "op": "rpc", "method": "boom"}, {"id": 2, "op": "ping"})
    assert conn.closed == (1011, "internal error")


async def test_ops_that_do_not_wait_are_answered_within_the_read() -> None:
    conn = session()

    async def echo(ctx: RpcContext, data: Any) -> Any:
        return data

    conn.services.rpc.register("echo", echo)
    replies = await from_a_read(
        conn,
        {"id": 1, "op": "rpc", "method": "echo", "data": "a"},
        {"id": 2, "op": "rpc", "method": "nope"},
        {"id": 3, "op": "rpc", "method": "echo", "data": "b"},
    )
    assert [(r["id"], r["ok"]) for r in replies] == [(1, True), (2, False), (3, True)]


async def test_an_op_that_waits_is_answered_later_and_the_ops_behind_it_in_order() -> None:
    conn = session()
    release = asyncio.Event()

    async def slow(ctx: RpcContext, data: Any) -> Any:
        await release.wait()
        return "slow"

    conn.services.rpc.register("slow", slow)
    first = await from_a_read(
        conn, {"id": 1, "op": "rpc", "method": "slow"}, {"id": 2, "op": "ping"}
    )
    assert first == []
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert conn.sent == [
        {"id": 1, "ok": True, "result": "slow"},
        {"id": 2, "ok": True, "result": {}},
    ]


async def test_a_connection_lost_during_the_first_step_cancels_the_op_that_waits() -> None:
    conn = session()
    events: list[str] = []

    async def loses(ctx: RpcContext, data: Any) -> Any:
        conn.session.on_close(None)  # type: ignore[attr-defined]  # the connection went away
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    conn.services.rpc.register("loses", loses)
    assert await from_a_read(conn, {"id": 1, "op": "rpc", "method": "loses"}) == []
    for _ in range(5):
        await asyncio.sleep(0)
    assert events == ["cancelled"]
    assert conn.sent == []
