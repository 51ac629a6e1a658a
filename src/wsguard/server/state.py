"""What every connection of one listener shares."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsguard.audit import AuditLog
    from wsguard.auth import AuthService
    from wsguard.core.handshake import HandshakePipeline
    from wsguard.server.engine import SessionFactory
    from wsguard.server.listener import WsConnection
    from wsguard.server.responses import Page
    from wsguard.server.services import Services
    from wsguard.settings import Settings

__all__ = ["ServerState"]


class ServerState:
    """What every connection of one listener shares."""

    def __init__(
        self,
        settings: Settings,
        pipeline: HandshakePipeline,
        audit: AuditLog,
        session_factory: SessionFactory,
        clock: Callable[[], float],
        auth: AuthService,
        services: Services,
        extensions: list[object] | None = None,
        pages: Mapping[str, Page] | None = None,
    ) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.ws_path = settings.server.ws_path
        self.pipeline = pipeline
        self.audit = audit
        self.session_factory = session_factory
        self.clock = clock
        self.extensions = extensions
        self.pages: Mapping[str, Page] = pages or {}
        self.auth = auth
        self.services = services
        self.connections: set[WsConnection] = set()
        # Open connections by authenticated user: revocation closes them all.
        self.by_user: dict[str, set[WsConnection]] = {}
        # Handshakes finishing in the background (ticket consumption, password hashing).
        self.tasks: set[asyncio.Task[None]] = set()
        self.accepting = True
        # Set by a shutdown in progress; fired when the last connection is gone.
        self.drained: asyncio.Event | None = None

    def register(self, conn: WsConnection, user_id: str | None) -> None:
        if user_id is not None:
            self.by_user.setdefault(user_id, set()).add(conn)

    def unregister(self, conn: WsConnection, user_id: str | None) -> None:
        if user_id is not None:
            conns = self.by_user.get(user_id)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self.by_user[user_id]
