"""Requests waiting for their replies, matched by id (docs/reference/wire-protocol.md#ids)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from wsguard.client.errors import ClientError

__all__ = ["Hook", "Pending", "PendingTable", "decode", "error_of"]

log = logging.getLogger("wsguard.client")

Hook = Callable[[Any, ClientError | None], None]
"""Called by the reader with ``(result, None)`` or ``(None, error)``, before the next frame."""


@dataclass(slots=True)
class Pending:
    """One request: a caller's future, and/or a hook the reader calls synchronously."""

    future: asyncio.Future[Any] | None
    hook: Hook | None

    def settle(self, result: Any, error: ClientError | None) -> None:
        if self.hook is not None:
            try:
                self.hook(result, error)
            except Exception:
                log.exception("reply hook failed")
        future = self.future
        if future is not None and not future.done():
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)


class PendingTable:
    """Integer ids from 1 up, one per request of the client's lifetime."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._entries: dict[int, Pending] = {}

    def add(self, pending: Pending) -> int:
        request_id = next(self._ids)
        self._entries[request_id] = pending
        return request_id

    def discard(self, request_id: int) -> None:
        self._entries.pop(request_id, None)

    def reply(self, frame: dict[str, Any]) -> ClientError | None:
        """Settle the request ``frame`` answers; returns an error reply nobody waits for
        (refused before its id was read, such as ``rate_limited``, or late after a timeout)."""
        request_id = frame.get("id")
        pending = self._entries.pop(request_id, None) if type(request_id) is int else None
        error = None if frame.get("ok") is True else error_of(frame)
        if pending is None:
            return error
        pending.settle(frame.get("result"), error)
        return None

    def fail_all(self, error: ClientError) -> None:
        entries, self._entries = self._entries, {}
        for pending in entries.values():
            pending.settle(None, error)


def decode(text: str) -> dict[str, Any] | None:
    """A frame as a dict, or None when it is not a JSON object."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return frame if isinstance(frame, dict) else None


def error_of(frame: dict[str, Any]) -> ClientError:
    """The ``ClientError`` of an ``{"ok": false, "error": {...}}`` reply."""
    error = frame.get("error")
    if not isinstance(error, dict):
        return ClientError(0, "bad_reply", "an error reply without an error object")
    code = error.get("code")
    return ClientError(
        code if type(code) is int else 0,
        str(error.get("reason", "")),
        str(error.get("message", "")),
    )
