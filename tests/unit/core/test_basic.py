"""HTTP Basic: header parsing, user lookup, and the deferred password check (DESIGN.md §4)."""

from __future__ import annotations

import base64

import argon2
import pytest
from handshake_factory import handshake, settings
from hypothesis import given
from hypothesis import strategies as st

from wsguard.core.auth.basic import (
    BASIC_CHALLENGE,
    BASIC_REASONS,
    DUMMY_HASH,
    MAX_PART_BYTES,
    BasicAuthenticator,
    UserRecord,
)
from wsguard.core.decisions import PENDING, Accept, Authenticated, Principal, Reject
from wsguard.core.handshake import HandshakeContext, HandshakePipeline
from wsguard.core.upgrade import UpgradeRequest

CTX = HandshakeContext("127.0.0.1", "http", "127.0.0.1", 8080, "http://127.0.0.1:8080")
ALICE_HASH = "hash-of-alice"
ALICE = UserRecord("alice", ALICE_HASH, frozenset({"admin"}))
PASSWORD = "correct horse battery"
CHALLENGE = ("WWW-Authenticate", 'Basic realm="wsguard"')

# Written out independently of BASIC_REASONS, so that a new, undocumented code fails a test.
DOCUMENTED = {"duplicate_header": 400, "bad_basic_header": 401, "bad_password": 401}


class CountingHasher:
    """A ``verify_hash`` that records its calls; ``hash-of-<user>`` matches ``PASSWORD``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, password_hash: str, password: str) -> bool:
        self.calls.append((password_hash, password))
        return password_hash == ALICE_HASH and password == PASSWORD


def basic(credentials: str | bytes) -> str:
    raw = credentials.encode() if isinstance(credentials, str) else credentials
    return "Basic " + base64.b64encode(raw).decode("ascii")


def request(*authorization: str) -> UpgradeRequest:
    return handshake(extra=[("Authorization", value) for value in authorization])


def authenticate(
    *authorization: str, hasher: CountingHasher | None = None
) -> Authenticated | Principal | Reject | None:
    authenticator = BasicAuthenticator({"alice": ALICE}, hasher or CountingHasher())
    return authenticator.authenticate(request(*authorization), CTX, 0.0)


def authenticated(*authorization: str, hasher: CountingHasher) -> Authenticated:
    result = authenticate(*authorization, hasher=hasher)
    assert isinstance(result, Authenticated)
    return result


# --- what is not ours ---------------------------------------------------------------------


def test_no_authorization_header_is_not_ours():
    assert authenticate() is None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Bearer abc.def.ghi", id="bearer"),
        pytest.param("Digest username=alice", id="digest"),
        pytest.param("Basicx YWxpY2U6cHc=", id="longer-scheme"),
        pytest.param("\u212aasic YWxpY2U6cHc=", id="non-ascii-lookalike"),
        pytest.param("", id="empty"),
    ],
)
def test_other_schemes_are_left_to_the_next_method(value: str):
    assert authenticate(value) is None


# --- malformed headers ----------------------------------------------------------------------


def test_two_authorization_fields_are_a_400_without_a_challenge():
    result = authenticate(basic(f"alice:{PASSWORD}"), basic(f"alice:{PASSWORD}"))
    assert result == Reject(400, "Bad Request", "duplicate_header")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Basic", id="no-credentials"),
        pytest.param("Basic ", id="blank-credentials"),
        pytest.param("Basic !!!!", id="not-base64"),
        pytest.param("Basic YWxpY2U6cHc", id="missing-padding"),
        pytest.param("Basic YWxpY2U6cHc=YQ==", id="data-after-padding"),
        pytest.param("Basic YTp=", id="non-canonical-padding-bits"),
        pytest.param("Basic YWxp Y2U6cHc=", id="space-inside"),
        pytest.param("Basic YWxpY2U6cHc=\u00e9", id="non-ascii"),
        pytest.param(basic("alice"), id="no-colon"),
        pytest.param(basic(b"\xff\xfe:password"), id="user-not-utf8"),
        pytest.param(basic(b"alice:\xc3("), id="password-not-utf8"),
        pytest.param(basic("a" * (MAX_PART_BYTES + 1) + ":pw"), id="user-too-long"),
        pytest.param(basic("alice:" + "p" * (MAX_PART_BYTES + 1)), id="password-too-long"),
        pytest.param(basic("\u00e9" * 513 + ":pw"), id="user-too-long-in-bytes"),
        pytest.param("Basic " + "A" * 4000, id="encoded-too-long"),
        pytest.param(basic("ali\x00ce:password"), id="nul-in-user"),
        pytest.param(basic("alice:pass\nword"), id="newline-in-password"),
        pytest.param(basic("alice:pass\x7fword"), id="del-in-password"),
    ],
)
def test_malformed_basic_header_is_a_401_with_a_challenge(value: str):
    hasher = CountingHasher()
    result = authenticate(value, hasher=hasher)
    assert result == Reject(401, "Unauthorized", "bad_basic_header", (CHALLENGE,))
    assert hasher.calls == []


def test_basic_challenge_names_the_realm():
    # RFC 9110 §11.6.1 / §15.5.2: a 401 must carry a challenge the client can answer.
    assert BASIC_CHALLENGE == CHALLENGE


def test_reasons_are_documented():
    assert set(DOCUMENTED) == BASIC_REASONS


# --- well-formed headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(basic(f"alice:{PASSWORD}"), id="canonical"),
        pytest.param("basic " + basic(f"alice:{PASSWORD}")[6:], id="lower-case-scheme"),
        pytest.param("BASIC " + basic(f"alice:{PASSWORD}")[6:], id="upper-case-scheme"),
        pytest.param(" \t" + basic(f"alice:{PASSWORD}") + " ", id="surrounding-whitespace"),
        pytest.param("Basic   " + basic(f"alice:{PASSWORD}")[6:], id="several-spaces"),
    ],
)
def test_known_user_with_right_password_verifies(value: str):
    hasher = CountingHasher()
    result = authenticated(value, hasher=hasher)
    assert result.principal == Principal("alice", method="basic", roles=frozenset({"admin"}))
    assert result.verify is not None
    assert result.verify_reason == "bad_password"
    assert result.consume is None
    assert result.verify() is True
    assert hasher.calls == [(ALICE_HASH, PASSWORD)]


def test_known_user_with_wrong_password_fails_verify():
    hasher = CountingHasher()
    result = authenticated(basic("alice:wrong password"), hasher=hasher)
    assert result.principal.user_id == "alice"
    assert result.verify is not None
    assert result.verify() is False
    assert hasher.calls == [(ALICE_HASH, "wrong password")]


def test_password_may_contain_colons():
    hasher = CountingHasher()
    result = authenticated(basic("alice:a:b:c"), hasher=hasher)
    assert result.verify is not None
    result.verify()
    assert hasher.calls == [(ALICE_HASH, "a:b:c")]


def test_utf8_credentials_are_decoded():
    hasher = CountingHasher()
    result = authenticated(basic("zoë:pässwörd"), hasher=hasher)
    assert result.principal.user_id == "zoë"
    assert result.verify is not None
    result.verify()
    assert hasher.calls == [(DUMMY_HASH, "pässwörd")]


def test_parts_at_the_length_limit_are_accepted():
    user, password = "u" * MAX_PART_BYTES, "p" * MAX_PART_BYTES
    result = authenticated(basic(f"{user}:{password}"), hasher=CountingHasher())
    assert result.principal.user_id == user


def test_authenticate_never_hashes():
    # The hash runs in the I/O layer's worker thread, never on the event loop.
    hasher = CountingHasher()
    authenticate(basic(f"alice:{PASSWORD}"), hasher=hasher)
    authenticate(basic("mallory:guess"), hasher=hasher)
    assert hasher.calls == []


# --- unknown users ------------------------------------------------------------------------


def test_unknown_user_fails_verify_even_with_a_matching_password():
    hasher = CountingHasher()
    result = authenticated(basic(f"mallory:{PASSWORD}"), hasher=hasher)
    assert result.verify is not None
    assert result.verify() is False
    assert result.verify_reason == "bad_password"


def test_unknown_user_costs_one_hash_against_the_dummy():
    # Same work as a wrong password for a real user, so timing does not reveal user ids.
    hasher = CountingHasher()
    unknown = authenticated(basic("mallory:guess"), hasher=hasher)
    assert unknown.verify is not None
    unknown.verify()
    assert hasher.calls == [(DUMMY_HASH, "guess")]


def test_unknown_user_looks_like_a_known_one_until_verify():
    result = authenticated(basic("mallory:guess"), hasher=CountingHasher())
    assert result.principal == Principal("mallory", method="basic")
    assert (result.consume, result.verify_reason) == (None, "bad_password")


def test_dummy_hash_can_be_replaced():
    hasher = CountingHasher()
    authenticator = BasicAuthenticator({}, hasher, dummy_hash="other-dummy")
    result = authenticator.authenticate(request(basic("bob:pw")), CTX, 0.0)
    assert isinstance(result, Authenticated)
    assert result.verify is not None
    assert result.verify() is False
    assert hasher.calls == [("other-dummy", "pw")]


def test_dummy_hash_costs_what_users_add_writes():
    hasher = argon2.PasswordHasher()
    params = argon2.extract_parameters(DUMMY_HASH)
    assert params.type is argon2.Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        hasher.time_cost,
        hasher.memory_cost,
        hasher.parallelism,
    )
    assert (params.salt_len, params.hash_len) == (hasher.salt_len, hasher.hash_len)


# --- the authenticator --------------------------------------------------------------------


def test_name_is_basic():
    assert BasicAuthenticator({}, CountingHasher()).name == "basic"


def test_users_mapping_is_copied():
    users = {"alice": ALICE}
    authenticator = BasicAuthenticator(users, CountingHasher())
    users.clear()
    result = authenticator.authenticate(request(basic(f"alice:{PASSWORD}")), CTX, 0.0)
    assert isinstance(result, Authenticated)
    assert result.principal.roles == frozenset({"admin"})


def test_user_record_repr_hides_the_hash():
    record = UserRecord("alice", "$argon2id$secret-looking", frozenset())
    assert "argon2id" not in repr(record)
    assert "alice" in repr(record)


# --- through the pipeline -----------------------------------------------------------------


def pipeline(hasher: CountingHasher) -> HandshakePipeline:
    return HandshakePipeline(
        settings(auth={"required": True, "methods": ("basic",)}),
        loopback_bound=True,
        authenticators=[BasicAuthenticator({"alice": ALICE}, hasher)],
    )


def test_pipeline_accept_carries_the_deferred_check():
    hasher = CountingHasher()
    decision = pipeline(hasher).decide(request(basic(f"alice:{PASSWORD}")), 0.0)
    assert isinstance(decision, Accept)
    # Until the check passes, the slot belongs to nobody (no per-user slot for a guesser).
    assert decision.principal == PENDING
    assert decision.claimed is not None
    assert decision.claimed.user_id == "alice"
    assert decision.verify is not None
    assert decision.verify_reason == "bad_password"
    assert hasher.calls == []
    assert decision.verify() is True


def test_pipeline_keeps_the_challenge_on_a_bad_header():
    decision = pipeline(CountingHasher()).decide(request("Basic !!!!"), 0.0)
    assert decision == Reject(401, "Unauthorized", "bad_basic_header", (CHALLENGE,))


# --- properties ---------------------------------------------------------------------------


def check_outcome(result: Authenticated | Principal | Reject | None) -> None:
    if isinstance(result, Reject):
        assert DOCUMENTED[result.audit_reason] == result.status
        if result.status == 401:
            assert CHALLENGE in result.headers
    else:
        assert result is None or isinstance(result, Authenticated)


@given(st.text(max_size=200))
def test_any_authorization_value_is_none_a_documented_reject_or_authenticated(value: str):
    check_outcome(authenticate(value))


@given(st.text(max_size=50), st.text(max_size=200))
def test_any_basic_lookalike_is_none_a_documented_reject_or_authenticated(
    scheme: str, credentials: str
):
    check_outcome(authenticate(f"{scheme} {credentials}"))


@given(st.binary(max_size=300))
def test_any_base64_payload_is_a_documented_reject_or_authenticated(raw: bytes):
    result = authenticate(basic(raw))
    check_outcome(result)
    assert result is not None
