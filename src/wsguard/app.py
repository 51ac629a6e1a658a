"""``wsguard.App``: the library face (DESIGN.md §1) with typed rpc handlers.

::

    import msgspec
    import wsguard

    app = wsguard.App("wsguard.toml")

    class Order(msgspec.Struct):
        sku: str
        qty: int

    class Receipt(msgspec.Struct):
        order: str

    @app.rpc("orders.place", allow=("authenticated",))
    async def place(order: Order, ctx: wsguard.RpcContext) -> Receipt:
        return Receipt(order=f"o-{order.sku}")

    app.run()

A handler takes the request's data as its model (a msgspec ``Struct`` or a pydantic
``BaseModel``, from ``schema=`` or the first parameter's annotation) and the ``RpcContext``;
what it returns is checked against its output model (``output=`` or the return annotation).
Data the model refuses is a 422 ``invalid_data`` reply naming the field path; a return value the
output model refuses is a 500 ``bad_output`` reply, logged with the method name, and nothing of
the value reaches the client (``wsguard.model``). Everything else is the server's rpc pipeline
(``wsguard.server.rpc``): grants, rate limits, the time limit, error replies.

``app.run()`` / ``app.serving()`` run the native server; ``app.asgi()`` is the same app as an
ASGI application to mount in FastAPI / Starlette (``wsguard.server.asgi_engine``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import os
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from wsguard.exceptions import InvalidState
from wsguard.model import ModelAdapter, is_model
from wsguard.server.lifecycle import Server, serve
from wsguard.server.rpc import RpcContext, RpcHandler, RpcRegistry
from wsguard.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wsguard.asgi import Guard, Receive, Scope, Send
    from wsguard.brokers.base import Publication
    from wsguard.server.services import Services

__all__ = ["App"]

_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])

log = logging.getLogger("wsguard.server")


class _Infer:
    def __repr__(self) -> str:
        return "<infer from the annotation>"


_INFER: Final = _Infer()


@dataclass(frozen=True, slots=True)
class _Converter:
    """An ``RpcConverter`` from an optional input model and an optional output model."""

    input: ModelAdapter | None
    output: ModelAdapter | None

    def load(self, data: Any) -> Any:
        return data if self.input is None else self.input.load(data, "data")

    def dump(self, result: Any) -> Any:
        return result if self.output is None else self.output.dump(result, "result")


@dataclass(frozen=True, slots=True)
class _Method:
    name: str
    handler: RpcHandler
    allow: tuple[str, ...]
    converter: _Converter | None


class App:
    """A wsguard server with your typed rpc handlers.

    Args:
        config: ``Settings``, or the path of a ``wsguard.toml`` (loaded like ``wsguard serve``
            does: the file, then ``WSGUARD_*`` environment overrides).

    Raises:
        ConfigError: the file cannot be read or a value is invalid.
    """

    def __init__(self, config: Settings | str | os.PathLike[str]) -> None:
        if isinstance(config, Settings):
            self.settings = config
        else:
            from wsguard.config import load_settings

            self.settings = load_settings(os.fspath(config))
        self._methods: list[_Method] = []
        self._names = RpcRegistry()  # checks names and grants at decoration time
        self._server: Server | None = None
        self._asgi: Guard | None = None
        self._endpoint: _AsgiEndpoint | None = None

    # ------------------------------------------------------------------ handlers

    def rpc(
        self,
        name: str,
        *,
        schema: type | _Infer | None = _INFER,
        output: type | _Infer | None = _INFER,
        allow: Sequence[str] = ("authenticated",),
    ) -> Callable[[_F], _F]:
        """Register ``async def handler(data: Model, ctx: RpcContext) -> OutModel``.

        Args:
            name: the method name (1-128 characters of ``[A-Za-z0-9_.:-]``).
            schema: the input model (msgspec ``Struct`` or pydantic ``BaseModel``); by default
                the first parameter's annotation when it is one, else the handler gets the
                decoded JSON as is. ``None``: no input model.
            output: the output model; by default the return annotation. A return annotation
                that is neither a model nor ``None``/``Any``/absent must be made explicit:
                ``output=Model``, or ``output=None`` to return plain JSON unchecked.
            allow: grants that may call it: ``anonymous``, ``authenticated``, ``role:NAME``.

        Raises:
            ValueError: a bad name or grant, or a name already registered.
            TypeError: a model that is neither library's, or an annotation that cannot be
                resolved or checked.
        """

        def register(handler: _F) -> _F:
            if not inspect.iscoroutinefunction(typing.cast(Any, handler)):
                raise TypeError(f"rpc {name}: the handler must be an async def")
            input_model, output_model = _models(name, handler, schema, output)
            converter = None
            if input_model is not None or output_model is not None:
                converter = _Converter(
                    None if input_model is None else ModelAdapter.for_type(input_model),
                    None if output_model is None else ModelAdapter.for_type(output_model),
                )

            async def call(ctx: RpcContext, data: Any) -> Any:
                return await handler(data, ctx)

            call.__qualname__ = getattr(handler, "__qualname__", name)
            self._names.register(name, call, allow=allow)
            method = _Method(name, call, tuple(allow), converter)
            self._methods.append(method)
            if self._endpoint is not None:  # decorated after app.asgi(): serve it there too
                _register(self._endpoint.services, [method])
            return handler

        return register

    # ------------------------------------------------------------------ running

    @property
    def server(self) -> Server | None:
        """The running server, or ``None``."""
        return self._server

    async def publish(self, channel: str, data: Any) -> Publication:
        """Publish on ``channel`` as the server (as ``Server.publish``): on the native server
        while it serves, else to the connections of ``app.asgi()`` once it started.

        Raises:
            InvalidState: the app is not serving.
            ReplyError: the channel's rules refuse it (see ``Server.publish``).
        """
        if self._server is not None:
            return await self._server.publish(channel, data)
        endpoint = self._endpoint
        if endpoint is None or not endpoint.started:
            raise InvalidState("the app is not serving: use app.run(), app.serving() or app.asgi()")
        services = endpoint.services
        return await services.publish(services.rule(channel), channel, data, trusted=True)

    def asgi(
        self, *, env: Mapping[str, str] | None = None, loopback_bound: bool | None = None
    ) -> Guard:
        """This app as an ASGI 3 application, to mount in FastAPI / Starlette (or serve alone).

        Every ``websocket`` scope, at any path, runs ``wsguard.asgi.Guard``'s handshake pipeline
        and then the wire protocol (ping, rpc with these handlers, subscribe, publish, history,
        presence, refresh) as on the native server; ``http`` scopes get 404. The app keeps one
        broker (``broker.url``) and one set of services for all its connections, started on
        the first connection or at ASGI lifespan startup, and stopped at lifespan shutdown.
        Calling ``asgi()`` again returns the same application.

        Args:
            env: where secrets are read (``os.environ``), as ``Guard``'s ``env``.
            loopback_bound: as ``Guard``'s: whether the ASGI server listens on loopback only
                (default: whether ``server.host`` is a loopback address).

        Raises:
            ConfigError: as ``Guard`` (a configured auth method without its secret, ...).
        """
        if self._asgi is not None:
            return self._asgi
        from wsguard.asgi import Guard
        from wsguard.brokers import open_broker
        from wsguard.metrics import Metrics
        from wsguard.server.services import Services

        broker, tickets = open_broker(self.settings.broker)
        services = Services(self.settings, broker, Metrics())
        _register(services, self._methods)
        endpoint = _AsgiEndpoint(services)
        guard = Guard(
            endpoint, self.settings, tickets=tickets, env=env, loopback_bound=loopback_bound
        )
        endpoint.guard = guard
        self._endpoint, self._asgi = endpoint, guard
        return guard

    @contextlib.asynccontextmanager
    async def serving(self, **server_options: Any) -> AsyncIterator[Server]:
        """Serve in the running event loop: ``async with app.serving() as server:``.

        ``server.port`` is the bound port (``server.port = 0`` in the config picks a free
        one). ``server_options`` go to ``wsguard.Server`` (``env=``, ``audit=``, ...).

        Raises:
            InvalidState: the app is already serving.
            ConfigError: as ``Server.start``.
        """
        if self._server is not None:
            raise InvalidState("the app is already serving")
        server = Server(self.settings, **server_options)
        self._install(server)
        try:
            async with server:
                yield server
        finally:
            self._server = None

    def run(self, host: str | None = None, port: int | None = None) -> int:
        """Serve until SIGTERM or SIGINT, as ``wsguard serve`` does, with these handlers.

        Args:
            host: overrides ``server.host``.
            port: overrides ``server.port``.

        Returns:
            The exit code (0).

        Raises:
            ConfigError: a start-up problem (address in use, certificate), or
                ``server.workers > 1`` (handlers live in this one process).
        """
        settings = self.settings
        changes: dict[str, Any] = {}
        if host is not None:
            changes["host"] = host
        if port is not None:
            changes["port"] = port
        if changes:
            settings = dataclasses.replace(
                settings, server=dataclasses.replace(settings.server, **changes)
            )
        try:
            return serve(settings, setup=self._install)
        finally:
            self._server = None

    def _install(self, server: Server) -> None:
        _register(server.services, self._methods)
        self._server = server


def _register(services: Services, methods: Sequence[_Method]) -> None:
    registry = services.rpc
    for method in methods:
        registry.register(
            method.name, method.handler, allow=method.allow, converter=method.converter
        )


class _AsgiEndpoint:
    """What ``App.asgi()``'s guard wraps: protocol sessions for websocket scopes, 404 for HTTP,
    and the services' start and stop (first connection, lifespan)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.guard: Guard | None = None
        self.started = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self.started:
                return
            assert self.guard is not None  # noqa: S101 - set by App.asgi()
            jwks = self.guard.auth.jwks
            if jwks is not None:
                await jwks.start()
            # Does not wait for Redis: while it is down, what needs it is refused with 503.
            await self.services.broker.start()
            self.started = True

    async def stop(self) -> None:
        async with self._lock:
            if not self.started:
                return
            self.started = False
            assert self.guard is not None  # noqa: S101
            await self.services.close()
            await self.services.broker.close()
            if self.guard.auth.jwks is not None:
                await self.guard.auth.jwks.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            from wsguard.server.asgi_engine import run_session

            guard = self.guard
            assert guard is not None  # noqa: S101
            await self.start()
            await run_session(scope, receive, send, self.services, guard.auth, audit=guard.audit)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "http":
            body = b"404 Not Found\n"
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.exception("wsguard app failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.stop()
                except Exception as exc:
                    log.exception("wsguard app failed to stop")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


def _models(
    name: str, handler: Callable[..., Any], schema: object, output: object
) -> tuple[type | None, type | None]:
    """The input and output models of ``handler``, explicit or from its annotations."""
    hints: dict[str, Any] = {}
    if schema is _INFER or output is _INFER:
        try:
            hints = typing.get_type_hints(handler)
        except Exception as exc:  # NameError for a name only defined in a local scope
            raise TypeError(
                f"rpc {name}: cannot resolve the handler's annotations ({exc}); "
                "pass schema= and output= explicitly"
            ) from None
    if schema is _INFER:
        params = list(inspect.signature(handler).parameters.values())
        first = hints.get(params[0].name) if params else None
        input_model = first if is_model(first) else None
    else:
        input_model = _checked(name, "schema", schema)
    if output is _INFER:
        returns = hints.get("return", None)
        if returns is None or returns is type(None) or returns is Any:
            output_model = None
        elif is_model(returns):
            output_model = returns
        else:
            raise TypeError(
                f"rpc {name}: the return annotation {returns!r} is not a msgspec or pydantic "
                "model; pass output=Model, or output=None to return plain JSON unchecked"
            )
    else:
        output_model = _checked(name, "output", output)
    return input_model, output_model


def _checked(name: str, what: str, model: object) -> type | None:
    if model is None:
        return None
    if not is_model(model):
        raise TypeError(
            f"rpc {name}: {what}= takes a msgspec.Struct or pydantic.BaseModel class, got {model!r}"
        )
    return typing.cast(type, model)
