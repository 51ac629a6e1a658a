"""Application sessions: the JSON wire protocol (DESIGN.md §6) and the conformance echo.

In this release the wire protocol answers ``ping``, ``auth`` and ``refresh`` and refuses
everything else with an error reply; channels, publish, rpc and the rest build on the same
dispatch.
"""

from __future__ import annotations

from typing import Any

import orjson

from wsguard.codes import ReplyCode
from wsguard.server.authflow import AuthFlow
from wsguard.server.engine import Connection

__all__ = ["EchoSession", "ProtocolSession"]

# Reply ids are echoed back; bound them so a reply can't be used to amplify a message.
_MAX_ID_LENGTH = 64
_MAX_ID_VALUE = 2**53 - 1  # the largest integer JavaScript represents exactly


def _error(code: ReplyCode, reason: str, message: str, msg_id: object = None) -> bytes:
    reply: dict[str, Any] = {
        "ok": False,
        "error": {"code": int(code), "reason": reason, "message": message},
    }
    if msg_id is not None:
        reply = {"id": msg_id, **reply}
    return orjson.dumps(reply)


def _valid_id(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value <= _MAX_ID_VALUE
    return isinstance(value, str) and 0 < len(value) <= _MAX_ID_LENGTH


class ProtocolSession:
    """Speaks the wsguard wire protocol on one connection."""

    __slots__ = ("auth", "conn")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.auth = AuthFlow(conn, conn.auth.settings, self._welcome)

    def on_open(self) -> None:
        if self.conn.principal.is_pending:
            return  # welcome after {"op": "auth"} succeeds
        self._welcome()
        self.auth.start()

    def _welcome(self) -> None:
        principal = self.conn.principal
        welcome = {
            "push": "welcome",
            "server": "wsguard",
            "protocol": 1,
            "user": principal.user_id,
            "auth": principal.method,
        }
        self.conn.send_text(orjson.dumps(welcome))

    def on_text(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.conn.send_text(_error(ReplyCode.BAD_REQUEST, "bad_json", "invalid JSON"))
            return
        if not isinstance(message, dict):
            self.conn.send_text(
                _error(ReplyCode.BAD_REQUEST, "bad_envelope", "a message is a JSON object")
            )
            return
        msg_id = message.get("id")
        if msg_id is not None and not _valid_id(msg_id):
            self.conn.send_text(
                _error(
                    ReplyCode.BAD_REQUEST,
                    "bad_id",
                    "id must be a non-negative integer or a short string",
                )
            )
            return
        op = message.get("op")
        if not isinstance(op, str):
            self.conn.send_text(
                _error(ReplyCode.BAD_REQUEST, "bad_envelope", "op must be a string", msg_id)
            )
        elif self.conn.principal.is_pending and op != "auth":
            # Nothing but authentication until the first message authenticated the socket.
            self.conn.send_text(
                _error(ReplyCode.UNAUTHORIZED, "auth_required", "authenticate first", msg_id)
            )
        elif op == "ping":
            self.conn.send_text(orjson.dumps({"id": msg_id, "ok": True, "result": {}}))
        elif op == "auth":
            if not self.conn.principal.is_pending:
                self.conn.send_text(
                    _error(ReplyCode.CONFLICT, "already_authenticated", "use refresh", msg_id)
                )
            else:
                self.auth.handle(msg_id, message, refresh=False)
        elif op == "refresh":
            if self.conn.principal.is_anonymous:
                self.conn.send_text(
                    _error(ReplyCode.BAD_REQUEST, "nothing_to_refresh", "not authenticated", msg_id)
                )
            else:
                self.auth.handle(msg_id, message, refresh=True)
        else:
            self.conn.send_text(_error(ReplyCode.NOT_FOUND, "unknown_op", "unknown op", msg_id))

    def on_binary(self, data: bytes) -> None:
        self.conn.send_text(
            _error(ReplyCode.BAD_REQUEST, "binary_unsupported", "messages are JSON text frames")
        )

    def on_close(self, code: int | None) -> None:
        self.auth.cancel()

    def keeps_alive(self) -> bool:
        return False


class EchoSession:
    """Echoes every data message back unchanged (``server.echo``: conformance and benchmarks)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def on_open(self) -> None:
        pass

    def on_text(self, text: str) -> None:
        self.conn.send_text(text.encode())

    def on_binary(self, data: bytes) -> None:
        self.conn.send_binary(data)

    def on_close(self, code: int | None) -> None:
        pass

    def keeps_alive(self) -> bool:
        return True
