"""A client for the internal API (docs/reference/internal-api.md), for the app's backend.

The API key is a credential for every user: it is sent only as the ``Authorization`` header,
never logged, and kept out of ``repr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from wsguard.client.errors import ClientError
from wsguard.client.message import Position

__all__ = ["ApiClient"]


class ApiClient:
    """Publish, mint tickets, revoke and disconnect users through the internal API.

    Example::

        async with ApiClient("http://127.0.0.1:8081", os.environ["WSGUARD_API_KEY"]) as api:
            await api.publish("ticker:EURUSD", {"bid": 1.0841})
            ticket = await api.ticket("alice", "https://app.example.com", roles=["editor"])

    Every method raises ``ClientError(status, reason, message)`` for a non-2xx answer, with
    the API's reason (``unknown_channel``, ``invalid_data``, ``bad_request``,
    ``unauthorized``, ...), ``ClientError(0, "unavailable", ...)`` when the API cannot be
    reached and ``ClientError(0, "timeout", ...)`` after ``timeout`` seconds.

    Args:
        base_url: where the internal API listens, ``http://127.0.0.1:8081``.
        api_key: the key (``WSGUARD_API_KEY`` of the server).
        timeout: seconds for each call.
        session: an ``aiohttp.ClientSession`` to use (default: one of its own, closed by
            ``close()``).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is empty")
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None

    def __repr__(self) -> str:
        return f"<ApiClient {self._base_url}>"

    async def publish(self, channel: str, data: Any) -> Position:
        """Publish ``data`` to ``channel`` as the backend: the channel's schemas and encoding
        apply, its grants do not. Returns the publication's position.

        Raises:
            ClientError: 400 ``bad_channel``, 404 ``unknown_channel``, 422 ``invalid_data`` or
                ``bad_output``, 503 ``unavailable``, ...
        """
        result = await self._call("POST", "/api/publish", {"channel": channel, "data": data})
        return Position(str(result["epoch"]), int(result["offset"]))

    async def ticket(
        self,
        user: str,
        origin: str,
        ttl: float | None = None,
        roles: Sequence[str] = (),
        channels: Sequence[str] = (),
    ) -> str:
        """Mint a one-time ticket for ``user`` connecting from ``origin``.

        A bound method makes a ticket provider for ``Client``:
        ``ticket=functools.partial(api.ticket, "alice", origin)``.

        Raises:
            ClientError: 400 ``bad_request`` (the message names the field), ...
        """
        body: dict[str, Any] = {
            "user": user,
            "origin": origin,
            "roles": list(roles),
            "channels": list(channels),
        }
        if ttl is not None:
            body["ttl"] = ttl
        result = await self._call("POST", "/api/tickets", body)
        return str(result["ticket"])

    async def revoke(self, user: str) -> int:
        """Close every socket of ``user`` with 4403 and refuse their older credentials;
        returns the sockets closed on that server."""
        result = await self._call("POST", "/api/revoke", {"user": user})
        return int(result["closed"])

    async def disconnect(self, user: str, code: int = 4503) -> int:
        """Close every socket of ``user`` with ``code`` (4000-4999; 4503 lets them reconnect
        at once); returns the sockets closed on that server."""
        result = await self._call("POST", "/api/disconnect", {"user": user, "code": code})
        return int(result["closed"])

    async def channels(self) -> dict[str, int]:
        """The channels with subscribers on that server, with their subscriber counts."""
        result = await self._call("GET", "/api/channels", None)
        return {str(c["channel"]): int(c["subscribers"]) for c in result["channels"]}

    async def close(self) -> None:
        """Close the HTTP session (when this client opened it)."""
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        data = None if body is None else orjson.dumps(body)
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method, self._base_url + path, data=data, headers=headers, timeout=self._timeout
            ) as response:
                status, raw = response.status, await response.read()
        except TimeoutError:
            raise ClientError(0, "timeout", f"{path}: no answer in time") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ClientError(0, "unavailable", f"{path}: {type(exc).__name__}") from None
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = None
        if 200 <= status < 300 and isinstance(payload, dict) and payload.get("ok") is True:
            return payload.get("result")
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            raise ClientError(status, str(error.get("reason", "")), str(error.get("message", "")))
        raise ClientError(status, "bad_response", f"{path}: HTTP {status}")
