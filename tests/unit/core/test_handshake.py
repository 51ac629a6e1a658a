"""The handshake pipeline: request checks, stage order, caps, authentication, fail-closed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from handshake_factory import HOST, KEY, ORIGIN, handshake, settings

from wsguard.core.decisions import ANONYMOUS, PENDING, Accept, Principal, Reject
from wsguard.core.handshake import (
    AUDIT_REASONS,
    HandshakeContext,
    HandshakePipeline,
    check_request,
)
from wsguard.core.origin import OriginPolicy
from wsguard.core.upgrade import UpgradeRequest

BAD_REQUEST = "Bad Request"


def pipeline(
    authenticators: tuple[Any, ...] = (), loopback_bound: bool = True, **sections: Mapping[str, Any]
) -> HandshakePipeline:
    return HandshakePipeline(
        settings(**sections), loopback_bound=loopback_bound, authenticators=authenticators
    )


def decide(request: UpgradeRequest, **sections: Mapping[str, Any]) -> Accept | Reject:
    return pipeline(**sections).decide(request, 0.0)


@dataclass
class FakeAuth:
    """An authenticator that answers a fixed result and records its calls."""

    result: Principal | Reject | Exception | object | None
    name: str = "fake"
    calls: list[HandshakeContext] = field(default_factory=list)

    def authenticate(
        self, request: UpgradeRequest, ctx: HandshakeContext, now: float
    ) -> Principal | Reject | None:
        self.calls.append(ctx)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result  # type: ignore[return-value]


ALICE = Principal(user_id="alice", method="fake")

# ---------------------------------------------------------------- request stage


@pytest.mark.parametrize(
    ("request_", "status", "reason"),
    [
        pytest.param(handshake(method="POST"), 400, "bad_method", id="post"),
        pytest.param(handshake(method="get"), 400, "bad_method", id="lowercase-get"),
        pytest.param(handshake(version="HTTP/1.0"), 400, "bad_http_version", id="http-1.0"),
        pytest.param(handshake(version="HTTP/2"), 400, "bad_http_version", id="http-2"),
        pytest.param(handshake(target="/admin"), 404, "unknown_path", id="other-path"),
        pytest.param(handshake(target="/ws/"), 404, "unknown_path", id="trailing-slash"),
        pytest.param(handshake(target="/WS"), 404, "unknown_path", id="case"),
        pytest.param(handshake(drop=["Upgrade"]), 400, "not_upgrade", id="no-upgrade"),
        pytest.param(handshake(set={"Upgrade": "h2c"}), 400, "not_upgrade", id="other-upgrade"),
        pytest.param(
            handshake(set={"Upgrade": "websocket2"}), 400, "not_upgrade", id="token-prefix"
        ),
        pytest.param(
            handshake(set={"Upgrade": "websoc\u212aet"}), 400, "not_upgrade", id="kelvin-sign"
        ),
        pytest.param(handshake(drop=["Connection"]), 400, "bad_connection_header", id="no-conn"),
        pytest.param(
            handshake(set={"Connection": "keep-alive"}), 400, "bad_connection_header", id="ka"
        ),
        pytest.param(
            handshake(set={"Connection": "upgraded"}), 400, "bad_connection_header", id="prefix"
        ),
        pytest.param(handshake(drop=["Sec-WebSocket-Key"]), 400, "bad_key", id="missing-key"),
        pytest.param(handshake(set={"Sec-WebSocket-Key": ""}), 400, "bad_key", id="empty-key"),
        pytest.param(
            handshake(set={"Sec-WebSocket-Key": "not base64 at all!!!!!=="}),
            400,
            "bad_key",
            id="not-base64",
        ),
        pytest.param(
            handshake(set={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
            400,
            "bad_key",
            id="21-bytes",
        ),
        pytest.param(
            handshake(set={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA"}), 400, "bad_key", id="15"
        ),
        pytest.param(
            handshake(set={"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ"}),
            400,
            "bad_key",
            id="unpadded",
        ),
        pytest.param(
            handshake(set={"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZR=="}),
            400,
            "bad_key",
            id="non-canonical-bits",
        ),
        pytest.param(
            handshake(set={"Sec-WebSocket-Key": " " + KEY}), 400, "bad_key", id="key-space"
        ),
        pytest.param(handshake(extra=[("Host", HOST)]), 400, "duplicate_header", id="two-hosts"),
        pytest.param(
            handshake(extra=[("Origin", "http://evil.test")]),
            400,
            "duplicate_header",
            id="two-origins",
        ),
        pytest.param(
            handshake(extra=[("Sec-WebSocket-Key", KEY)]), 400, "duplicate_header", id="two-keys"
        ),
        pytest.param(
            handshake(extra=[("Sec-WebSocket-Version", "13")]),
            400,
            "duplicate_header",
            id="two-versions",
        ),
        pytest.param(
            handshake(extra=[("Upgrade", "websocket")]), 400, "duplicate_header", id="two-upgrades"
        ),
        pytest.param(
            handshake(extra=[("Transfer-Encoding", "chunked")]), 400, "request_body", id="te"
        ),
        pytest.param(
            handshake(extra=[("Transfer-Encoding", "")]), 400, "request_body", id="empty-te"
        ),
        pytest.param(
            handshake(extra=[("Content-Length", "5")]), 400, "request_body", id="content-length"
        ),
        pytest.param(
            handshake(extra=[("Content-Length", "0"), ("Content-Length", "1")]),
            400,
            "request_body",
            id="two-content-lengths",
        ),
    ],
)
def test_malformed_handshake_is_rejected_with_exact_status(
    request_: UpgradeRequest, status: int, reason: str
):
    result = decide(request_)
    assert isinstance(result, Reject)
    assert (result.status, result.audit_reason) == (status, reason)
    assert result.public_reason == {400: BAD_REQUEST, 404: "Not Found"}[status]
    assert result.headers == ()


@pytest.mark.parametrize(
    "version",
    [
        pytest.param(None, id="missing"),
        pytest.param("8", id="old"),
        pytest.param("13, 8", id="list"),
        pytest.param(" 13", id="space"),
        pytest.param("", id="empty"),
    ],
)
def test_unsupported_version_gets_426_naming_version_13(version: str | None):
    request = (
        handshake(drop=["Sec-WebSocket-Version"])
        if version is None
        else handshake(set={"Sec-WebSocket-Version": version})
    )
    assert decide(request) == Reject(
        426, "Upgrade Required", "bad_version", (("Sec-WebSocket-Version", "13"),)
    )


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(handshake(), id="plain"),
        pytest.param(handshake(target="/ws?ticket=abc"), id="query-ignored-for-path"),
        pytest.param(handshake(set={"Upgrade": "WebSocket"}), id="upgrade-case"),
        pytest.param(handshake(set={"Upgrade": "h2c, websocket"}), id="upgrade-list"),
        pytest.param(handshake(set={"Connection": "keep-alive, Upgrade"}), id="conn-list"),
        pytest.param(handshake(set={"Connection": "UPGRADE"}), id="conn-case"),
        pytest.param(
            handshake(drop=["Connection"], extra=[("Connection", "x"), ("Connection", "upgrade")]),
            id="two-connection-fields",
        ),
        pytest.param(handshake(extra=[("Content-Length", "0")]), id="content-length-zero"),
        pytest.param(handshake(set={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAA=="}), id="k"),
    ],
)
def test_valid_handshake_variants_pass_the_request_stage(request_: UpgradeRequest):
    assert check_request(request_, "/ws") is None


def test_request_stage_uses_configured_ws_path():
    result = decide(handshake(target="/socket"), server={"ws_path": "/socket"})
    assert isinstance(result, Accept)


# ---------------------------------------------------------------- accept


def test_valid_handshake_is_accepted_with_vary_and_echoed_origin():
    assert decide(handshake()) == Accept(
        ANONYMOUS,
        "127.0.0.1",
        ORIGIN,
        None,
        (("Vary", "Origin"), ("Access-Control-Allow-Origin", ORIGIN)),
    )


def test_accept_without_origin_sends_only_vary():
    result = decide(handshake(drop=["Origin"]), origins={"allow_missing": True})
    assert result == Accept(ANONYMOUS, "127.0.0.1", None, None, (("Vary", "Origin"),))


def test_accepted_origin_is_echoed_serialized():
    result = decide(handshake(set={"Origin": "HTTP://127.0.0.1.:8080"}))
    assert isinstance(result, Accept)
    assert result.origin == ORIGIN


# ---------------------------------------------------------------- stages through the pipeline


@pytest.mark.parametrize(
    ("request_", "sections", "status", "reason"),
    [
        pytest.param(handshake(drop=["Host"]), {}, 400, "missing_host", id="missing-host"),
        pytest.param(handshake(set={"Host": "a b"}), {}, 400, "host_malformed", id="bad-host"),
        pytest.param(
            handshake(set={"Host": "evil.test:8080"}), {}, 400, "host_not_allowed", id="rebind"
        ),
        pytest.param(handshake(drop=["Origin"]), {}, 403, "origin_missing", id="no-origin"),
        pytest.param(handshake(set={"Origin": "null"}), {}, 403, "origin_null", id="null"),
        pytest.param(
            handshake(set={"Origin": ORIGIN + "/"}), {}, 403, "origin_malformed", id="slash"
        ),
        pytest.param(
            handshake(set={"Origin": "http://evil.test"}),
            {},
            403,
            "origin_not_allowed",
            id="foreign",
        ),
        pytest.param(
            handshake(drop=["Origin"], extra=[("Cookie", "sid=1")]),
            {"origins": {"allow_missing": True}},
            403,
            "origin_missing_with_credentials",
            id="cookie-no-origin",
        ),
        pytest.param(
            handshake(drop=["Origin"], extra=[("Authorization", "Basic dTpw")]),
            {"origins": {"allow_missing": True}},
            403,
            "origin_missing_with_credentials",
            id="basic-no-origin",
        ),
        pytest.param(handshake(peer="203.0.113.9"), {}, 403, "plaintext", id="remote-plain"),
        pytest.param(
            handshake(),
            {"auth": {"required": True, "methods": ("cookie",)}},
            401,
            "auth_required",
            id="anonymous",
        ),
    ],
)
def test_stage_rejection_has_exact_status_and_reason(
    request_: UpgradeRequest, sections: dict[str, Any], status: int, reason: str
):
    result = decide(request_, **sections)
    assert isinstance(result, Reject)
    assert (result.status, result.audit_reason) == (status, reason)
    assert AUDIT_REASONS[reason] == status


def test_host_stage_runs_before_origin_stage():
    request = handshake(set={"Host": "evil.test", "Origin": "http://evil.test"})
    assert decide(request) == Reject(400, BAD_REQUEST, "host_not_allowed")


def test_origin_stage_runs_before_transport_stage():
    request = handshake(peer="203.0.113.9", set={"Origin": "http://evil.test"})
    assert decide(request) == Reject(403, "Forbidden", "origin_not_allowed")


def test_scheme_from_trusted_proxy_decides_same_origin_and_default_port():
    request = handshake(
        peer="10.0.0.5",
        set={"Host": "app.example.com", "Origin": "https://app.example.com"},
        extra=[("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "198.51.100.7")],
    )
    result = pipeline(
        loopback_bound=False,
        server={"trusted_proxies": ("10.0.0.0/8",)},
        origins={"allowed_hosts": ("app.example.com",)},
    ).decide(request, 0.0)
    assert isinstance(result, Accept)
    assert (result.client_ip, result.origin) == ("198.51.100.7", "https://app.example.com")


def test_plaintext_client_behind_trusted_proxy_is_refused_after_origin_passes():
    request = handshake(
        peer="127.0.0.1",
        set={"Origin": "https://app.example.com"},
        extra=[("X-Forwarded-Proto", "http")],
    )
    result = decide(
        request,
        server={"trusted_proxies": ("127.0.0.1",)},
        origins={"allowed": ("https://app.example.com",)},
    )
    assert result == Reject(403, "Forbidden", "plaintext")


# ---------------------------------------------------------------- rate and caps


def test_handshake_flood_from_one_ip_gets_429_with_retry_after():
    p = pipeline(limits={"handshake_rate": 1.0, "handshake_burst": 2})
    results = [p.decide(handshake(), 0.0) for _ in range(3)]
    assert [type(r) for r in results] == [Accept, Accept, Reject]
    assert results[2] == Reject(429, "Too Many Requests", "handshake_rate", (("Retry-After", "1"),))
    assert isinstance(p.decide(handshake(), 1.0), Accept)  # refilled one token


def test_handshake_rate_is_per_client_ip():
    p = pipeline(
        limits={"handshake_rate": 0.001, "handshake_burst": 1}, server={"allow_plaintext": True}
    )
    assert isinstance(p.decide(handshake(peer="127.0.0.1"), 0.0), Accept)
    assert isinstance(p.decide(handshake(peer="127.0.0.2"), 0.0), Accept)
    assert isinstance(p.decide(handshake(peer="127.0.0.1"), 0.0), Reject)


def test_handshake_rate_groups_ipv6_clients_by_slash_64():
    p = pipeline(
        limits={"handshake_rate": 0.001, "handshake_burst": 1}, server={"allow_plaintext": True}
    )
    assert isinstance(p.decide(handshake(peer="2001:db8::1"), 0.0), Accept)
    result = p.decide(handshake(peer="2001:db8::2"), 0.0)
    assert isinstance(result, Reject)
    assert result.audit_reason == "handshake_rate"


def test_rejected_earlier_stage_spends_no_handshake_token():
    p = pipeline(limits={"handshake_rate": 0.001, "handshake_burst": 1})
    assert isinstance(p.decide(handshake(set={"Origin": "http://evil.test"}), 0.0), Reject)
    assert isinstance(p.decide(handshake(), 0.0), Accept)


def test_per_ip_connection_cap_gets_429_and_release_frees_the_slot():
    p = pipeline(limits={"max_connections_per_ip": 2})
    first, second = p.decide(handshake(), 0.0), p.decide(handshake(), 0.0)
    assert isinstance(first, Accept)
    assert isinstance(second, Accept)
    assert p.decide(handshake(), 0.0) == Reject(429, "Too Many Requests", "ip_connection_cap")
    p.release(first)
    assert isinstance(p.decide(handshake(), 0.0), Accept)


def test_total_connection_cap_gets_503():
    p = pipeline(limits={"max_connections": 1}, server={"allow_plaintext": True})
    assert isinstance(p.decide(handshake(peer="127.0.0.1"), 0.0), Accept)
    result = p.decide(handshake(peer="127.0.0.2"), 0.0)
    assert result == Reject(503, "Service Unavailable", "connection_cap")


def test_per_user_cap_gets_429_across_ips():
    p = pipeline(
        authenticators=(FakeAuth(ALICE),),
        limits={"max_connections_per_user": 1},
        server={"allow_plaintext": True},
    )
    assert isinstance(p.decide(handshake(peer="127.0.0.1"), 0.0), Accept)
    result = p.decide(handshake(peer="127.0.0.2"), 0.0)
    assert result == Reject(429, "Too Many Requests", "user_connection_cap")


def test_anonymous_connections_have_no_per_user_cap():
    p = pipeline(limits={"max_connections_per_user": 1})
    assert isinstance(p.decide(handshake(), 0.0), Accept)
    assert isinstance(p.decide(handshake(), 0.0), Accept)


def test_open_connections_counts_reservations_and_releases():
    p = pipeline(authenticators=(FakeAuth(ALICE),))
    accepts = [p.decide(handshake(), 0.0) for _ in range(3)]
    assert p.open_connections == 3
    for accept in accepts:
        assert isinstance(accept, Accept)
        p.release(accept)
    p.release(accepts[0])  # a second release of the same connection changes nothing
    assert p.open_connections == 0


def test_rejected_handshake_reserves_no_slot():
    p = pipeline(authenticators=(FakeAuth(ALICE),), limits={"max_connections_per_user": 1})
    p.decide(handshake(), 0.0)
    p.decide(handshake(), 0.0)  # refused by the per-user cap
    assert p.open_connections == 1


# ---------------------------------------------------------------- authentication


def test_first_authenticator_with_a_principal_wins():
    skipped, winner, never = FakeAuth(None), FakeAuth(ALICE), FakeAuth(Principal("bob", "x"))
    result = pipeline(authenticators=(skipped, winner, never)).decide(handshake(), 0.0)
    assert isinstance(result, Accept)
    assert result.principal == ALICE
    assert (len(skipped.calls), len(winner.calls), len(never.calls)) == (1, 1, 0)


def test_authenticator_sees_what_earlier_stages_established():
    auth = FakeAuth(ALICE)
    pipeline(authenticators=(auth,)).decide(handshake(), 0.0)
    assert auth.calls == [HandshakeContext("127.0.0.1", "http", "127.0.0.1", 8080, ORIGIN)]


def test_authenticator_reject_stops_with_generic_public_reason():
    bad = Reject(401, "token expired at 12:00 for alice", "jwt_expired", (("X", "y"),))
    never = FakeAuth(ALICE)
    result = pipeline(authenticators=(FakeAuth(bad), never)).decide(handshake(), 0.0)
    assert result == Reject(401, "Unauthorized", "jwt_expired", (("X", "y"),))
    assert never.calls == []


@pytest.mark.parametrize(
    ("required", "methods", "expected"),
    [
        pytest.param(False, ("cookie",), ANONYMOUS, id="optional-anonymous"),
        pytest.param(
            True, ("cookie",), Reject(401, "Unauthorized", "auth_required"), id="required-401"
        ),
        pytest.param(True, ("ticket",), PENDING, id="ticket-may-come-in-first-message"),
        pytest.param(True, ("cookie", "jwt"), PENDING, id="jwt-may-come-in-first-message"),
    ],
)
def test_no_credential_is_anonymous_pending_or_401(
    required: bool, methods: tuple[str, ...], expected: Principal | Reject
):
    p = pipeline(authenticators=(FakeAuth(None),), auth={"required": required, "methods": methods})
    result = p.decide(handshake(), 0.0)
    assert (result.principal if isinstance(result, Accept) else result) == expected


def test_anonymous_principal_from_an_authenticator_does_not_satisfy_required_auth():
    p = pipeline(
        authenticators=(FakeAuth(ANONYMOUS),), auth={"required": True, "methods": ("cookie",)}
    )
    assert p.decide(handshake(), 0.0) == Reject(401, "Unauthorized", "auth_required")


def test_required_auth_with_basic_method_challenges_for_basic():
    p = pipeline(auth={"required": True, "methods": ("basic",)})
    assert p.decide(handshake(), 0.0) == Reject(
        401, "Unauthorized", "auth_required", (("WWW-Authenticate", 'Basic realm="wsguard"'),)
    )


# ---------------------------------------------------------------- fail closed

INTERNAL_ERROR = Reject(500, "Internal Server Error", "internal_error")


@pytest.mark.parametrize(
    "result",
    [
        pytest.param(RuntimeError("boom"), id="raises"),
        pytest.param("alice", id="returns-a-string"),
        pytest.param(Reject(999, "?", "weird_status"), id="reject-with-unknown-status"),
    ],
)
def test_misbehaving_authenticator_fails_closed_with_500(result: object):
    p = pipeline(authenticators=(FakeAuth(result),))
    assert p.decide(handshake(), 0.0) == INTERNAL_ERROR
    assert p.open_connections == 0


def test_exception_inside_a_stage_fails_closed_with_500(monkeypatch: pytest.MonkeyPatch):
    p = pipeline()

    def explode(*args: object, **kwargs: object) -> None:
        raise ValueError("bug")

    monkeypatch.setattr(OriginPolicy, "check", explode)
    assert p.decide(handshake(), 0.0) == INTERNAL_ERROR


def test_request_that_is_not_even_an_upgrade_request_fails_closed():
    assert pipeline().decide(None, 0.0) == INTERNAL_ERROR  # type: ignore[arg-type]


def test_every_reason_code_maps_to_its_documented_status():
    assert AUDIT_REASONS == {
        "bad_method": 400,
        "bad_http_version": 400,
        "not_upgrade": 400,
        "bad_connection_header": 400,
        "bad_key": 400,
        "bad_version": 426,
        "duplicate_header": 400,
        "request_body": 400,
        "unknown_path": 404,
        "missing_host": 400,
        "host_malformed": 400,
        "host_not_allowed": 400,
        "origin_missing": 403,
        "origin_null": 403,
        "origin_malformed": 403,
        "origin_not_allowed": 403,
        "origin_missing_with_credentials": 403,
        "plaintext": 403,
        "handshake_rate": 429,
        "ip_connection_cap": 429,
        "connection_cap": 503,
        "user_connection_cap": 429,
        "auth_required": 401,
        "internal_error": 500,
    }
