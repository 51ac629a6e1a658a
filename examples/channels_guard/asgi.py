"""A minimal Django + Channels project whose WebSocket routes sit behind ``wsguard.asgi.Guard``.

Run (from the repository root)::

    daphne examples.channels_guard.asgi:application

then open http://127.0.0.1:8000/. The page fetches a ticket from ``POST /ticket/`` and connects
to ``/ws/?ticket=...``; the consumer echoes. The guard refuses a foreign Origin, a missing or
replayed ticket and a message over 4096 bytes (close 1009) before the consumer runs. daphne
does not offer the ASGI "websocket.http.response" extension, so every refused handshake is
answered with daphne's own HTTP 403 (see docs/howto/protect-an-asgi-app.md).

The ticket secret comes from ``WSGUARD_TICKET_SECRET`` (32+ bytes); when it is unset, this
example makes up one for the process.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.channels_guard.settings")
if len(os.environ.get("WSGUARD_TICKET_SECRET", "")) < 32:
    os.environ["WSGUARD_TICKET_SECRET"] = secrets.token_urlsafe(48)

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()  # sets Django up before consumers are imported

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402
from examples.channels_guard.consumers import EchoConsumer  # noqa: E402

from wsguard.asgi import Guard  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": Guard(
            URLRouter([path("ws/", EchoConsumer.as_asgi())]),
            Path(__file__).with_name("wsguard.toml"),
        ),
    }
)
