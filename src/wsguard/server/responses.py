"""HTTP responses of the public listener: rejections, and the few plain HTTP paths it serves.

The public listener speaks only WebSocket plus ``GET /healthz`` and the browser client
(``GET /wsguard.js`` and its TypeScript declarations ``GET /wsguard.d.ts``, static files shipped
in the package). A small public surface is a security feature: no ``Server`` version, no
cookies, a fixed body per status, ``Connection: close`` on everything but a 101, and
``Cache-Control: no-store`` on everything. Embedders (the demo) may add pages: static bytes, or
a callable that answers the request itself.
"""

from __future__ import annotations

import email.utils
import functools
import http
import time
from collections.abc import Callable, Mapping
from importlib import resources

from websockets.datastructures import Headers as WsHeaders
from websockets.http11 import Response

from wsguard.core.decisions import Reject
from wsguard.core.upgrade import UpgradeRequest

__all__ = [
    "DynamicPage",
    "Page",
    "StaticPage",
    "generic_reject",
    "http_date",
    "json_response",
    "reject_response",
    "route",
]

_SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
)
# Pages run no inline script and load nothing from elsewhere.
_PAGE_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
)


class _Date:
    """The ``Date`` header's value (RFC 9110 §6.6.1): it names whole seconds, so it is
    formatted once per second, not once per response."""

    second = -1
    value = ""


def http_date(now: float) -> str:
    """The ``Date`` header value at ``now`` (seconds since the epoch), such as
    ``Thu, 03 Dec 2026 17:10:24 GMT``."""
    second = int(now)
    if _Date.second != second:
        _Date.value = email.utils.formatdate(second, usegmt=True)
        _Date.second = second
    return _Date.value


def generic_reject(status: int, audit_reason: str) -> Reject:
    """A rejection with the generic phrase of ``status`` as its only public text."""
    return Reject(status, http.HTTPStatus(status).phrase, audit_reason)


def _response(
    status: int, body: bytes, content_type: str, extra: tuple[tuple[str, str], ...] = ()
) -> Response:
    headers = WsHeaders(
        [
            ("Date", http_date(time.time())),
            ("Connection", "close"),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            *_SECURITY_HEADERS,
            *extra,
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def reject_response(decision: Reject) -> Response:
    """The HTTP response for a rejected handshake: status, fixed phrase, nothing else."""
    body = f"{decision.status} {decision.public_reason}\n".encode()
    return _response(decision.status, body, "text/plain; charset=utf-8", decision.headers)


StaticPage = tuple[bytes, str]  # body, content type
# Answers its request itself (the demo's ticket endpoint). It runs before the Host check of the
# handshake pipeline, so it must do its own checks on whatever it trusts.
DynamicPage = Callable[[UpgradeRequest], Response]
Page = StaticPage | DynamicPage


# Served by every listener: the browser client, so that a page of the app can import it from
# the WebSocket server itself (same bytes as the installed package, no build step).
_CLIENT_FILES = {
    "/wsguard.js": ("wsguard.js", "text/javascript; charset=utf-8"),
    "/wsguard.d.ts": ("wsguard.d.ts", "text/plain; charset=utf-8"),
}


# A module script from another origin (the app's page importing wss://ws.example.com's
# wsguard.js) needs CORS. The files are public and carry no credential, so any origin may read
# them; nothing else on the listener gets this header.
_CLIENT_HEADERS = (*_PAGE_HEADERS, ("Access-Control-Allow-Origin", "*"))


@functools.cache
def _client_file(path: str) -> StaticPage:
    name, content_type = _CLIENT_FILES[path]
    return resources.files("wsguard.static").joinpath(name).read_bytes(), content_type


def json_response(status: int, body: bytes) -> Response:
    """A JSON response (``body`` already serialized) with the listener's security headers."""
    return _response(status, body, "application/json")


def route(request: UpgradeRequest, pages: Mapping[str, Page]) -> Response | None:
    """Answer a request for a path other than the WebSocket path, or ``None`` to let the
    handshake pipeline refuse it (404 for unknown paths, after the same Host checks).

    ``pages`` are the pages this listener serves (the demo's, in demo mode), besides the
    browser client every listener serves: a static page is sent as is with the page headers
    (CSP), a dynamic one builds the whole response."""
    if request.path == "/healthz":
        return _response(200, b'{"status":"ok"}\n', "application/json")
    page = pages.get(request.path)
    if page is None:
        if request.path not in _CLIENT_FILES:
            return None
        body, content_type = _client_file(request.path)
        return _response(200, body, content_type, _CLIENT_HEADERS)
    if isinstance(page, tuple):
        body, content_type = page
        return _response(200, body, content_type, _PAGE_HEADERS)
    return page(request)
