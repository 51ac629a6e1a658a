"""A small ``wsguard.App`` mounted in a Starlette app, for tests/integration/test_app_asgi.py.

Served by uvicorn in a subprocess (``--app-dir tests``): ``support.typed_asgi:app``. The page
origin allowed is ``TYPED_ASGI_ORIGIN``; JWTs are signed with ``JWT_SECRET``.
"""

from __future__ import annotations

import os
from typing import Annotated

import msgspec
import pydantic
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute

from wsguard import App, RpcContext
from wsguard.settings import ChannelConfig, JwtConfig
from wsguard.testing import loopback_settings

SECRET_VALUE = "SECRET-VALUE-leak"


class Line(msgspec.Struct, forbid_unknown_fields=True):
    sku: str
    qty: Annotated[int, msgspec.Meta(ge=1)]


class Order(msgspec.Struct, forbid_unknown_fields=True):
    items: list[Line]


class Receipt(msgspec.Struct):
    order: str
    user: str | None


class Quote(pydantic.BaseModel):
    qty: int = pydantic.Field(ge=1)


class Price(pydantic.BaseModel):
    total: int = pydantic.Field(ge=0)


typed = App(
    loopback_settings(
        origins={"allowed": (os.environ.get("TYPED_ASGI_ORIGIN", "http://127.0.0.1"),)},
        auth={"required": False, "methods": ("jwt",), "jwt": JwtConfig(secret_env="JWT_SECRET")},
        channels=[
            ChannelConfig(pattern="room:*", subscribe=("anonymous",), publish=("anonymous",)),
            ChannelConfig(pattern="user:*", subscribe=("owner",)),
        ],
    )
)


@typed.rpc("orders.place", allow=("authenticated",))
async def place(order: Order, ctx: RpcContext) -> Receipt:
    await ctx.publish(f"user:{ctx.principal.user_id}", {"placed": len(order.items)})
    return Receipt(order=f"o-{order.items[0].sku}", user=ctx.principal.user_id)


@typed.rpc("prices.quote", allow=("anonymous",))
async def quote(request: Quote, ctx: RpcContext) -> Price:
    return Price(total=request.qty * 5)


@typed.rpc("prices.broken", allow=("anonymous",))
async def broken(request: Quote, ctx: RpcContext) -> Price:
    return Price.model_construct(total=-1, secret=SECRET_VALUE)


async def index(request: Request) -> PlainTextResponse:
    return PlainTextResponse("host app")


ws_app = typed.asgi()

app = Starlette(
    routes=[
        Route("/", index),
        WebSocketRoute("/ws", ws_app),
        Mount("/mounted", ws_app),
    ]
)
