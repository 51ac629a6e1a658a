"""Cookie sessions: never accepted without the CSRF nonce of that same session (CSWSH)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from handshake_factory import ORIGIN, handshake, settings
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import Signer

from wsguard.core.auth.cookie import (
    COOKIE_REASONS,
    MAX_COOKIE_LENGTH,
    CookieAuthenticator,
    CookieVerifier,
    Session,
    csrf_nonce,
    encode_session,
    read_session,
)
from wsguard.core.auth.ticket import encode_ticket
from wsguard.core.decisions import Accept, Principal, Reject
from wsguard.core.handshake import HandshakeContext, HandshakePipeline

SECRET = b"c" * 32
SID = "session-id-0123456789abc"
OTHER_SID = "session-id-9876543210xyz"
APP = "https://app.example"
EXP = 5000.0
NOW = 4000.0

# Written out independently of COOKIE_REASONS, so that a new, undocumented code fails a test.
DOCUMENTED = {
    "bad_session_cookie": 401,
    "expired_session": 401,
    "origin_missing_with_credentials": 403,
    "csrf_missing": 403,
    "csrf_mismatch": 403,
    "duplicate_cookie": 400,
    "duplicate_param": 400,
    "too_many_params": 400,
}


def cookie(**overrides: Any) -> str:
    args: dict[str, Any] = {"session_id": SID, "user": "alice", "expires_at": EXP}
    args.update(overrides)
    return encode_session(SECRET, **args)


def forge(claims: dict[str, Any]) -> str:
    """A correctly signed cookie around arbitrary claims."""
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    return (
        Signer(SECRET, salt=b"wsguard-session", digest_method=hashlib.sha256).sign(payload).decode()
    )


def claims(**overrides: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"sid": SID, "sub": "alice", "exp": EXP, "roles": []}
    result.update(overrides)
    return result


def verify(
    cookie_header: str | None,
    query: str = "",
    origin: str | None = APP,
    now: float = NOW,
    extra: tuple[tuple[str, str], ...] = (),
) -> Principal | Reject | None:
    fields = {} if cookie_header is None else {"Cookie": cookie_header}
    request = handshake(target="/ws?" + query if query else "/ws", set=fields, extra=extra)
    ctx = HandshakeContext("127.0.0.1", "https", "app.example", None, origin)
    return CookieAuthenticator(CookieVerifier(SECRET, "session")).authenticate(request, ctx, now)


def reason(result: object) -> tuple[int, str]:
    assert isinstance(result, Reject)
    return result.status, result.audit_reason


NONCE = csrf_nonce(SECRET, SID)


# --- accepted ----------------------------------------------------------------------------


def test_cookie_with_its_nonce_gives_principal_expiring_with_the_session():
    value = cookie(roles=["admin", "reader"])
    result = verify(f"theme=dark; session={value}", f"csrf={NONCE}")
    assert result == Principal(
        user_id="alice",
        method="cookie",
        roles=frozenset({"admin", "reader"}),
        expires_at=EXP,
    )


def test_cookie_among_several_cookie_fields_is_found():
    result = verify("theme=dark", f"csrf={NONCE}", extra=(("Cookie", f"session={cookie()}"),))
    assert isinstance(result, Principal)


def test_cookie_just_before_expiry_is_accepted():
    assert isinstance(verify(f"session={cookie()}", f"csrf={NONCE}", now=EXP - 0.001), Principal)


def test_nonce_is_43_url_safe_characters():
    assert len(NONCE) == 43
    assert all(c.isalnum() or c in "-_" for c in NONCE)


def test_read_session_round_trips():
    assert read_session(SECRET, cookie(roles=("a",))) == Session(SID, "alice", EXP, frozenset("a"))


# --- CSWSH: the cookie alone is never enough ---------------------------------------------


def test_cookie_without_nonce_is_forbidden():
    assert reason(verify(f"session={cookie()}")) == (403, "csrf_missing")


def test_cookie_with_another_sessions_nonce_is_forbidden():
    other_nonce = csrf_nonce(SECRET, OTHER_SID)
    assert reason(verify(f"session={cookie()}", f"csrf={other_nonce}")) == (403, "csrf_mismatch")


@pytest.mark.parametrize(
    "given_nonce", ["", "x", NONCE[:-1], NONCE + "A", NONCE.upper(), "%C3%A9" * 20, "é"]
)
def test_cookie_with_wrong_nonce_is_forbidden(given_nonce: str):
    assert reason(verify(f"session={cookie()}", f"csrf={given_nonce}")) == (403, "csrf_mismatch")


def test_nonce_from_another_secret_is_forbidden():
    foreign = csrf_nonce(b"z" * 32, SID)
    assert reason(verify(f"session={cookie()}", f"csrf={foreign}")) == (403, "csrf_mismatch")


def test_cookie_without_origin_is_forbidden():
    result = verify(f"session={cookie()}", f"csrf={NONCE}", origin=None)
    assert reason(result) == (403, "origin_missing_with_credentials")


def test_two_csrf_params_are_bad_request():
    query = f"csrf={NONCE}&csrf={NONCE}"
    assert reason(verify(f"session={cookie()}", query)) == (400, "duplicate_param")


def test_too_many_query_fields_are_bad_request():
    query = "&".join(f"p{i}=1" for i in range(30))
    assert reason(verify(f"session={cookie()}", query)) == (400, "too_many_params")


def test_two_session_cookies_are_bad_request():
    header = f"session={cookie()}; session={cookie(session_id=OTHER_SID)}"
    assert reason(verify(header, f"csrf={NONCE}")) == (400, "duplicate_cookie")


# --- bad cookies -------------------------------------------------------------------------


def test_no_cookie_of_that_name_returns_none():
    assert verify(None) is None
    assert verify("theme=dark; Session=x; sessionx=y; session") is None


def test_tampered_cookie_is_unauthorized():
    value = cookie()
    signature = value.partition(".")[2]
    forged_payload = cookie(user="mallory").partition(".")[0]
    assert reason(verify(f"session={forged_payload}.{signature}", f"csrf={NONCE}")) == (
        401,
        "bad_session_cookie",
    )
    flipped = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
    assert reason(verify(f"session={flipped}", f"csrf={NONCE}")) == (401, "bad_session_cookie")


def test_cookie_signed_with_another_secret_is_unauthorized():
    value = encode_session(b"z" * 32, session_id=SID, user="alice", expires_at=EXP)
    assert reason(verify(f"session={value}", f"csrf={NONCE}")) == (401, "bad_session_cookie")


def test_ticket_is_not_a_session_cookie():
    # Same secret, same shape: the domain separation keeps one from passing for the other.
    ticket = encode_ticket(SECRET, ticket_id=SID, user="alice", origin=APP, expires_at=EXP)
    assert reason(verify(f"session={ticket}", f"csrf={NONCE}")) == (401, "bad_session_cookie")


@pytest.mark.parametrize("now", [EXP, EXP + 1])
def test_expired_cookie_is_unauthorized(now: float):
    assert reason(verify(f"session={cookie()}", f"csrf={NONCE}", now=now)) == (
        401,
        "expired_session",
    )


@pytest.mark.parametrize(
    "value",
    ["", "abc", "abc.", '"abc.def"', "a.b.c", "é.x", "x" * (MAX_COOKIE_LENGTH + 1)],
)
def test_malformed_cookie_is_unauthorized(value: str):
    assert reason(verify(f"session={value}", f"csrf={NONCE}")) == (401, "bad_session_cookie")


def test_oversized_signed_cookie_is_unauthorized():
    big = forge(claims(roles=["r" * MAX_COOKIE_LENGTH]))
    assert reason(verify(f"session={big}", f"csrf={NONCE}")) == (401, "bad_session_cookie")


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"sid": "short"}, id="sid-short"),
        pytest.param({"sid": 1}, id="sid-int"),
        pytest.param({"sub": ""}, id="sub-empty"),
        pytest.param({"sub": "x" * 256}, id="sub-long"),
        pytest.param({"exp": "5000"}, id="exp-str"),
        pytest.param({"exp": True}, id="exp-bool"),
        pytest.param({"exp": 10**400}, id="exp-beyond-float"),
        pytest.param({"roles": "admin"}, id="roles-str"),
        pytest.param({"roles": [None]}, id="roles-null"),
        pytest.param({"extra": 1}, id="unknown-field"),
    ],
)
def test_signed_cookie_with_bad_claims_is_unauthorized(bad: dict[str, Any]):
    assert reason(verify(f"session={forge(claims(**bad))}", f"csrf={NONCE}")) == (
        401,
        "bad_session_cookie",
    )


def signed(encoded_payload: bytes) -> str:
    signer = Signer(SECRET, salt=b"wsguard-session", digest_method=hashlib.sha256)
    return signer.sign(encoded_payload).decode()


@pytest.mark.parametrize(
    "payload",
    [b"[]", b"{", b"\xff", b'{"exp":NaN}', b"[" * 1400],
    ids=["array", "not-json", "not-utf8", "nan", "deep-nesting"],
)
def test_signed_cookie_with_bad_payload_is_unauthorized(payload: bytes):
    value = signed(base64.urlsafe_b64encode(payload).rstrip(b"="))
    assert reason(verify(f"session={value}", f"csrf={NONCE}")) == (401, "bad_session_cookie")


def test_signed_cookie_with_impossible_base64_length_is_unauthorized():
    value = signed(b"abcde")  # no base64 string has length 1 mod 4
    assert reason(verify(f"session={value}", f"csrf={NONCE}")) == (401, "bad_session_cookie")


def test_read_session_never_raises_on_non_strings():
    assert read_session(SECRET, None) is None  # type: ignore[arg-type]


@given(cookie_header=st.text(max_size=300), query=st.text(max_size=300))
def test_arbitrary_cookie_and_query_get_a_documented_reason(cookie_header: str, query: str):
    result = verify(f"session={cookie_header}", query)
    assert isinstance(result, Reject)
    assert DOCUMENTED[result.audit_reason] == result.status


@given(cookie_header=st.text(max_size=300), query=st.text(max_size=300))
def test_arbitrary_headers_get_a_documented_reason_or_none(cookie_header: str, query: str):
    result = verify(cookie_header, query)
    assert result is None or (
        isinstance(result, Reject) and DOCUMENTED[result.audit_reason] == result.status
    )


@given(query=st.text(max_size=300))
def test_valid_cookie_with_arbitrary_query_is_never_accepted(query: str):
    result = verify(f"session={cookie()}", query)
    assert isinstance(result, Reject)
    assert DOCUMENTED[result.audit_reason] == result.status


def test_reasons_are_documented():
    assert set(COOKIE_REASONS) == set(DOCUMENTED)


# --- construction ------------------------------------------------------------------------


def test_authenticator_is_named_cookie():
    assert CookieAuthenticator(CookieVerifier(SECRET, "session")).name == "cookie"


@pytest.mark.parametrize("name", ["", "a b", "a;b", "a=b", "é", None])
def test_verifier_refuses_a_bad_cookie_name(name: object):
    with pytest.raises(ValueError, match="cookie-name"):
        CookieVerifier(SECRET, name)  # type: ignore[arg-type]


def test_verifier_accepts_a_host_prefixed_name():
    value = cookie()
    request = handshake(target=f"/ws?csrf={NONCE}", set={"Cookie": f"__Host-s={value}"})
    ctx = HandshakeContext("127.0.0.1", "https", "app.example", None, APP)
    assert isinstance(CookieVerifier(SECRET, "__Host-s").verify(request, ctx, NOW), Principal)


@pytest.mark.parametrize("secret", [b"short", "c" * 32])
def test_verifier_refuses_a_bad_secret(secret: object):
    with pytest.raises(ValueError, match="32 bytes"):
        CookieVerifier(secret, "session")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"session_id": "short"}, id="sid-short"),
        pytest.param({"session_id": "a" * 20 + "=="}, id="sid-not-url-safe"),
        pytest.param({"user": ""}, id="user-empty"),
        pytest.param({"user": "x" * 256}, id="user-long"),
        pytest.param({"expires_at": float("inf")}, id="exp-inf"),
        pytest.param({"expires_at": "1"}, id="exp-str"),
        pytest.param({"roles": "admin"}, id="roles-bare-str"),
        pytest.param({"roles": [1]}, id="roles-int"),
    ],
)
def test_encode_session_refuses_bad_arguments(bad: dict[str, Any]):
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        cookie(**bad)


# --- in the pipeline: the CSWSH proof of concept -----------------------------------------


def pipeline() -> HandshakePipeline:
    return HandshakePipeline(
        settings(auth={"required": True, "methods": ("cookie",)}),
        loopback_bound=True,
        authenticators=[CookieAuthenticator(CookieVerifier(SECRET, "session"))],
    )


def test_pipeline_accepts_same_origin_page_with_cookie_and_nonce():
    request = handshake(target=f"/ws?csrf={NONCE}", set={"Cookie": f"session={cookie()}"})
    result = pipeline().decide(request, NOW)
    assert isinstance(result, Accept)
    assert result.principal.user_id == "alice"


def test_pipeline_refuses_the_proof_of_concept_from_the_attackers_origin():
    # new WebSocket('wss://target.example') on the attacker's page: the browser attaches the
    # victim's cookie, and even a nonce leaked some other way does not help.
    request = handshake(
        target=f"/ws?csrf={NONCE}",
        set={"Cookie": f"session={cookie()}", "Origin": "https://attacker.example"},
    )
    assert pipeline().decide(request, NOW) == Reject(403, "Forbidden", "origin_not_allowed")


def test_pipeline_refuses_cookie_without_nonce_even_from_an_allowed_origin():
    # What the cookie method adds to the origin check: the page must prove it could read
    # the nonce, which a cookie the browser attaches on its own does not.
    request = handshake(target="/ws", set={"Cookie": f"session={cookie()}", "Origin": ORIGIN})
    assert pipeline().decide(request, NOW) == Reject(403, "Forbidden", "csrf_missing")


def test_pipeline_refuses_cookie_without_origin():
    request = handshake(
        target=f"/ws?csrf={NONCE}", set={"Cookie": f"session={cookie()}"}, drop=["Origin"]
    )
    result = pipeline().decide(request, NOW)
    assert result == Reject(403, "Forbidden", "origin_missing_with_credentials")
