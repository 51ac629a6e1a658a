"""Builds a valid opening handshake that a test then varies, and settings to judge it by."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from wsguard.core.upgrade import Headers, UpgradeRequest
from wsguard.settings import Settings

# The sample nonce of RFC 6455 §1.3.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HOST = "127.0.0.1:8080"
ORIGIN = "http://127.0.0.1:8080"


def handshake(
    *,
    method: str = "GET",
    target: str = "/ws",
    version: str = "HTTP/1.1",
    peer: str = "127.0.0.1",
    is_tls: bool = False,
    set: Mapping[str, str] | None = None,
    drop: Iterable[str] = (),
    extra: Iterable[tuple[str, str]] = (),
) -> UpgradeRequest:
    """A valid handshake from 127.0.0.1 to 127.0.0.1:8080/ws, then varied.

    ``set`` replaces a field's value (or adds the field), ``drop`` removes fields, ``extra``
    appends fields (duplicates included).
    """
    fields = {
        "Host": HOST,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
        "Origin": ORIGIN,
    }
    fields.update(set or {})
    for name in drop:
        del fields[name]
    items = [*fields.items(), *extra]
    return UpgradeRequest(method, target, version, Headers(items), peer, is_tls)


def settings(**sections: Mapping[str, Any]) -> Settings:
    """Default settings with anonymous access allowed, then per-section overrides."""
    result = Settings()
    sections = {"auth": {"required": False}, **sections}
    for section, fields in sections.items():
        current = getattr(result, section)
        result = dataclasses.replace(result, **{section: dataclasses.replace(current, **fields)})
    return result
