"""The Python client of wsguard: ``Client`` for the WebSocket protocol, ``ApiClient`` for the
internal API. See docs/howto/python-client.md."""

from __future__ import annotations

from wsguard.client.api import ApiClient
from wsguard.client.connection import Client
from wsguard.client.dial import CredentialProvider
from wsguard.client.errors import ClientError
from wsguard.client.link import State
from wsguard.client.message import History, Message, Position
from wsguard.client.policy import backoff_delay, close_action, handshake_action
from wsguard.client.subscription import Subscription

__all__ = [
    "ApiClient",
    "Client",
    "ClientError",
    "CredentialProvider",
    "History",
    "Message",
    "Position",
    "State",
    "Subscription",
    "backoff_delay",
    "close_action",
    "handshake_action",
]
