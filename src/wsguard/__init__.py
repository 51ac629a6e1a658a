"""wsguard: a secure-by-default WebSocket server for Python."""

from __future__ import annotations

from wsguard.app import App
from wsguard.exceptions import (
    ConfigError,
    Disconnect,
    HandshakeRejected,
    InvalidState,
    ProtocolError,
    ReplyError,
    WsGuardError,
)
from wsguard.server.lifecycle import Server
from wsguard.server.rpc import RpcContext
from wsguard.settings import ChannelConfig, Settings

__version__ = "0.1.0"

__all__ = [
    "App",
    "ChannelConfig",
    "ConfigError",
    "Disconnect",
    "HandshakeRejected",
    "InvalidState",
    "ProtocolError",
    "ReplyError",
    "RpcContext",
    "Server",
    "Settings",
    "WsGuardError",
    "__version__",
]
