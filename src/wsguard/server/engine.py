"""The small interface between the protocol engine and the application sessions.

The engine (``listener.py``: our ``asyncio.Protocol`` over the websockets sans-I/O core) owns
framing, the handshake, timeouts and backpressure. A session owns what messages mean. Keeping
the seam this narrow lets another engine (picows is the speed yardstick) be put under the same
sessions and the same tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from wsguard.auth import AuthService
    from wsguard.core.decisions import Principal, Reject
    from wsguard.server.services import Services

__all__ = ["Connection", "Session", "SessionFactory"]


class Connection(Protocol):
    """What a session may do with its connection."""

    @property
    def principal(self) -> Principal: ...

    @property
    def origin(self) -> str | None:
        """The checked Origin of the handshake."""

    @property
    def auth(self) -> AuthService:
        """The server's authentication service (first-message and refresh credentials)."""

    @property
    def services(self) -> Services:
        """Channel rules, broker, hub, rpc methods, metrics: what every connection shares."""

    @property
    def is_open(self) -> bool:
        """False from the moment either side started closing."""

    @property
    def client_ip(self) -> str:
        """The client's address (from a trusted proxy's header when configured)."""

    def pause_reading(self) -> None:
        """Stop reading from the peer until ``resume_reading`` (the session is behind)."""

    def resume_reading(self) -> None: ...

    def push_frame(self, frame: bytes, payload: bytes) -> bool:
        """Queue a text frame built once for many connections (``payload`` is its content,
        for connections that must frame it themselves); True when the caller must arrange
        a ``flush_pushes`` later in this event loop pass."""

    def flush_pushes(self) -> None:
        """Write what ``push_frame`` queued."""

    def set_principal(self, principal: Principal) -> Reject | None:
        """Bind a new principal; ``None`` on success, else the refusal."""

    def audit(self, event: str, **fields: object) -> None:
        """Write an audit event about this connection."""

    def send_text(self, data: bytes) -> None:
        """Queue one text message; ``data`` must be valid UTF-8 (we encode it ourselves)."""

    def send_binary(self, data: bytes) -> None:
        """Queue one binary message."""

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with a generic reason."""


class Session(Protocol):
    """Per-connection application logic, called by the engine."""

    def on_open(self) -> None: ...

    def on_text(self, text: str) -> None: ...

    def on_binary(self, data: bytes) -> None: ...

    def on_read_end(self) -> None:
        """The messages of one read (one or more ``on_text``/``on_binary``) were all handed
        over: act on them now. What is sent before it returns leaves in the read's write."""

    def on_close(self, code: int | None) -> None: ...

    def keeps_alive(self) -> bool:
        """Whether the connection may stay open without client messages (idle timeout)."""


class SessionFactory(Protocol):
    def __call__(self, connection: Connection, /) -> Session: ...
