"""Shared fixtures: real wsguard servers on 127.0.0.1, an audit log the tests can read."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from support.rawws import RawClient
from wsguard.audit import AuditLog
from wsguard.server.lifecycle import Server
from wsguard.settings import Settings
from wsguard.testing import loopback_settings


class AuditRecorder(logging.Handler):
    """Collects audit events as dicts."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        self.events.append(orjson.loads(line))

    def rejected(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "handshake_rejected"]


@pytest.fixture(autouse=True)
async def _close_raw_clients() -> AsyncIterator[None]:
    yield
    await RawClient.close_all()


@pytest.fixture
def audit() -> AuditRecorder:
    return AuditRecorder()


StartServer = Callable[..., Any]


@pytest.fixture
async def start_server(audit: AuditRecorder) -> AsyncIterator[StartServer]:
    """``server = await start_server(settings=None, **sections)`` starts a real listener."""
    stack = contextlib.AsyncExitStack()

    async def start(
        settings: Settings | None = None,
        session_factory: Any = None,
        env: dict[str, str] | None = None,
        monotonic: Callable[[], float] | None = None,
        **sections: Any,
    ) -> Server:
        if settings is None:
            sections.setdefault("auth", {"required": False})
            settings = loopback_settings(**sections)
        logger = logging.Logger(f"audit-{id(audit)}")
        logger.addHandler(audit)
        server = Server(
            settings,
            audit=AuditLog(logger=logger),
            session_factory=session_factory,
            env=env if env is not None else {},
            **({} if monotonic is None else {"monotonic": monotonic}),
        )
        await stack.enter_async_context(server)
        return server

    yield start
    # Raw clients never answer a close frame: drop them first, or every server would wait
    # its whole close_timeout for them.
    await RawClient.close_all()
    await stack.aclose()
