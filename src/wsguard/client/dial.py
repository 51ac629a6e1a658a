"""One connection attempt: a fresh credential, the opening handshake, first-message
authentication, up to the ``welcome`` push.

Credentials are never logged: the ticket travels in the URL, so errors are described by the
HTTP status or the exception's type, never by aiohttp's exception text (which holds the URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_lib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from wsguard.client.errors import ClientError
from wsguard.client.pending import decode, error_of
from wsguard.client.policy import close_action, handshake_action

__all__ = ["CredentialProvider", "Dialer", "Retry", "WebSocket"]

log = logging.getLogger("wsguard.client")

CredentialProvider = Callable[[], Awaitable[str]]
WebSocket = aiohttp.ClientWebSocketResponse


class Retry(Exception):
    """An attempt failed in a way another attempt may fix: back off and try again."""

    def __init__(self, error: ClientError) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True, slots=True)
class Dialer:
    """What every attempt needs; see ``Client`` for the meaning of each field."""

    url: URL
    ticket: CredentialProvider | None
    token: CredentialProvider | None
    origin: str | None
    headers: Mapping[str, str]
    ssl: ssl_lib.SSLContext | bool
    timeout: float
    heartbeat: float | None

    async def dial(self, http: aiohttp.ClientSession) -> tuple[WebSocket, dict[str, Any]]:
        """Open a connection and return it with its ``welcome`` push.

        Raises:
            Retry: another attempt may succeed (refused connection, 429/503, a timeout, a
                close code that allows a reconnect, a failing credential provider).
            ClientError: none will (401/403 at the handshake or in reply to ``auth``, a
                terminal close code, an untrusted certificate).
        """
        url = self.url
        if self.ticket is not None:
            url = url.update_query(ticket=await self.credential(self.ticket))
        try:
            async with asyncio.timeout(self.timeout):
                ws = await http.ws_connect(
                    url,
                    origin=self.origin,
                    headers=self.headers,
                    ssl=self.ssl,
                    heartbeat=self.heartbeat,
                )
        except aiohttp.WSServerHandshakeError as exc:
            error = ClientError(exc.status, "handshake_refused", f"HTTP {exc.status}")
            if handshake_action(exc.status) == "stop":
                raise error from None
            raise Retry(error) from None
        except aiohttp.ClientConnectorCertificateError:
            raise ClientError(0, "tls_failed", "the server's certificate is not trusted") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Retry(ClientError(0, "unreachable", type(exc).__name__)) from None
        try:
            async with asyncio.timeout(self.timeout):
                if self.token is not None:
                    await _authenticate(ws, await self.credential(self.token))
                while True:
                    frame = await _read(ws)
                    if frame.get("push") == "welcome":
                        return ws, frame
        except TimeoutError:
            await _abandon(ws, self.timeout)
            raise Retry(ClientError(0, "timeout", "no welcome in time")) from None
        except (Retry, ClientError):
            await _abandon(ws, self.timeout)
            raise

    async def credential(self, provider: CredentialProvider) -> str:
        """Call a credential provider (bounded by the timeout).

        Raises:
            ClientError: the provider raised a ``ClientError`` 401 or 403 (the backend
                refuses this user a credential: retrying will not help).
            Retry: any other failure (the backend may be back soon).
        """
        try:
            async with asyncio.timeout(self.timeout):
                value = await provider()
        except ClientError as exc:
            if exc.code in (401, 403):
                raise
            raise Retry(ClientError(exc.code, "credential_failed", exc.reason)) from None
        except Exception as exc:
            log.warning("the credential provider failed", exc_info=True)
            raise Retry(ClientError(0, "credential_failed", type(exc).__name__)) from None
        if not isinstance(value, str) or not value:
            raise Retry(ClientError(0, "credential_failed", "the provider returned no string"))
        return value


async def _authenticate(ws: WebSocket, token: str) -> None:
    """First-message authentication; the ``welcome`` push follows a successful reply."""
    await ws.send_str(orjson.dumps({"id": "auth", "op": "auth", "token": token}).decode())
    while True:
        frame = await _read(ws)
        if "ok" not in frame or frame.get("id") != "auth":
            continue
        if frame["ok"] is True:
            return
        error = error_of(frame)
        if error.code in (429, 503):  # the user's socket cap, the server's store: later
            raise Retry(error)
        raise error  # 401 unauthorized, 403 revoked: the server closes 4401 / 4403


async def _read(ws: WebSocket) -> dict[str, Any]:
    """The next JSON object on a connection that is not open yet.

    Raises:
        ClientError: the server closed with a terminal code.
        Retry: it closed with another code, or the connection dropped.
    """
    while True:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            frame = decode(msg.data)
            if frame is not None:
                return frame
        elif msg.type is not aiohttp.WSMsgType.BINARY:
            code = ws.close_code or 1006
            reason = str(msg.extra or "") if msg.type is aiohttp.WSMsgType.CLOSE else ""
            if close_action(code) == "stop":
                raise ClientError(code, "closed", reason)
            raise Retry(ClientError(code, "disconnected", reason))


async def _abandon(ws: WebSocket, within: float) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(within):
            await ws.close()
