"""JWT keys from ``auth.jwt.jwks_url``: fetched at start-up, refreshed in the background.

The identity provider (IdP) rotates its signing keys. ``JwksFetcher`` fetches its JWKS before
the server starts (no keys, no start), again every ``refresh_interval`` seconds, and early when
a token names a ``kid`` it does not know, at most once per ``min_refetch_interval``. A failed
refresh keeps the keys it had: an IdP outage must not lock every user out. Response bodies never
reach a message or a log line: an error page is not ours to print, and could forge log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from wsguard.auth_keys import jwt_verifier
from wsguard.config_fields import show
from wsguard.config_rules import is_loopback_host
from wsguard.core.auth.jwt import JwtAuthenticator, JwtKeys, JwtVerifier
from wsguard.core.decisions import Principal, Reject
from wsguard.core.handshake import HandshakeContext
from wsguard.core.upgrade import UpgradeRequest
from wsguard.exceptions import ConfigError, InvalidState
from wsguard.settings import JwtConfig

__all__ = ["JwksFetcher", "RefreshingJwtAuthenticator"]

log = logging.getLogger("wsguard.auth")

_FIELD: Final = "auth.jwt.jwks_url"
_UNKNOWN_KID: Final = "unknown_kid"
# Reasons may quote a library message, which may quote a JWK member: bounded, so the IdP
# cannot fill the log.
_MAX_REASON: Final = 200


class _FetchError(Exception):
    """One failed fetch. The message is the reason, never the response body."""


class JwksFetcher:
    """Keeps the JWT verification keys of a JWKS URL fresh.

    ``await start()`` before serving, ``await stop()`` after (or ``async with``). Between them
    ``verifier`` and ``authenticator`` always hold the last keys fetched successfully.

    Args:
        url: ``auth.jwt.jwks_url``: ``https://``, or ``http://`` to a loopback host.
        config: ``auth.jwt``: the algorithms, audience, issuer and leeway of the verifier.
        authenticator: the authenticator whose keys to swap; when ``None``, one is created.
        refresh_interval: seconds between scheduled fetches (and retries after a failure).
        min_refetch_interval: the least seconds between a fetch and one asked for by
            ``request_refresh``: tokens naming random kids must not turn the server into a
            traffic amplifier against the IdP.
        timeout: seconds a whole fetch may take: a stalled IdP must not hold the refresh.
        max_bytes: the largest JWKS accepted (a JWKS is a few KiB): bounds the memory a
            broken or hostile endpoint can make us spend.
        clock: monotonic seconds, for the schedule and the rate limit.

    Raises:
        ConfigError: naming ``auth.jwt.jwks_url`` when the URL is not ``https://`` (keys
            fetched over plain HTTP can be swapped on the path: forged tokens).
        ValueError: when an interval, the timeout or ``max_bytes`` is out of range.
    """

    def __init__(
        self,
        url: str,
        config: JwtConfig,
        authenticator: JwtAuthenticator | None = None,
        *,
        refresh_interval: float = 300.0,
        min_refetch_interval: float = 30.0,
        timeout: float = 5.0,
        max_bytes: int = 1 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        plain_ok = parts.scheme == "http" and is_loopback_host(parts.hostname or "")
        if not parts.hostname or (parts.scheme != "https" and not plain_ok):
            raise ConfigError(_FIELD, f"must be an https:// URL, got {show(_public_url(url))}")
        if not (math.isfinite(refresh_interval) and refresh_interval > 0):
            raise ValueError("refresh_interval must be a finite number of seconds > 0")
        if not (math.isfinite(min_refetch_interval) and min_refetch_interval >= 0):
            raise ValueError("min_refetch_interval must be a finite number of seconds >= 0")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError("timeout must be a finite number of seconds > 0")
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self._url = url
        self._shown_url = show(_public_url(url))
        self._config = config
        self._authenticator = authenticator
        self._verifier: JwtVerifier | None = None
        self._refresh_interval = float(refresh_interval)
        self._min_refetch_interval = float(min_refetch_interval)
        self._timeout = float(timeout)
        self._max_bytes = max_bytes
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._requested = False
        self._last_fetch = -math.inf
        self._started = False
        self._stopping = False

    @property
    def authenticator(self) -> JwtAuthenticator:
        """The ``jwt`` authenticator holding the current keys.

        Raises:
            InvalidState: before ``start()`` succeeded, when none was given.
        """
        if self._authenticator is None or self._verifier is None:
            raise InvalidState("the JWKS is not loaded: await JwksFetcher.start() first")
        return self._authenticator

    @property
    def verifier(self) -> JwtVerifier:
        """The verifier of the current keys (for the first-message flow).

        Raises:
            InvalidState: before ``start()`` succeeded.
        """
        if self._verifier is None:
            raise InvalidState("the JWKS is not loaded: await JwksFetcher.start() first")
        return self._verifier

    async def start(self) -> None:
        """Fetch the JWKS, install its keys, and start refreshing them in the background.

        Raises:
            ConfigError: naming ``auth.jwt.jwks_url`` when the fetch fails (connection,
                timeout, status other than 200, redirect, body over ``max_bytes``, not a
                valid JWKS), or ``auth.jwt.algorithms`` when no key can verify them.
            InvalidState: when called twice.
        """
        if self._started:
            raise InvalidState("JwksFetcher.start() was already called")
        self._started = True
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            # Nothing the IdP sets is ever sent back.
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"Accept": "application/json"},
        )
        try:
            self._last_fetch = self._clock()
            verifier = await self._load()
        except _FetchError as exc:
            await self._close_session()
            raise ConfigError(
                _FIELD, f"cannot load the JWKS from {self._shown_url}: {exc}"
            ) from None
        except BaseException:
            await self._close_session()
            raise
        self._install(verifier)
        self._task = asyncio.create_task(self._run(), name="wsguard-jwks-refresh")

    async def stop(self) -> None:
        """Stop refreshing and close the HTTP session. The last keys stay in place."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # wait() does not raise the task's CancelledError, yet lets our own through.
            await asyncio.wait({task})
        await self._close_session()

    async def __aenter__(self) -> JwksFetcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def request_refresh(self) -> None:
        """Ask for an early fetch: a token named an unknown ``kid``, the IdP may have rotated
        its keys. Returns at once; the fetch runs in the background, no sooner than
        ``min_refetch_interval`` after the previous one (asks in between are merged into it)."""
        if not self._requested:
            self._requested = True
            self._wake.set()

    def verify(self, token: str, now: float) -> Principal | Reject:
        """``JwtVerifier.verify`` with the current keys; an ``unknown_kid`` refusal also asks
        for a refresh (the first-message flow's counterpart of ``RefreshingJwtAuthenticator``).

        Raises:
            InvalidState: before ``start()`` succeeded.
        """
        result = self.verifier.verify(token, now)
        if isinstance(result, Reject) and result.audit_reason == _UNKNOWN_KID:
            self.request_refresh()
        return result

    # ------------------------------------------------------------------ background

    async def _run(self) -> None:
        while not self._stopping:
            due = self._last_fetch + self._refresh_interval
            if self._requested:
                due = min(due, self._last_fetch + self._min_refetch_interval)
            delay = due - self._clock()
            if delay > 0:
                # No await between reading _requested and clearing: no ask is lost.
                self._wake.clear()
                # Not wait_for: on 3.11 it swallows a cancel that meets a set event (gh-86296).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            self._requested = False
            self._last_fetch = self._clock()
            await self._refresh()

    async def _refresh(self) -> None:
        try:
            verifier = await self._load()
        except (_FetchError, ConfigError) as exc:
            log.warning(
                "JWKS refresh from %s failed; keeping the previous keys: %s", self._shown_url, exc
            )
            return
        except Exception:
            # The refresh must outlive any surprise: the previous keys stay in service.
            log.exception("JWKS refresh from %s failed; keeping the previous keys", self._shown_url)
            return
        self._install(verifier)
        log.debug("JWKS refreshed from %s", self._shown_url)

    def _install(self, verifier: JwtVerifier) -> None:
        self._verifier = verifier
        if self._authenticator is None:
            self._authenticator = JwtAuthenticator(verifier)
        else:
            self._authenticator.verifier = verifier

    async def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # ------------------------------------------------------------------ one fetch

    async def _load(self) -> JwtVerifier:
        """The verifier of a freshly fetched JWKS; ``ConfigError`` from ``jwt_verifier``."""
        return jwt_verifier(self._config, _parse(await self._fetch()))

    async def _fetch(self) -> bytes:
        if self._session is None:
            raise _FetchError("the fetcher is stopped")
        try:
            async with asyncio.timeout(self._timeout):
                return await self._get(self._session)
        except TimeoutError:
            raise _FetchError(f"no complete answer within {self._timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            # Connection and TLS errors are described by our side, not by the peer.
            raise _FetchError(_bounded(f"cannot connect: {exc}")) from None
        except (aiohttp.ClientError, OSError) as exc:
            # Other messages can quote what the peer sent (a bad status line): name only.
            raise _FetchError(f"request failed ({type(exc).__name__})") from None

    async def _get(self, session: aiohttp.ClientSession) -> bytes:
        too_large = f"the response is larger than {self._max_bytes} bytes"
        # A redirect could lead off the https:// origin the operator configured: never followed.
        async with session.get(self._url, allow_redirects=False) as response:
            if response.status != 200:
                hint = " (redirects are not followed)" if 300 <= response.status < 400 else ""
                raise _FetchError(f"HTTP status {response.status}{hint}")
            length = response.content_length
            if length is not None and length > self._max_bytes:
                raise _FetchError(too_large)
            body = bytearray()
            # Counted as it arrives (after decompression): chunked or lying bodies are bounded.
            async for chunk in response.content.iter_any():
                body += chunk
                if len(body) > self._max_bytes:
                    raise _FetchError(too_large)
            return bytes(body)


class RefreshingJwtAuthenticator:
    """The ``jwt`` method with the keys of a ``JwksFetcher``.

    Delegates to ``fetcher.authenticator``; a token naming an unknown ``kid`` is still refused,
    and asks the fetcher for an early refresh: once the IdP's new keys are in, it verifies.
    Before ``fetcher.start()`` succeeded, ``authenticate`` raises ``InvalidState``.
    """

    __slots__ = ("_fetcher",)

    def __init__(self, fetcher: JwksFetcher) -> None:
        self._fetcher = fetcher

    @property
    def name(self) -> str:
        return "jwt"

    def authenticate(
        self, request: UpgradeRequest, ctx: HandshakeContext, now: float
    ) -> Principal | Reject | None:
        """``JwtAuthenticator.authenticate`` with the current keys."""
        result = self._fetcher.authenticator.authenticate(request, ctx, now)
        if isinstance(result, Reject) and result.audit_reason == _UNKNOWN_KID:
            self._fetcher.request_refresh()
        return result


def _parse(body: bytes) -> JwtKeys:
    try:
        jwks = json.loads(body)
    except (ValueError, RecursionError):
        raise _FetchError("the response is not valid JSON") from None
    if not isinstance(jwks, dict):
        raise _FetchError('the response is not a JSON object with a "keys" list')
    try:
        return JwtKeys.from_jwks(jwks)
    except ValueError as exc:
        raise _FetchError(_bounded(f"not a usable JWKS: {exc}")) from None


def _bounded(reason: str) -> str:
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 3] + "..."


def _public_url(url: str) -> str:
    """``url`` without credentials, query or fragment, which may hold secrets: fit for logs."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"
