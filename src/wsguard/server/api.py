"""The internal API: a separate, key-protected HTTP listener for the app's backend (DESIGN.md §8).

Publishes to channels, lists them, mints tickets, revokes users, disconnects their sockets and
serves the Prometheus metrics. It binds 127.0.0.1 by default: anyone who reaches it with the key
can act as any user, so keep it off the public network. The reference is
``docs/reference/internal-api.md``.

Rules:

- Every request but ``GET /healthz`` carries ``Authorization: Bearer <key>``; the key comes from
  the environment variable ``api.key_env`` names, is at least ``MIN_KEY_BYTES`` long (a short
  key can be guessed) and is compared in constant time (a timing oracle would leak it byte by
  byte). Authentication comes before routing, so an unauthenticated caller learns no route.
- Bodies are bounded by ``MAX_BODY_BYTES`` (memory DoS), decoded by the same strict codec as
  WebSocket messages (duplicate keys, ``NaN``, deep nesting and ``__proto__`` keys are refused
  with the codec's reason) and validated field by field; errors are generic JSON replies in the
  wire protocol's shape (DESIGN.md §6), never exception text.
- The key, tickets and request bodies are never logged; one audit event per call.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson
from aiohttp import hdrs, web

from wsguard.audit import AuditLog
from wsguard.brokers.base import Publication
from wsguard.config import is_loopback_host, read_secret
from wsguard.core.auth.payload import is_number
from wsguard.core.channels import MAX_CHANNEL_LENGTH
from wsguard.core.codec import Violation, decode
from wsguard.exceptions import ConfigError, ReplyError
from wsguard.metrics import Metrics
from wsguard.settings import Settings

__all__ = ["MAX_BODY_BYTES", "MAX_TICKET_TTL", "MIN_KEY_BYTES", "ApiControl", "ApiServer"]

log = logging.getLogger("wsguard.api")

MIN_KEY_BYTES: Final = 32
MAX_BODY_BYTES: Final = 64 * 1024
# Tickets travel in URLs and logs; a long-lived one would be a reusable credential.
MAX_TICKET_TTL: Final = 300.0
_MAX_USER_LENGTH: Final = 255
_DEFAULT_DISCONNECT_CODE: Final = 4503


class ApiControl(Protocol):
    """What the internal API asks of the WebSocket server (``Server`` implements it)."""

    def mint_ticket(
        self,
        user: str,
        origin: str,
        ttl: float | None,
        roles: Sequence[str],
        channels: Sequence[str],
    ) -> str:
        """Mint a ticket (``ttl=None``: ``auth.ticket.ttl``). Raises ``ValueError`` on bad args."""

    async def revoke(self, user: str) -> int:
        """Revoke ``user`` on every node; return how many sockets closed on this one.

        Raises:
            ConnectionError: the other nodes could not be told (the broker is down).
        """

    async def disconnect(self, user: str, code: int) -> int:
        """Close every socket of ``user`` with ``code`` on every node; return this node's count.

        Raises:
            ConnectionError: the other nodes could not be told (the broker is down).
        """

    async def publish(self, channel: str, data: Any) -> Publication:
        """Publish ``data`` to ``channel`` through the channel's schemas and encoding.

        Raises:
            ReplyError: 400 ``bad_channel``, 404 ``unknown_channel``, 422 ``invalid_data`` or
                ``bad_output``, 503 ``unavailable``; the API answers with that code.
        """

    def channels(self) -> dict[str, int]:
        """Return the local subscriber count of every channel with a local subscriber."""

    @property
    def metrics(self) -> Metrics:
        """The server's metrics, served on ``GET /metrics``."""


class _ApiError(Exception):
    def __init__(
        self, status: int, reason: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, reason)
        self.status, self.reason, self.message, self.headers = status, reason, message, headers

    def response(self) -> web.Response:
        error = {"code": self.status, "reason": self.reason, "message": self.message}
        return _reply(self.status, {"ok": False, "error": error}, self.headers)


def _reply(status: int, payload: object, headers: Mapping[str, str] | None = None) -> web.Response:
    body = orjson.dumps(payload)
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def _bad(field: str, problem: str) -> _ApiError:
    return _ApiError(400, "bad_request", f"{field}: {problem}")


def _string(body: Mapping[str, Any], field: str, limit: int = _MAX_USER_LENGTH) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise _bad(field, f"must be a non-empty string of at most {limit} characters")
    return value


def _strings(body: Mapping[str, Any], field: str) -> list[str]:
    value = body.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(field, "must be a list of strings")
    return value


def _read_key(name: str, env: Mapping[str, str]) -> bytes:
    return read_secret("api.key_env", name, env, MIN_KEY_BYTES)


_CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}
_TICKET_FIELDS: Final = frozenset({"user", "origin", "ttl", "roles", "channels"})
# A handler returns the ``result`` of a JSON reply, or a whole response (``/metrics``).
_Handler = Callable[[Mapping[str, Any]], Awaitable[dict[str, object] | web.Response]]
_REPLY_REASON: Final = re.compile(r"[a-z_]{1,40}")


@dataclass(frozen=True, slots=True)
class _Route:
    method: str  # "POST" (JSON body with ``fields``) or "GET" (HEAD too; no body read)
    handler: _Handler
    fields: frozenset[str] = frozenset()


class ApiServer:
    """The internal API listener. ``async with ApiServer(settings, server) as api:``.

    Attributes:
        port: the bound port once started (``api.port`` may be 0).
    """

    def __init__(
        self,
        settings: Settings,
        control: ApiControl,
        *,
        env: Mapping[str, str] | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        """Prepare the listener; nothing is read or bound until ``start``.

        Args:
            settings: the validated settings (``api`` and ``auth.ticket.ttl`` are used).
            control: the WebSocket server the endpoints act on.
            env: where to read ``api.key_env`` from (default ``os.environ``).
            audit: the audit log (default: one on ``wsguard.audit``).
        """
        self.settings = settings
        self.port = settings.api.port
        self._control = control
        self._env: Mapping[str, str] = os.environ if env is None else env
        self._audit = audit or AuditLog(enabled=settings.log.audit)
        self._key = b""
        self._runner: web.AppRunner | None = None
        self._routes: dict[str, _Route] = {
            "/api/publish": _Route("POST", self._publish, frozenset({"channel", "data"})),
            "/api/channels": _Route("GET", self._channels),
            "/api/tickets": _Route("POST", self._tickets, _TICKET_FIELDS),
            "/api/revoke": _Route("POST", self._revoke, frozenset({"user"})),
            "/api/disconnect": _Route("POST", self._disconnect, frozenset({"user", "code"})),
            "/metrics": _Route("GET", self._metrics),
        }

    async def start(self) -> None:
        """Read the key and bind ``api.host:api.port``.

        Raises:
            ConfigError: naming ``api.key_env`` when the key is unset or shorter than
                ``MIN_KEY_BYTES`` bytes, or ``api.port`` when the address cannot be bound.
        """
        config = self.settings.api
        self._key = _read_key(config.key_env, self._env)
        if not is_loopback_host(config.host):
            log.warning("the internal API listens on %s, which is not loopback", config.host)
        # One catch-all route: authentication, 404 and 405 stay in one place, before routing.
        # client_max_size is one byte over the limit so that exactly MAX_BODY_BYTES passes.
        app = web.Application(client_max_size=MAX_BODY_BYTES + 1)
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        app.on_response_prepare.append(_harden_headers)
        # No access log: it would be one more place for request details to leak.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        # Pre-fork workers (server.workers > 1) share the port, each answering for itself.
        reuse_port = self.settings.server.workers > 1 or None
        site = web.TCPSite(runner, config.host, config.port, backlog=128, reuse_port=reuse_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                "api.port", f"cannot listen on {config.host}:{config.port}: {exc.strerror}"
            ) from None
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("internal API listening on http://%s:%d", config.host, self.port)

    async def stop(self) -> None:
        """Close the listener and its connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _authorized(self, request: web.Request) -> bool:
        values = request.headers.getall(hdrs.AUTHORIZATION, [])
        if len(values) != 1:
            return False
        scheme, _, presented = values[0].partition(" ")
        try:
            candidate = presented.strip().encode("utf-8")
        except UnicodeEncodeError:
            return False
        # The scheme is case-insensitive (RFC 7235 §2.1); the key is compared in constant time.
        return scheme.lower() == "bearer" and hmac.compare_digest(candidate, self._key)

    async def _dispatch(self, request: web.Request) -> web.Response:
        if request.path == "/healthz":
            if request.method in ("GET", "HEAD"):
                return _reply(200, {"status": "ok"})
            return _ApiError(405, "method_not_allowed", "use GET", {"Allow": "GET"}).response()
        route = self._routes.get(request.path)
        user: str | None = None
        channel: str | None = None
        try:
            if not self._authorized(request):
                raise _ApiError(401, "unauthorized", "a valid API key is required", _CHALLENGE)
            if route is None:
                raise _ApiError(404, "not_found", "no such endpoint")
            if request.method not in _METHODS[route.method]:
                allow = {"Allow": route.method}
                raise _ApiError(405, "method_not_allowed", f"use {route.method}", allow)
            body: dict[str, Any] = {}
            if route.method == "POST":
                body = await _read_object(request, route.fields, self._max_depth)
            if "user" in route.fields:
                user = _string(body, "user")
            if "channel" in route.fields:
                channel = _string(body, "channel", MAX_CHANNEL_LENGTH)
            result = await route.handler(body)
            if isinstance(result, web.Response):
                response = result
            else:
                response = _reply(200, {"ok": True, "result": result})
        except _ApiError as exc:
            response = exc.response()
        except Exception:
            log.exception("internal API: %s failed", request.path)
            response = _ApiError(500, "internal_error", "internal error").response()
        endpoint = request.path if route else "unknown"
        self._audit.emit(
            "api_call",
            endpoint=endpoint,
            status=response.status,
            user=user,
            channel=channel,
            peer=request.remote,
        )
        return response

    @property
    def _max_depth(self) -> int:
        return self.settings.limits.json_max_depth

    async def _publish(self, body: Mapping[str, Any]) -> dict[str, object]:
        channel = _string(body, "channel", MAX_CHANNEL_LENGTH)
        if "data" not in body:
            raise _bad("data", "must be present (any JSON value, null included)")
        try:
            publication = await self._control.publish(channel, body["data"])
        except ReplyError as exc:
            raise _refused(exc) from None
        return {"epoch": publication.epoch, "offset": publication.offset}

    async def _channels(self, body: Mapping[str, Any]) -> dict[str, object]:
        counts = self._control.channels()
        listing = [{"channel": name, "subscribers": counts[name]} for name in sorted(counts)]
        return {"channels": listing}

    async def _metrics(self, body: Mapping[str, Any]) -> web.Response:
        text, content_type = self._control.metrics.render()
        return web.Response(status=200, body=text, headers={hdrs.CONTENT_TYPE: content_type})

    async def _tickets(self, body: Mapping[str, Any]) -> dict[str, object]:
        user, origin = _string(body, "user"), _string(body, "origin")
        ttl = body.get("ttl")
        if ttl is not None and not (is_number(ttl) and 0 < ttl <= MAX_TICKET_TTL):
            raise _bad("ttl", f"must be a number of seconds, 0 < ttl <= {MAX_TICKET_TTL:g}")
        roles, channels = _strings(body, "roles"), _strings(body, "channels")
        try:
            ticket = self._control.mint_ticket(user, origin, ttl, roles, channels)
        except ValueError:
            # The exception text is not echoed; an origin in the wrong form is the usual cause.
            raise _bad(
                "origin", "must be scheme://host[:port], e.g. https://app.example.com"
            ) from None
        expires_in = self.settings.auth.ticket.ttl if ttl is None else ttl
        return {"ticket": ticket, "expires_in": expires_in}

    async def _revoke(self, body: Mapping[str, Any]) -> dict[str, object]:
        try:
            return {"closed": await self._control.revoke(_string(body, "user"))}
        except ConnectionError:
            raise _unreached() from None

    async def _disconnect(self, body: Mapping[str, Any]) -> dict[str, object]:
        user = _string(body, "user")
        code = body.get("code", _DEFAULT_DISCONNECT_CODE)
        # Only the application range (DESIGN.md §6): RFC 6455 codes mean protocol events.
        if not (is_number(code) and isinstance(code, int) and 4000 <= code <= 4999):
            raise _bad("code", "must be an integer from 4000 to 4999")
        try:
            return {"closed": await self._control.disconnect(user, code)}
        except ConnectionError:
            raise _unreached() from None


def _unreached() -> _ApiError:
    """Done on this node, not known to be done on the others: the caller must retry."""
    return _ApiError(503, "unavailable", "done on this node only: the broker is unavailable")


_METHODS: Final = {"POST": frozenset({"POST"}), "GET": frozenset({"GET", "HEAD"})}


def _refused(exc: ReplyError) -> _ApiError:
    """Map a refusal of the server to the HTTP status its reply code mirrors."""
    code, reason = exc.code, exc.reason
    # ``code`` is usually a ``ReplyCode``, an ``int`` subclass; ``bool`` is one too, not a code.
    valid = isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599
    if not (valid and isinstance(reason, str) and _REPLY_REASON.fullmatch(reason)):
        # Not one of ours: a bug somewhere; fail closed without echoing it.
        log.error("internal API: unexpected ReplyError %r %r", code, reason)
        return _ApiError(500, "internal_error", "internal error")
    return _ApiError(int(code), reason, exc.message)


# The codec's message for these two speaks of WebSocket messages; the body gets its own.
_BODY_MESSAGES: Final = {
    "bad_json": "body: must be valid JSON",
    "bad_envelope": "body: must be a JSON object",
}


async def _read_object(
    request: web.Request, fields: frozenset[str], max_depth: int
) -> dict[str, Any]:
    length = request.content_length
    too_large = _ApiError(413, "too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    if length is not None and length > MAX_BODY_BYTES:
        raise too_large
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    if len(raw) > MAX_BODY_BYTES:
        raise too_large
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _ApiError(400, "bad_json", _BODY_MESSAGES["bad_json"]) from None
    body = decode(text, max_depth=max_depth)
    if isinstance(body, Violation):
        message = _BODY_MESSAGES.get(body.reason, f"body: {body.message}")
        raise _ApiError(400, body.reason, message)
    if not body.keys() <= fields:
        raise _bad("body", "unknown field; allowed: " + ", ".join(sorted(fields)))
    return body


async def _harden_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    # The Server header names aiohttp and Python versions: free reconnaissance.
    response.headers.popall(hdrs.SERVER, None)
    response.headers[hdrs.CACHE_CONTROL] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
