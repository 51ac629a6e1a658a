"""A wsguard.App with two typed rpc methods: one msgspec model, one pydantic model.

Run it (from the repository root, with msgspec and pydantic installed:
``pip install 'wsguard[typed]'``)::

    python examples/typed_app/app.py

It serves ws://127.0.0.1:8080/ws with examples/typed_app/wsguard.toml (``WSGUARD_SERVER_PORT=0``
picks a free port; the chosen one is printed). Try it with the websockets client::

    python -m websockets --origin http://127.0.0.1:8080 ws://127.0.0.1:8080/ws
    {"id": 1, "op": "rpc", "method": "prices.quote", "data": {"sku": "A-1", "qty": 3}}
    {"id": 2, "op": "rpc", "method": "prices.quote", "data": {"sku": "A-1", "qty": "3"}}

The second gets ``422 invalid_data`` with ``data.qty: Input should be a valid integer``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import pydantic

import wsguard

app = wsguard.App(Path(__file__).with_name("wsguard.toml"))

PRICES = {"A-1": 250, "B-2": 1_000}  # cents; your catalogue here


# ---------------------------------------------------------------- pydantic: prices.quote


class QuoteRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    sku: str = pydantic.Field(pattern=r"^[A-Z0-9-]{1,32}$")
    qty: int = pydantic.Field(ge=1, le=100)


class Quote(pydantic.BaseModel):
    sku: str
    qty: int
    total_cents: int = pydantic.Field(ge=0)


@app.rpc("prices.quote", allow=("anonymous",))
async def quote(request: QuoteRequest, ctx: wsguard.RpcContext) -> Quote:
    unit = PRICES.get(request.sku)
    if unit is None:
        raise wsguard.ReplyError(404, "unknown_sku", "no such item")
    return Quote(sku=request.sku, qty=request.qty, total_cents=unit * request.qty)


# ---------------------------------------------------------------- msgspec: orders.place


class Line(msgspec.Struct, forbid_unknown_fields=True):
    sku: Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9-]{1,32}$")]
    qty: Annotated[int, msgspec.Meta(ge=1, le=100)]


class Order(msgspec.Struct, forbid_unknown_fields=True):
    lines: Annotated[list[Line], msgspec.Meta(min_length=1, max_length=20)]
    side: Literal["buy", "sell"] = "buy"


class Receipt(msgspec.Struct):
    order: str
    lines: int


@app.rpc("orders.place", allow=("authenticated",))
async def place(order: Order, ctx: wsguard.RpcContext) -> Receipt:
    user = ctx.principal.user_id  # from the credential, never from the data
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    await ctx.publish(f"user:{user}", {"event": "order_placed", "order": order_id})
    return Receipt(order=order_id, lines=len(order.lines))


if __name__ == "__main__":
    raise SystemExit(app.run())
