"""Remote procedure calls: ``{"op": "rpc", "method": ..., "data": ...}`` to Python handlers.

A handler is registered with the grants that may call it and, optionally, JSON Schemas for its
input and its output::

    @server.rpc("orders.place", allow=("role:trader",), schema=ORDER, output_schema=RECEIPT)
    async def place(ctx: RpcContext, data: Any) -> Any:
        ...

The session checks, in order: the method exists (404 ``unknown_method``), a grant admits the
caller (403 ``forbidden``), the input schema (422 ``invalid_data``); it then awaits the handler
for at most ``limits.rpc_timeout`` seconds (503 ``timeout``) and checks the output schema
(500 ``bad_output``, logged, nothing sent). A handler raises ``ReplyError`` for an error reply
of its own; any other exception is a 500 ``internal_error`` whose details go to the log only.

A method may also carry a ``converter`` (``wsguard.App`` builds one from msgspec or pydantic
models): its ``load`` turns the request's data into what the handler takes, after the JSON
Schema, refusing it with 422 ``invalid_data`` like a schema would; its ``dump`` turns the
handler's return value into the reply's JSON result, or refuses it as 500 ``bad_output``.
"""

from __future__ import annotations

import asyncio
import re
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from wsguard.core.decisions import Principal
from wsguard.core.schema import Schema

if TYPE_CHECKING:
    from wsguard.brokers.base import Publication

__all__ = [
    "RpcContext",
    "RpcConverter",
    "RpcHandler",
    "RpcMethod",
    "RpcRegistry",
    "run_bounded",
]

_METHOD: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}", re.ASCII)  # as the envelope accepts
# Channel grants that name a channel ("owner", "claim") mean nothing for a method.
_GRANT: Final = re.compile(r"anonymous|authenticated|role:[A-Za-z0-9_.:-]{1,64}", re.ASCII)


@dataclass(frozen=True, slots=True)
class RpcContext:
    """What a handler knows about its caller, and what it may do.

    Attributes:
        principal: the caller, as authenticated (never from the message).
        client_id: the caller's connection id (as in presence).
        publish: publish to a channel as the server (schemas and encoding apply, grants do
            not: the handler decides).
    """

    principal: Principal
    client_id: str
    publish: Callable[[str, Any], Awaitable[Publication]]


RpcHandler = Callable[[RpcContext, Any], Awaitable[Any]]


class _Started:
    """A coroutine whose first step already ran, awaitable to finish it (as ``yield from``)."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self._coro, self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation and timeouts go to the handler
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as done:
                    return done.value


async def run_bounded(result: Awaitable[Any], within: float) -> Any:
    """Await a handler's result in the calling task, for at most ``within`` seconds.

    A coroutine runs its first step at once: a handler that finishes without waiting (one
    that only computes) costs no task and no timer. One that waits finishes under
    ``asyncio.timeout``, with the time counted from its first wait. (``asyncio.wait_for``
    would wrap every call in a new task, the largest per-message cost on the rpc path.)

    Raises:
        TimeoutError: when it waits longer than ``within``.
    """
    if isinstance(result, types.CoroutineType):
        try:
            first = result.send(None)
        except StopIteration as done:
            return done.value
        result = _Started(result, first)
    async with asyncio.timeout(within):
        return await result


class RpcConverter(Protocol):
    """Typed input and output of one method (``wsguard.model`` implements it).

    Both raise ``ValueError`` whose text is safe to show the caller: a path and a rule, such as
    ``data.items[0].qty: Expected int, got str``, never the offending value.
    """

    def load(self, data: Any) -> Any:
        """The handler's argument from the request's decoded ``data``."""
        ...

    def dump(self, result: Any) -> Any:
        """The reply's JSON-ready ``result`` from the handler's return value."""
        ...


@dataclass(frozen=True, slots=True)
class RpcMethod:
    name: str
    handler: RpcHandler
    allow: tuple[str, ...]
    schema: Schema | None
    output_schema: Schema | None
    converter: RpcConverter | None = None


class RpcRegistry:
    """The methods of one server."""

    __slots__ = ("_methods",)

    def __init__(self) -> None:
        self._methods: dict[str, RpcMethod] = {}

    def get(self, name: str) -> RpcMethod | None:
        return self._methods.get(name)

    def register(
        self,
        name: str,
        handler: RpcHandler,
        *,
        allow: Sequence[str] = ("authenticated",),
        schema: Mapping[str, Any] | None = None,
        output_schema: Mapping[str, Any] | None = None,
        converter: RpcConverter | None = None,
    ) -> RpcMethod:
        """Add a method.

        Raises:
            ValueError: a bad name, a grant that means nothing for a method, a name already
                taken, or a schema that does not compile.
        """
        if not _METHOD.fullmatch(name):
            raise ValueError(f"rpc method names are 1-128 characters of [A-Za-z0-9_.:-]: {name!r}")
        if name in self._methods:
            raise ValueError(f"rpc method {name!r} is already registered")
        if isinstance(allow, str):
            raise ValueError("allow is a list of grants, e.g. allow=('authenticated',)")
        for grant in allow:
            if not _GRANT.fullmatch(grant):
                raise ValueError(f"rpc grant {grant!r}: use anonymous, authenticated or role:NAME")
        method = RpcMethod(
            name,
            handler,
            tuple(allow),
            None if schema is None else Schema.compile(schema),
            None if output_schema is None else Schema.compile(output_schema),
            converter,
        )
        self._methods[name] = method
        return method
