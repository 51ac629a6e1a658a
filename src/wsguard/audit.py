"""The audit log: one structured JSON event per security decision.

Events carry time, peer, client IP, user, origin, host, path and a reason code. They never carry
tokens, cookies, query strings, header values other than Origin/Host, or message bodies: the
query string is where tickets live, and a log line must be worthless to whoever reads it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import orjson

from wsguard.core.decisions import Accept

if TYPE_CHECKING:
    from wsguard.core.decisions import Reject
    from wsguard.core.upgrade import UpgradeRequest

__all__ = ["AuditLog"]

_MAX_FIELD = 256  # peer-supplied values are truncated: the log must not be a storage channel


def _clip(value: str | None) -> str | None:
    if value is None:
        return None
    return value if len(value) <= _MAX_FIELD else value[:_MAX_FIELD] + "…"


class AuditLog:
    """Writes audit events as JSON lines to the ``wsguard.audit`` logger."""

    def __init__(self, enabled: bool = True, logger: logging.Logger | None = None) -> None:
        self.enabled = enabled
        self._logger = logger or logging.getLogger("wsguard.audit")

    def _active(self) -> bool:
        # logger.info would drop the line anyway (no handler wants INFO): skip building it.
        return self.enabled and self._logger.isEnabledFor(logging.INFO)

    def emit(self, event: str, **fields: object) -> None:
        """Write one event. ``fields`` must already be free of secrets."""
        if not self._active():
            return
        record = {"ts": round(time.time(), 3), "event": event}
        record.update({k: v for k, v in fields.items() if v is not None})
        self._logger.info(orjson.dumps(record).decode())

    def handshake(
        self, request: UpgradeRequest | None, peer: str, decision: Accept | Reject
    ) -> None:
        """One event per handshake decision (accepted or rejected)."""
        if not self._active():
            return
        # Built in place, once per handshake: the same keys, in the same order, and None
        # values left out, as emit() would write them.
        record: dict[str, object]
        if isinstance(decision, Accept):
            principal = decision.principal
            record = {
                "ts": round(time.time(), 3),
                "event": "handshake_accepted",
                "decision": "accept",
            }
            if decision.client_ip is not None:
                record["client_ip"] = decision.client_ip
            if principal.user_id is not None:
                record["user"] = principal.user_id
            record["auth"] = principal.method
        else:
            record = {
                "ts": round(time.time(), 3),
                "event": "handshake_rejected",
                "decision": "reject",
                "status": decision.status,
                "reason": decision.audit_reason,
            }
        if peer is not None:
            record["peer"] = peer
        if request is not None:
            record["path"] = _clip(request.path)
            headers = request.headers
            host = headers.get("host")
            if host is not None:
                record["host"] = _clip(host)
            origin = headers.get("origin")
            if origin is not None:
                record["origin"] = _clip(origin)
        self._logger.info(orjson.dumps(record).decode())

    def closed(
        self, peer: str, client_ip: str, user: str | None, code: int | None, reason: str
    ) -> None:
        """One event when an accepted connection ends."""
        self.emit(
            "connection_closed",
            peer=peer,
            client_ip=client_ip,
            user=user,
            code=code,
            reason=reason,
        )
