"""wsguard.App end to end: typed rpc (msgspec and pydantic) on a real loopback server."""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

import jwt
import msgspec
import orjson
import pydantic
import pytest
from websockets.asyncio.client import ClientConnection, connect

from support.wsclient import Client
from wsguard import App, RpcContext
from wsguard.exceptions import InvalidState
from wsguard.settings import ChannelConfig, JwtConfig
from wsguard.testing import loopback_settings

pytestmark = pytest.mark.integration

JWT_SECRET = "t" * 48
ROOT = Path(__file__).resolve().parents[2]
SECRET_VALUE = "SECRET-VALUE-leak"


class MLine(msgspec.Struct, forbid_unknown_fields=True):
    sku: str
    qty: Annotated[int, msgspec.Meta(ge=1)]


class MOrder(msgspec.Struct, forbid_unknown_fields=True):
    items: list[MLine]


class MReceipt(msgspec.Struct):
    order: str
    count: int


class PLine(pydantic.BaseModel):
    sku: str
    qty: int = pydantic.Field(ge=1)


class PQuote(pydantic.BaseModel):
    items: list[PLine]


class PPrice(pydantic.BaseModel):
    total: int = pydantic.Field(ge=0)
    currency: str


def token(sub: str) -> str:
    now = time.time()
    return jwt.encode({"sub": sub, "exp": now + 300, "iat": now}, JWT_SECRET, algorithm="HS256")


def build_app() -> App:
    app = App(
        loopback_settings(
            auth={
                "required": False,
                "methods": ("jwt",),
                "jwt": JwtConfig(secret_env="JWT_SECRET"),
            },
            channels=[ChannelConfig(pattern="user:*", subscribe=("owner",))],
        )
    )

    @app.rpc("orders.place", allow=("authenticated",))
    async def place(order: MOrder, ctx: RpcContext) -> MReceipt:
        await ctx.publish(f"user:{ctx.principal.user_id}", {"placed": len(order.items)})
        return MReceipt(order=f"o-{order.items[0].sku}", count=len(order.items))

    @app.rpc("prices.quote", allow=("anonymous",))
    async def quote(request: PQuote, ctx: RpcContext) -> PPrice:
        return PPrice(total=sum(line.qty for line in request.items) * 5, currency="EUR")

    @app.rpc("orders.broken", schema=MOrder, output=MReceipt, allow=("anonymous",))
    async def broken(order: Any, ctx: RpcContext) -> Any:
        return {"order": SECRET_VALUE, "count": SECRET_VALUE}

    @app.rpc("prices.broken", allow=("anonymous",))
    async def broken_price(request: PQuote, ctx: RpcContext) -> PPrice:
        return PPrice.model_construct(total=-1, currency=SECRET_VALUE)

    return app


Open = Callable[..., Any]


@pytest.fixture
async def served() -> AsyncIterator[tuple[App, Open]]:
    app = build_app()
    opened: list[ClientConnection] = []
    async with app.serving(env={"JWT_SECRET": JWT_SECRET}) as server:

        async def open_client(bearer: str | None = None) -> Client:
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
            ws = await connect(
                f"ws://127.0.0.1:{server.port}/ws",
                origin=f"http://127.0.0.1:{server.port}",  # type: ignore[arg-type]
                additional_headers=headers,
                open_timeout=5,
            )
            opened.append(ws)
            client = Client(ws)
            client.welcome = await client.recv()
            assert client.welcome["push"] == "welcome"
            return client

        try:
            yield app, open_client
        finally:
            for ws in opened:
                await ws.close()


async def test_valid_input_gets_the_encoded_output_of_both_libraries(served):
    app, open_client = served
    alice = await open_client(token("alice"))
    await alice.call("subscribe", channel="user:alice")
    order = {"items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}]}
    reply = await alice.call("rpc", method="orders.place", data=order)
    assert reply == {"id": alice.next_id, "ok": True, "result": {"order": "o-A-1", "count": 2}}
    push = await alice.recv()
    assert push["data"] == {"placed": 2}
    reply = await alice.call("rpc", method="prices.quote", data=order)
    assert reply["result"] == {"total": 15, "currency": "EUR"}
    # app.publish reaches subscribers while serving.
    await app.publish("user:alice", {"hello": 1})
    assert (await alice.recv())["data"] == {"hello": 1}


@pytest.mark.parametrize(
    ("method", "data", "message"),
    [
        (
            "orders.place",
            {"items": [{"sku": "A", "qty": "2"}]},
            "data.items[0].qty: Expected int, got str",
        ),
        (
            "orders.place",
            {"items": [{"sku": "A", "qty": 0}]},
            "data.items[0].qty: Expected int >= 1",
        ),
        (
            "orders.place",
            {"items": [{"sku": "A", "qty": 1, SECRET_VALUE: 1}]},
            "data.items[0]: Object contains unknown field ?",
        ),
        (
            "prices.quote",
            {"items": [{"sku": "A", "qty": "2"}]},
            "data.items[0].qty: Input should be a valid integer",
        ),
        (
            "prices.quote",
            {"items": [{"sku": "A", "qty": 0}]},
            "data.items[0].qty: Input should be greater than or equal to 1",
        ),
        ("prices.quote", {"items": [{"qty": 1}]}, "data.items[0].sku: Field required"),
    ],
)
async def test_invalid_input_is_422_with_the_field_path(served, method, data, message):
    _, open_client = served
    client = await open_client(token("alice"))
    reply = await client.call("rpc", method=method, data=data)
    assert reply["error"] == {"code": 422, "reason": "invalid_data", "message": message}
    assert SECRET_VALUE not in orjson.dumps(reply).decode()


async def test_invalid_input_counts_towards_max_violations(served):
    _, open_client = served
    client = await open_client()
    bad = {"items": [{"sku": "A", "qty": "x"}]}
    for _ in range(5):  # limits.max_violations defaults to 5
        reply = await client.call("rpc", method="prices.quote", data=bad)
        assert reply["error"]["code"] == 422
    with pytest.raises(Exception, match="4408"):
        await client.call("ping")


@pytest.mark.parametrize(
    ("method", "data"),
    [
        ("orders.broken", {"items": [{"sku": "A", "qty": 1}]}),
        ("prices.broken", {"items": [{"sku": "A", "qty": 1}]}),
    ],
)
async def test_output_violating_its_model_is_500_logged_and_never_sent(
    served, caplog, method, data
):
    _, open_client = served
    client = await open_client()
    with caplog.at_level(logging.ERROR, logger="wsguard.server"):
        reply = await client.call("rpc", method=method, data=data)
    assert reply["error"] == {"code": 500, "reason": "bad_output", "message": "internal error"}
    assert SECRET_VALUE not in orjson.dumps(reply).decode()
    records = [r for r in caplog.records if r.levelno == logging.ERROR and method in r.getMessage()]
    assert len(records) == 1, caplog.records
    assert records[0].getMessage().startswith(f"rpc {method} returned data its output model")
    assert SECRET_VALUE not in records[0].getMessage()
    await client.quiet()  # the connection stays open and usable


async def test_grants_are_enforced_for_typed_methods(served):
    _, open_client = served
    anonymous = await open_client()
    reply = await anonymous.call(
        "rpc", method="orders.place", data={"items": [{"sku": "A", "qty": 1}]}
    )
    assert reply["error"]["code"] == 403
    assert reply["error"]["reason"] == "forbidden"
    # Grants are checked before the data: an anonymous caller learns nothing of the model.
    reply = await anonymous.call("rpc", method="orders.place", data={"items": "x"})
    assert reply["error"]["code"] == 403


async def test_publish_outside_serving_and_serving_twice_are_refused():
    app = build_app()
    with pytest.raises(InvalidState):
        await app.publish("user:alice", {})
    async with app.serving(env={"JWT_SECRET": JWT_SECRET}):
        with pytest.raises(InvalidState):
            async with app.serving():
                pass
    with pytest.raises(InvalidState):
        await app.publish("user:alice", {})


def test_registration_refuses_unchecked_annotations_and_non_models() -> None:
    app = build_app()
    with pytest.raises(ValueError, match="already registered"):

        @app.rpc("prices.quote", allow=("anonymous",))
        async def again(request: PQuote, ctx: RpcContext) -> PPrice:
            raise NotImplementedError

    with pytest.raises(TypeError, match="output=None"):

        @app.rpc("a.dict")
        async def plain(data: Any, ctx: RpcContext) -> dict[str, Any]:
            return {}

    with pytest.raises(TypeError, match="schema="):

        @app.rpc("a.dict2", schema=dict)
        async def plain2(data: Any, ctx: RpcContext) -> None:
            return None

    with pytest.raises(TypeError, match="async def"):
        app.rpc("a.sync")(lambda data, ctx: None)


def test_the_example_app_starts_with_its_one_command_and_answers_an_rpc(tmp_path: Path) -> None:
    import asyncio

    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "typed_app" / "app.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "WSGUARD_SERVER_PORT": "0"},
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], 20)
        assert readable, "the example did not start within 20 s"
        line = proc.stdout.readline().decode()
        assert line.startswith("wsguard listening on port "), line
        port = int(line.rsplit(" ", 1)[1])

        async def one_rpc() -> dict[str, Any]:
            async with connect(
                f"ws://127.0.0.1:{port}/ws",
                origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
                open_timeout=5,
            ) as ws:
                client = Client(ws)
                assert (await client.recv())["push"] == "welcome"
                ok = await client.call("rpc", method="prices.quote", data={"sku": "A-1", "qty": 3})
                bad = await client.call(
                    "rpc", method="prices.quote", data={"sku": "A-1", "qty": "3"}
                )
                return {"ok": ok, "bad": bad}

        replies = asyncio.run(asyncio.wait_for(one_rpc(), 10))
        assert replies["ok"]["result"] == {"sku": "A-1", "qty": 3, "total_cents": 750}
        assert replies["bad"]["error"] == {
            "code": 422,
            "reason": "invalid_data",
            "message": "data.qty: Input should be a valid integer",
        }
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
