"""wsguard: a secure-by-default WebSocket server for Python."""

from __future__ import annotations

from wsguard.exceptions import (
    ConfigError,
    Disconnect,
    HandshakeRejected,
    InvalidState,
    ProtocolError,
    ReplyError,
    WsGuardError,
)
from wsguard.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Disconnect",
    "HandshakeRejected",
    "InvalidState",
    "ProtocolError",
    "ReplyError",
    "Settings",
    "WsGuardError",
    "__version__",
]
