"""Tickets: signed, origin-bound, expiring, single-use credentials (DESIGN.md §4)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from handshake_factory import ORIGIN, handshake, settings
from hypothesis import given
from hypothesis import strategies as st

from wsguard.core.auth.ticket import (
    MAX_QUERY_FIELDS,
    MAX_TICKET_LENGTH,
    TICKET_REASONS,
    TicketAuthenticator,
    TicketVerifier,
    encode_ticket,
    query_param,
)
from wsguard.core.decisions import Accept, Authenticated, Principal, Reject
from wsguard.core.handshake import HandshakeContext, HandshakePipeline

SECRET = b"k" * 32
OTHER_SECRET = b"o" * 32
JTI = "abcdefghijklmnopqrstuvwx"
APP_A = "https://a.example"
APP_B = "https://b.example"
EXP = 1000.0
NOW = 990.0

# Written out independently of TICKET_REASONS, so that a new, undocumented code fails a test.
DOCUMENTED = {
    "bad_ticket": 401,
    "expired_ticket": 401,
    "ticket_origin_mismatch": 403,
    "replayed_ticket": 401,
    "duplicate_param": 400,
    "too_many_params": 400,
}


def ticket(**overrides: Any) -> str:
    args: dict[str, Any] = {
        "ticket_id": JTI,
        "user": "alice",
        "origin": APP_A,
        "expires_at": EXP,
        "roles": ("reader",),
        "channels": ("news",),
    }
    args.update(overrides)
    return encode_ticket(SECRET, **args)


def forge(claims: dict[str, Any], secret: bytes = SECRET) -> str:
    """A correctly signed ticket around arbitrary claims (what a buggy minter could send)."""
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    mac = hmac.digest(secret, b"wsguard-ticket-v1." + payload.encode(), hashlib.sha256)
    return f"{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def claims(**overrides: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "v": 1,
        "jti": JTI,
        "sub": "alice",
        "origin": APP_A,
        "exp": EXP,
        "roles": [],
        "channels": [],
    }
    result.update(overrides)
    return result


def verify(value: str, origin: str | None = APP_A, now: float = NOW) -> Authenticated | Reject:
    return TicketVerifier(SECRET).verify(value, origin=origin, now=now)


def reason(result: object) -> tuple[int, str]:
    assert isinstance(result, Reject)
    return result.status, result.audit_reason


def ctx(origin: str | None = APP_A) -> HandshakeContext:
    return HandshakeContext("127.0.0.1", "https", "a.example", None, origin)


# --- the verifier ------------------------------------------------------------------------


def test_ticket_round_trip_gives_principal_and_single_use_id():
    result = verify(ticket())
    assert result == Authenticated(
        Principal(
            user_id="alice",
            method="ticket",
            roles=frozenset({"reader"}),
            channels=frozenset({"news"}),
            expires_at=None,
        ),
        consume=JTI,
        consume_until=EXP,
    )


def test_ticket_is_url_safe_and_has_one_dot():
    value = ticket(user="élodie ✓", roles=("a b", "c&d"))
    assert value.count(".") == 1
    assert all(c.isalnum() or c in "-_." for c in value)
    result = verify(value)
    assert isinstance(result, Authenticated)
    assert result.principal.user_id == "élodie ✓"
    assert result.principal.roles == {"a b", "c&d"}


def test_ticket_origin_is_normalised_when_minted():
    assert isinstance(verify(ticket(origin="HTTPS://A.Example:443")), Authenticated)


def test_ticket_with_integer_expiry_is_accepted():
    result = verify(ticket(expires_at=1000))
    assert isinstance(result, Authenticated)
    assert result.consume_until == 1000.0


@pytest.mark.parametrize("index", [0, 5, 20, -1])
def test_ticket_with_a_flipped_character_is_bad(index: int):
    value = ticket()
    flipped = "A" if value[index] != "A" else "B"
    tampered = value[:index] + flipped + value[index + 1 :] if index >= 0 else value[:-1] + flipped
    assert reason(verify(tampered)) == (401, "bad_ticket")


def test_ticket_with_changed_claims_and_old_signature_is_bad():
    payload, _, signature = ticket().partition(".")
    other_payload = ticket(user="mallory").partition(".")[0]
    assert payload != other_payload
    assert reason(verify(f"{other_payload}.{signature}")) == (401, "bad_ticket")


def test_ticket_signed_with_another_secret_is_bad():
    value = encode_ticket(OTHER_SECRET, ticket_id=JTI, user="alice", origin=APP_A, expires_at=EXP)
    assert reason(verify(value)) == (401, "bad_ticket")


def test_ticket_mac_is_domain_separated_from_a_bare_hmac():
    payload = ticket().partition(".")[0]
    bare = hmac.digest(SECRET, payload.encode(), hashlib.sha256)
    value = f"{payload}.{base64.urlsafe_b64encode(bare).rstrip(b'=').decode()}"
    assert reason(verify(value)) == (401, "bad_ticket")


def test_ticket_with_padded_signature_is_bad():
    assert reason(verify(ticket() + "=")) == (401, "bad_ticket")


@pytest.mark.parametrize("now", [EXP, EXP + 1])
def test_ticket_at_or_after_expiry_is_expired(now: float):
    assert reason(verify(ticket(), now=now)) == (401, "expired_ticket")


def test_ticket_just_before_expiry_is_accepted():
    assert isinstance(verify(ticket(), now=EXP - 0.001), Authenticated)


def test_ticket_for_app_a_replayed_from_origin_b_is_forbidden():
    assert reason(verify(ticket(origin=APP_A), origin=APP_B)) == (403, "ticket_origin_mismatch")


def test_ticket_presented_without_origin_is_forbidden():
    assert reason(verify(ticket(), origin=None)) == (403, "ticket_origin_mismatch")


def test_ticket_origin_port_matters():
    assert reason(verify(ticket(), origin=APP_A + ":8443")) == (403, "ticket_origin_mismatch")


def test_oversized_ticket_is_bad_before_parsing():
    # Correctly signed, so only the length check can refuse it.
    big = forge(claims(roles=["r" * MAX_TICKET_LENGTH]))
    assert len(big) > MAX_TICKET_LENGTH
    assert reason(verify(big)) == (401, "bad_ticket")


@pytest.mark.parametrize(
    "value",
    [
        "",
        ".",
        "abc",
        "abc.",
        ".abc",
        "a.b.c",
        "a+b.c/d",
        "abc.d=f",
        "é.é",
        "\udc80.x",
        " " + "x" * 10,
    ],
)
def test_malformed_ticket_is_bad(value: str):
    assert reason(verify(value)) == (401, "bad_ticket")


def test_non_string_ticket_is_bad():
    assert reason(verify(None)) == (401, "bad_ticket")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"v": 2}, id="future-version"),
        pytest.param({"v": True}, id="version-bool"),
        pytest.param({"v": "1"}, id="version-str"),
        pytest.param({"jti": "short"}, id="jti-short"),
        pytest.param({"jti": "x" * 65}, id="jti-long"),
        pytest.param({"jti": "a" * 20 + "/+"}, id="jti-not-url-safe"),
        pytest.param({"jti": 12345678901234567890}, id="jti-int"),
        pytest.param({"sub": ""}, id="sub-empty"),
        pytest.param({"sub": "x" * 256}, id="sub-long"),
        pytest.param({"sub": None}, id="sub-null"),
        pytest.param({"origin": 1}, id="origin-int"),
        pytest.param({"exp": "1000"}, id="exp-str"),
        pytest.param({"exp": True}, id="exp-bool"),
        pytest.param({"exp": 10**400}, id="exp-beyond-float"),
        pytest.param({"roles": "admin"}, id="roles-str"),
        pytest.param({"roles": [1]}, id="roles-int"),
        pytest.param({"channels": {"a": 1}}, id="channels-object"),
        pytest.param({"extra": 1}, id="unknown-field"),
    ],
)
def test_signed_ticket_with_bad_claims_is_bad(bad: dict[str, Any]):
    assert reason(verify(forge(claims(**bad)))) == (401, "bad_ticket")


@pytest.mark.parametrize("field", ["v", "jti", "sub", "origin", "exp", "roles", "channels"])
def test_signed_ticket_missing_a_claim_is_bad(field: str):
    incomplete = claims()
    del incomplete[field]
    assert reason(verify(forge(incomplete))) == (401, "bad_ticket")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"[1, 2]", id="json-array"),
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b'{"v":1,"exp":Infinity}', id="infinity"),
        pytest.param(b'{"v":1,"exp":NaN}', id="nan"),
        pytest.param(b"[" * 1400, id="deep-nesting"),  # RecursionError in json, under 2 KiB
    ],
)
def test_signed_ticket_with_bad_payload_is_bad(payload: bytes):
    encoded = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    mac = hmac.digest(SECRET, b"wsguard-ticket-v1." + encoded.encode(), hashlib.sha256)
    value = f"{encoded}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert len(value) <= MAX_TICKET_LENGTH
    assert reason(verify(value)) == (401, "bad_ticket")


def test_signed_payload_with_impossible_base64_length_is_bad():
    payload = "abcde"  # 5 characters: no base64 string has length 1 mod 4
    mac = hmac.digest(SECRET, b"wsguard-ticket-v1." + payload.encode(), hashlib.sha256)
    value = f"{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert reason(verify(value)) == (401, "bad_ticket")


@given(st.text(max_size=3000))
def test_arbitrary_text_gets_a_documented_reason(value: str):
    result = verify(value)
    assert isinstance(result, Reject)
    assert DOCUMENTED[result.audit_reason] == result.status


@given(st.text(alphabet="ABCDEFabcdef0123456789-_.", max_size=400))
def test_arbitrary_ticket_shaped_text_gets_a_documented_reason(value: str):
    result = verify(value)
    assert isinstance(result, Reject)
    assert DOCUMENTED[result.audit_reason] == result.status


def test_reasons_are_documented():
    assert set(TICKET_REASONS) == set(DOCUMENTED)


def test_verifier_refuses_short_secret():
    with pytest.raises(ValueError, match="32 bytes"):
        TicketVerifier(b"short")


# --- encode_ticket validation ------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"ticket_id": "short"}, id="id-short"),
        pytest.param({"ticket_id": "x" * 65}, id="id-long"),
        pytest.param({"ticket_id": "a" * 20 + "=="}, id="id-not-url-safe"),
        pytest.param({"user": ""}, id="user-empty"),
        pytest.param({"user": "x" * 256}, id="user-long"),
        pytest.param({"origin": "https://a.example/"}, id="origin-path"),
        pytest.param({"origin": "null"}, id="origin-null"),
        pytest.param({"origin": "ftp://a.example"}, id="origin-scheme"),
        pytest.param({"expires_at": float("inf")}, id="exp-inf"),
        pytest.param({"expires_at": float("nan")}, id="exp-nan"),
        pytest.param({"expires_at": "1000"}, id="exp-str"),
        pytest.param({"expires_at": True}, id="exp-bool"),
        pytest.param({"roles": "admin"}, id="roles-bare-str"),
        pytest.param({"channels": [1]}, id="channels-int"),
    ],
)
def test_encode_ticket_refuses_bad_arguments(bad: dict[str, Any]):
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        ticket(**bad)


def test_encode_ticket_refuses_short_secret():
    with pytest.raises(ValueError, match="32 bytes"):
        encode_ticket(b"s" * 31, ticket_id=JTI, user="alice", origin=APP_A, expires_at=EXP)


def test_encode_ticket_user_boundaries_are_accepted():
    assert isinstance(verify(ticket(user="x")), Authenticated)
    assert isinstance(verify(ticket(user="x" * 255)), Authenticated)


# --- the query parameter and the authenticator -------------------------------------------


def authenticate(query: str, origin: str | None = APP_A) -> object:
    authenticator = TicketAuthenticator(TicketVerifier(SECRET))
    return authenticator.authenticate(handshake(target="/ws?" + query), ctx(origin), NOW)


def test_authenticator_is_named_ticket_and_exposes_its_verifier():
    verifier = TicketVerifier(SECRET)
    authenticator = TicketAuthenticator(verifier)
    assert authenticator.name == "ticket"
    assert authenticator.verifier is verifier


def test_authenticator_verifies_the_ticket_parameter():
    result = authenticate(f"x=1&ticket={ticket()}")
    assert isinstance(result, Authenticated)
    assert result.consume == JTI


def test_authenticator_passes_the_checked_origin():
    assert reason(authenticate(f"ticket={ticket()}", origin=APP_B)) == (
        403,
        "ticket_origin_mismatch",
    )


@pytest.mark.parametrize("query", ["", "x=1", "tickets=abc", "Ticket=abc"])
def test_authenticator_without_ticket_returns_none(query: str):
    assert authenticate(query) is None


def test_authenticator_with_empty_ticket_is_bad():
    assert reason(authenticate("ticket=")) == (401, "bad_ticket")


def test_authenticator_with_two_tickets_is_bad_request():
    assert reason(authenticate(f"ticket={ticket()}&ticket={ticket()}")) == (
        400,
        "duplicate_param",
    )


def test_authenticator_with_too_many_query_fields_is_bad_request():
    query = "&".join(f"p{i}=1" for i in range(MAX_QUERY_FIELDS)) + f"&ticket={ticket()}"
    assert reason(authenticate(query)) == (400, "too_many_params")


def test_query_param_decodes_percent_escapes():
    assert query_param("a=%41%2B+b", "a") == "A+ b"


@given(st.text(max_size=300))
def test_authenticator_on_arbitrary_query_gets_a_documented_reason_or_none(query: str):
    result = authenticate(query)
    assert result is None or (
        isinstance(result, Reject) and DOCUMENTED[result.audit_reason] == result.status
    )


# --- in the pipeline ---------------------------------------------------------------------


def pipeline() -> HandshakePipeline:
    return HandshakePipeline(
        settings(auth={"required": True}),
        loopback_bound=True,
        authenticators=[TicketAuthenticator(TicketVerifier(SECRET))],
    )


def test_pipeline_accepts_ticket_and_asks_to_consume_it():
    value = ticket(origin=ORIGIN)
    result = pipeline().decide(handshake(target=f"/ws?ticket={value}"), NOW)
    assert isinstance(result, Accept)
    assert result.claimed is not None
    assert (result.claimed.user_id, result.consume, result.consume_until) == ("alice", JTI, EXP)
    # The slot is bound to alice only after the consumption succeeded.
    assert result.principal.is_pending


def test_pipeline_refuses_ticket_minted_for_another_origin():
    value = ticket(origin="http://evil.example")
    result = pipeline().decide(handshake(target=f"/ws?ticket={value}"), NOW)
    assert result == Reject(403, "Forbidden", "ticket_origin_mismatch")


# --- issued_at (revocation refuses tickets minted before it) -------------------------------


def test_issued_at_is_signed_into_the_ticket_and_reaches_the_principal():
    result = TicketVerifier(SECRET).verify(ticket(issued_at=970.0), origin=APP_A, now=NOW)
    assert isinstance(result, Authenticated)
    assert result.principal.issued_at == 970.0


def test_ticket_without_issued_at_has_none():
    result = TicketVerifier(SECRET).verify(ticket(), origin=APP_A, now=NOW)
    assert isinstance(result, Authenticated)
    assert result.principal.issued_at is None


@pytest.mark.parametrize(
    ("issued_at", "message"),
    [
        pytest.param("970", "issued_at must be a number", id="string"),
        pytest.param(True, "issued_at must be a number", id="bool"),
        pytest.param(float("inf"), "issued_at must be finite", id="infinite"),
    ],
)
def test_bad_issued_at_is_refused_when_minting(issued_at: Any, message: str):
    with pytest.raises(ValueError, match=message):
        ticket(issued_at=issued_at)


@pytest.mark.parametrize(
    "iat",
    [
        pytest.param("970", id="string"),
        pytest.param(False, id="bool"),
        pytest.param(10**400, id="overflow"),
    ],
)
def test_signed_ticket_with_a_malformed_iat_is_bad(iat: Any):
    result = TicketVerifier(SECRET).verify(forge(claims(iat=iat)), origin=APP_A, now=NOW)
    assert result == Reject(401, "Unauthorized", "bad_ticket")
