"""Start, run and stop a wsguard server: binding, TLS, logging, signals, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from wsguard.audit import AuditLog
from wsguard.auth import AuthService
from wsguard.brokers import open_broker
from wsguard.brokers.base import Broker, Publication, TicketStore
from wsguard.brokers.memory import MemoryTicketStore
from wsguard.codes import CloseCode
from wsguard.exceptions import ConfigError
from wsguard.metrics import Metrics
from wsguard.server.engine import SessionFactory
from wsguard.server.listener import WsConnection
from wsguard.server.responses import Page
from wsguard.server.rpc import RpcHandler
from wsguard.server.services import Services
from wsguard.server.session import EchoSession, ProtocolSession
from wsguard.server.state import ServerState
from wsguard.server.tls import build_ssl_context
from wsguard.settings import Settings

__all__ = ["Server", "configure_logging", "serve"]

log = logging.getLogger("wsguard.server")


class _JsonFormatter(logging.Formatter):
    """One JSON object per line; audit events are already JSON and pass through."""

    def format(self, record: logging.LogRecord) -> str:
        import orjson

        message = record.getMessage()
        if record.name == "wsguard.audit":
            return message
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(settings: Settings, stream: Any = None) -> None:
    """Send wsguard's logs (and the audit log) to ``stream`` (stderr) in the configured format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.log.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("wsguard")
    root.handlers[:] = [handler]
    root.setLevel(settings.log.level.upper())
    root.propagate = False
    # The engine's own open/close chatter is replaced by the audit log.
    logging.getLogger("wsguard.engine").setLevel(logging.WARNING)


def _extensions(settings: Settings) -> list[object] | None:
    if not settings.limits.compression:
        return None
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

    # Decompressed size is bounded by max_message_bytes inside the websockets core, which is
    # what defeats compression bombs; no context takeover keeps per-connection memory small.
    return [
        ServerPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True
        )
    ]


class Server:
    """A wsguard listener in the running event loop.

    Use ``async with Server(settings) as server:`` in tests and embedding code; ``server.port``
    is the bound port (useful with ``port = 0``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        session_factory: SessionFactory | None = None,
        clock: Callable[[], float] = time.time,
        audit: AuditLog | None = None,
        pages: Mapping[str, Page] | None = None,
        env: Mapping[str, str] | None = None,
        tickets: TicketStore | None = None,
        broker: Broker | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        from wsguard.config import is_loopback_host
        from wsguard.core.handshake import HandshakePipeline

        self.settings = settings
        if session_factory is None:
            session_factory = EchoSession if settings.server.echo else ProtocolSession
        self._env = os.environ if env is None else env
        self._owns_broker = broker is None
        if broker is None:
            # ConfigError when redis:// is asked for without the Redis extra installed.
            broker, default_tickets = open_broker(settings.broker, monotonic=monotonic, clock=clock)
            tickets = tickets or default_tickets
        # Raises ConfigError when a required method lacks its secret: before binding anything.
        auth = AuthService(settings, self._env, tickets or MemoryTicketStore(clock), clock)
        pipeline = HandshakePipeline(
            settings,
            loopback_bound=is_loopback_host(settings.server.host),
            authenticators=auth.authenticators,
        )
        self.metrics = Metrics()
        # Raises ConfigError for a schema file that cannot be read (config check said so).
        self.services = Services(settings, broker, self.metrics, monotonic)
        broker.on_control(self._on_control)
        self._state = ServerState(
            settings,
            pipeline,
            audit or AuditLog(enabled=settings.log.audit),
            session_factory,
            clock,
            auth,
            self.services,
            _extensions(settings),
            pages,
        )
        self._server: asyncio.Server | None = None
        self.port = settings.server.port

    # ------------------------------------------------------------------ channels and rpc

    async def publish(self, channel: str, data: Any) -> Publication:
        """Publish ``data`` on ``channel`` as the server: the channel's schemas and encoding
        apply (DESIGN.md §5), its grants do not.

        Raises:
            ReplyError: 400 ``bad_channel``, 404 ``unknown_channel``, 422 ``invalid_data`` or
                ``bad_output``, 503 ``unavailable``.
        """
        services = self.services
        return await services.publish(services.rule(channel), channel, data, trusted=True)

    def rpc(
        self,
        name: str,
        *,
        allow: Sequence[str] = ("authenticated",),
        schema: Mapping[str, Any] | None = None,
        output_schema: Mapping[str, Any] | None = None,
    ) -> Callable[[RpcHandler], RpcHandler]:
        """Register an rpc method (a decorator); see ``wsguard.server.rpc``.

        Raises:
            ValueError: a bad name or grant, a name taken, a schema that does not compile.
        """

        def register(handler: RpcHandler) -> RpcHandler:
            self.services.rpc.register(
                name, handler, allow=allow, schema=schema, output_schema=output_schema
            )
            return handler

        return register

    def channels(self) -> dict[str, int]:
        """Channels with local subscribers, and how many."""
        return self.services.hub.counts()

    # ------------------------------------------------------------------ control (internal API)

    async def revoke(self, user: str) -> int:
        """Revoke ``user`` on every node: close each of their sockets with 4403, and refuse
        their credentials issued before now (``auth.revocation_ttl``). Returns the sockets
        closed on this node.

        Raises:
            ConnectionError: done here, but the other nodes could not be told (Redis down).
        """
        state = self._state
        now = state.clock()
        closed = self._revoke_here(user, now)
        await self.services.broker.send_control({"op": "revoke", "user": user, "at": now})
        return closed

    async def disconnect(self, user: str, code: int, reason: str = "disconnected") -> int:
        """Close every socket of ``user`` with ``code`` on every node; returns this node's.

        Raises:
            ConnectionError: done here, but the other nodes could not be told (Redis down).
        """
        closed = self._disconnect_here(user, code, reason)
        await self.services.broker.send_control(
            {"op": "disconnect", "user": user, "code": code, "reason": reason}
        )
        return closed

    def _revoke_here(self, user: str, at: float) -> int:
        state = self._state
        state.auth.revocations.revoke(user, at)
        closed = self._disconnect_here(user, CloseCode.FORBIDDEN, "revoked")
        state.audit.emit("user_revoked", user=user, closed=closed)
        return closed

    def _disconnect_here(self, user: str, code: int, reason: str) -> int:
        conns = list(self._state.by_user.get(user, ()))
        for conn in conns:
            conn.close(code, reason)
        return len(conns)

    def _on_control(self, message: dict[str, Any]) -> None:
        """A control message from another node (through the broker)."""
        op, user = message.get("op"), message.get("user")
        if op == "connected":
            # (Re)connected to Redis: revocations sent while this node was away apply now.
            self.services.spawn(self._replay_revocations())
        elif not isinstance(user, str):
            log.warning("ignored a control message without a user: %r", op)
        elif op == "revoke" and isinstance(message.get("at"), (int, float)):
            self._revoke_here(user, float(message["at"]))
        elif op == "disconnect" and isinstance(message.get("code"), int):
            self._disconnect_here(user, message["code"], str(message.get("reason", "")))
        else:
            log.warning("ignored an unknown control message: %r", op)

    async def _replay_revocations(self) -> None:
        state = self._state
        revoked = await self.services.broker.revocations(
            self.settings.auth.revocation_ttl, state.clock()
        )
        for user, at in revoked.items():
            state.auth.revocations.revoke(user, at)
            for conn in list(state.by_user.get(user, ())):
                if state.auth.check_revoked(conn.principal) is not None:
                    conn.close(CloseCode.FORBIDDEN, "revoked")

    def mint_ticket(
        self,
        user: str,
        origin: str,
        ttl: float | None = None,
        roles: Sequence[str] = (),
        channels: Sequence[str] = (),
    ) -> str:
        """Mint a one-time ticket for ``user`` at ``origin`` (the page that will connect).

        Raises:
            ConfigError: ticket authentication is not configured.
            ValueError: an argument is out of range (a malformed origin, ...).
        """
        from wsguard.tickets import mint, ticket_secret

        config = self.settings.auth.ticket
        return mint(
            user,
            origin,
            ttl=config.ttl if ttl is None else ttl,
            roles=roles,
            channels=channels,
            secret=ticket_secret(config, self._env),
        )

    @property
    def connections(self) -> int:
        """Open connections (accepted WebSockets and handshakes in progress)."""
        return len(self._state.connections)

    async def start(self) -> None:
        """Bind the listener.

        Raises:
            ConfigError: when the certificate cannot be loaded or the address cannot be bound.
        """
        server = self.settings.server
        ssl_context = build_ssl_context(server)
        jwks = self._state.auth.jwks
        if jwks is not None:
            await jwks.start()  # ConfigError when the keys cannot be fetched: no keys, no start
        # Does not wait for Redis: while it is down, what needs it is refused with 503.
        await self.services.broker.start()
        loop = asyncio.get_running_loop()
        state = self._state
        try:
            self._server = await loop.create_server(
                lambda: WsConnection(state),
                server.host,
                server.port,
                ssl=ssl_context,
                reuse_port=server.workers > 1 or None,
                backlog=1024,
            )
        except OSError as exc:
            if jwks is not None:
                await jwks.stop()
            raise ConfigError(
                "server.port", f"cannot listen on {server.host}:{server.port}: {exc.strerror}"
            ) from None
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]
        scheme = "wss" if ssl_context else "ws"
        log.info("listening on %s://%s:%d%s", scheme, server.host, self.port, server.ws_path)

    async def stop(self, code: int = CloseCode.GOING_AWAY, grace: float | None = None) -> None:
        """Stop accepting, close every WebSocket with ``code``, wait for the peers' close
        frames up to ``grace`` seconds (``limits.close_timeout``), then drop whoever is left."""
        state = self._state
        state.accepting = False
        if self._server is not None:
            self._server.close()
        state.drained = asyncio.Event()
        for conn in list(state.connections):
            if conn.is_open:
                conn.close(code, "going away")
        if state.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    state.drained.wait(),
                    self.settings.limits.close_timeout if grace is None else grace,
                )
        for conn in list(state.connections):
            conn.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        if state.auth.jwks is not None:
            await state.auth.jwks.stop()
        await self.services.close()
        if self._owns_broker:
            await self.services.broker.close()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def serve(settings: Settings, setup: Callable[[Server], None] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT, then shut down gracefully. Returns the exit code.

    With ``server.workers > 1`` this process becomes the supervisor of that many worker
    processes sharing the port (``wsguard.server.workers``).

    Args:
        settings: the configuration.
        setup: called with the ``Server`` before it listens (``wsguard.App`` registers its rpc
            handlers there). Handlers live in this process: not with ``server.workers > 1``.

    Raises:
        ConfigError: for start-up problems (certificate, address in use), or ``setup`` with
            several workers.
    """
    from wsguard.config import insecure_switches

    configure_logging(settings)
    for warning in insecure_switches(settings):
        log.warning("insecure setting: %s", warning)
    if settings.server.workers > 1:
        if setup is not None:
            raise ConfigError(
                "server.workers", "an App serves its handlers in one process: set workers = 1"
            )
        from wsguard.server.workers import supervise

        return supervise(settings)
    _serve_one(settings, _announce, setup=setup)
    return 0


def _announce(port: int) -> None:
    print(f"wsguard listening on port {port}", flush=True)


def _serve_one(
    settings: Settings,
    on_ready: Callable[[int], None],
    *,
    stop_signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    stop_fd: int | None = None,
    setup: Callable[[Server], None] | None = None,
) -> None:
    """Run one server, and the internal API when its key is set, in a new event loop.

    ``on_ready(port)`` is called once both listen. Stops gracefully on any of ``stop_signals``
    or, for a supervised worker, when ``stop_fd`` becomes readable (its supervisor is gone).

    Raises:
        ConfigError: for start-up problems (certificate, address in use, API key).
    """
    loop = _new_loop()
    asyncio.set_event_loop(loop)

    async def main() -> None:
        stop = asyncio.Event()
        for sig in stop_signals:
            loop.add_signal_handler(sig, stop.set)
        if stop_fd is not None:

            def orphaned() -> None:
                loop.remove_reader(stop_fd)  # level-triggered: would fire on every pass
                log.warning("the supervisor is gone: shutting down")
                stop.set()

            loop.add_reader(stop_fd, orphaned)
        server = Server(settings)
        if setup is not None:
            setup(server)
        await server.start()
        api = None
        if os.environ.get(settings.api.key_env):
            from wsguard.server.api import ApiServer

            api = ApiServer(settings, server)
            await api.start()
            log.info("internal API on http://%s:%d", settings.api.host, api.port)
        else:
            log.info("internal API off: %s is not set", settings.api.key_env)
        on_ready(server.port)
        await stop.wait()
        log.info("shutting down: closing %d connections", server.connections)
        if api is not None:
            await api.stop()
        await server.stop()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
