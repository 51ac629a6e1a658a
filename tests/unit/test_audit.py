"""The audit log's handshake event: the same line, field for field and in the same order, as
the generic ``emit`` path wrote it, and nothing built when no handler wants INFO."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from wsguard.audit import AuditLog, _clip
from wsguard.core.decisions import ANONYMOUS, PENDING, Accept, Principal, Reject
from wsguard.core.upgrade import Headers, UpgradeRequest


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _audit(name: str, level: int = logging.INFO) -> tuple[AuditLog, Capture]:
    logger = logging.getLogger(f"test.audit.{name}")
    logger.handlers[:] = []
    capture = Capture()
    logger.addHandler(capture)
    logger.setLevel(level)
    logger.propagate = False
    return AuditLog(logger=logger), capture


def reference(audit: AuditLog, request: Any, peer: Any, decision: Any) -> None:
    """AuditLog.handshake as it was: everything through emit(**fields)."""
    fields: dict[str, object] = {
        "peer": peer,
        "path": _clip(request.path) if request else None,
        "host": _clip(request.headers.get("host")) if request else None,
        "origin": _clip(request.headers.get("origin")) if request else None,
    }
    if isinstance(decision, Accept):
        audit.emit(
            "handshake_accepted",
            decision="accept",
            client_ip=decision.client_ip,
            user=decision.principal.user_id,
            auth=decision.principal.method,
            **fields,
        )
    else:
        audit.emit(
            "handshake_rejected",
            decision="reject",
            status=decision.status,
            reason=decision.audit_reason,
            **fields,
        )


def _request(*headers: tuple[str, str], target: str = "/ws?ticket=secret") -> UpgradeRequest:
    return UpgradeRequest("GET", target, "HTTP/1.1", Headers(headers), "10.0.0.1")


REQUESTS = [
    None,
    _request(),
    _request(("Host", "example.com"), ("Origin", "https://app.example.com")),
    _request(("HOST", "example.com"), ("origin", "null"), ("Host", "second.example")),
    _request(("Host", "h" * 300), ("Origin", "https://" + "o" * 300), target="/" + "p" * 300),
]
DECISIONS: list[Accept | Reject] = [
    Accept(Principal("alice", "jwt", expires_at=1.0), "10.0.0.1", "https://app.example.com"),
    Accept(ANONYMOUS, "2001:db8::/64"),
    Accept(PENDING, "127.0.0.1"),
    Accept(Principal("bob", "basic"), None),  # type: ignore[arg-type]
    Reject(403, "Forbidden", "origin_not_allowed"),
    Reject(401, "Unauthorized", "bad_signature", (("WWW-Authenticate", "Basic"),)),
]


@pytest.mark.parametrize("request_", REQUESTS)
@pytest.mark.parametrize("decision", DECISIONS)
@pytest.mark.parametrize("peer", ["10.0.0.1:5555", None])
def test_handshake_line_is_the_one_emit_wrote(
    request_: Any, decision: Any, peer: Any, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("wsguard.audit.time.time", lambda: 1_700_000_000.12345)
    audit, capture = _audit("same")
    audit.handshake(request_, peer, decision)
    reference(audit, request_, peer, decision)
    new, old = capture.lines
    assert new == old
    assert list(orjson.loads(new)) == list(orjson.loads(old))  # key order too


def test_no_secret_reaches_the_handshake_line():
    audit, capture = _audit("secrets")
    request = _request(("Host", "example.com"), ("Authorization", "Bearer tok"), ("Cookie", "c=1"))
    audit.handshake(request, "10.0.0.1:1", DECISIONS[0])
    (line,) = capture.lines
    assert "secret" not in line
    assert "tok" not in line
    assert "c=1" not in line
    assert orjson.loads(line)["path"] == "/ws"


def test_nothing_is_built_or_written_when_no_handler_wants_info(monkeypatch: pytest.MonkeyPatch):
    audit, capture = _audit("quiet", level=logging.WARNING)

    def fail(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("built a line nobody reads")

    monkeypatch.setattr("wsguard.audit.orjson.dumps", fail)
    audit.handshake(REQUESTS[1], "peer", DECISIONS[0])
    audit.emit("connection_closed", peer="p")
    assert capture.lines == []


def test_disabled_audit_writes_nothing():
    audit, capture = _audit("disabled")
    audit.enabled = False
    audit.handshake(REQUESTS[1], "peer", DECISIONS[0])
    audit.closed("peer", "10.0.0.1", "alice", 1000, "bye")
    assert capture.lines == []
