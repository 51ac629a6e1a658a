"""The public helpers backends call: ``wsguard.tickets`` and ``wsguard.sessions``."""

from __future__ import annotations

import time

import pytest

import wsguard.sessions
import wsguard.tickets
from wsguard.core.auth.cookie import read_session
from wsguard.core.auth.ticket import TicketVerifier
from wsguard.core.decisions import Authenticated, Principal, Reject
from wsguard.exceptions import ConfigError
from wsguard.sessions import cookie_secret, csrf_nonce, issue_session
from wsguard.settings import CookieConfig, TicketConfig
from wsguard.tickets import mint, ticket_secret

SECRET = "a-long-enough-secret-of-32-bytes!"
ORIGIN = "https://app.example.com"


def test_public_names_are_curated():
    assert wsguard.tickets.__all__ == ["mint", "ticket_secret"]
    assert wsguard.sessions.__all__ == ["cookie_secret", "csrf_nonce", "issue_session"]


# --- tickets -----------------------------------------------------------------------------


def test_mint_reads_the_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WSGUARD_TICKET_SECRET", SECRET)
    ticket = mint("alice", ORIGIN, roles=["reader"], channels=["news"], now=100.0)
    result = TicketVerifier(SECRET.encode()).verify(ticket, origin=ORIGIN, now=129.9)
    assert isinstance(result, Authenticated)
    assert result.principal == Principal(
        "alice", "ticket", frozenset({"reader"}), frozenset({"news"}), None, issued_at=100.0
    )
    assert result.consume_until == 130.0


def test_mint_ticket_expires_after_ttl():
    ticket = mint("alice", ORIGIN, ttl=5, secret=SECRET.encode(), now=100.0)
    result = TicketVerifier(SECRET.encode()).verify(ticket, origin=ORIGIN, now=105.0)
    assert result == Reject(401, "Unauthorized", "expired_ticket")


def test_mint_defaults_to_the_wall_clock():
    before = time.time()
    ticket = mint("alice", ORIGIN, secret=SECRET.encode())
    result = TicketVerifier(SECRET.encode()).verify(ticket, origin=ORIGIN, now=before)
    assert isinstance(result, Authenticated)
    assert result.consume_until is not None
    assert before + 30 <= result.consume_until <= time.time() + 30


def test_two_mints_have_different_ids():
    verifier = TicketVerifier(SECRET.encode())
    ids = set()
    for _ in range(2):
        result = verifier.verify(
            mint("alice", ORIGIN, secret=SECRET.encode(), now=0.0), origin=ORIGIN, now=0.0
        )
        assert isinstance(result, Authenticated)
        ids.add(result.consume)
    assert len(ids) == 2


def test_mint_refuses_a_short_secret_without_revealing_it(monkeypatch: pytest.MonkeyPatch):
    short = "tooshort-secret-value"
    monkeypatch.setenv("WSGUARD_TICKET_SECRET", short)
    with pytest.raises(ConfigError) as info:
        mint("alice", ORIGIN)
    assert info.value.field == "auth.ticket.secret_env"
    assert "WSGUARD_TICKET_SECRET" in str(info.value)
    assert short not in str(info.value)


def test_mint_refuses_a_missing_secret(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("WSGUARD_TICKET_SECRET", raising=False)
    with pytest.raises(ConfigError, match="WSGUARD_TICKET_SECRET is not set") as info:
        mint("alice", ORIGIN)
    assert info.value.field == "auth.ticket.secret_env"


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), True, "30"])
def test_mint_refuses_a_bad_ttl(ttl: object):
    with pytest.raises(ValueError, match="ttl"):
        mint("alice", ORIGIN, ttl=ttl, secret=SECRET.encode())  # type: ignore[arg-type]


def test_ticket_secret_uses_the_configured_variable():
    config = TicketConfig(secret_env="MY_TICKETS")
    assert ticket_secret(config, {"MY_TICKETS": SECRET}) == SECRET.encode()
    with pytest.raises(ConfigError, match="MY_TICKETS") as info:
        ticket_secret(config, {"WSGUARD_TICKET_SECRET": SECRET})
    assert info.value.field == "auth.ticket.secret_env"


def test_ticket_secret_counts_bytes_not_characters():
    # 11 three-byte characters: 33 bytes.
    assert len(ticket_secret(TicketConfig(), {"WSGUARD_TICKET_SECRET": "€" * 11})) == 33


# --- sessions ----------------------------------------------------------------------------


def test_issue_session_reads_the_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WSGUARD_COOKIE_SECRET", SECRET)
    cookie, nonce = issue_session("alice", ttl=60, roles=["admin"], now=100.0)
    session = read_session(SECRET.encode(), cookie)
    assert session is not None
    assert (session.user, session.expires_at, session.roles) == ("alice", 160.0, {"admin"})
    assert csrf_nonce(cookie, SECRET.encode()) == nonce
    assert len(nonce) == 43


def test_issue_session_defaults_to_the_wall_clock_and_a_day():
    before = time.time()
    cookie, _ = issue_session("alice", secret=SECRET.encode())
    session = read_session(SECRET.encode(), cookie)
    assert session is not None
    assert before + 86400 <= session.expires_at <= time.time() + 86400


def test_two_sessions_have_different_nonces():
    first = issue_session("alice", secret=SECRET.encode(), now=0.0)
    second = issue_session("alice", secret=SECRET.encode(), now=0.0)
    assert first[1] != second[1]
    assert first[0] != second[0]


def test_csrf_nonce_refuses_a_cookie_signed_with_another_secret():
    cookie, _ = issue_session("alice", secret=SECRET.encode(), now=0.0)
    with pytest.raises(ValueError, match="not a session cookie"):
        csrf_nonce(cookie, b"x" * 32)


def test_issue_session_refuses_a_short_secret_without_revealing_it(
    monkeypatch: pytest.MonkeyPatch,
):
    short = "tooshort-cookie-secret"
    monkeypatch.setenv("WSGUARD_COOKIE_SECRET", short)
    with pytest.raises(ConfigError) as info:
        issue_session("alice")
    assert info.value.field == "auth.cookie.secret_env"
    assert "WSGUARD_COOKIE_SECRET" in str(info.value)
    assert short not in str(info.value)


def test_cookie_secret_uses_the_configured_variable():
    config = CookieConfig(secret_env="MY_COOKIES")
    assert cookie_secret(config, {"MY_COOKIES": SECRET}) == SECRET.encode()
    with pytest.raises(ConfigError, match="MY_COOKIES is not set") as info:
        cookie_secret(config, {})
    assert info.value.field == "auth.cookie.secret_env"


@pytest.mark.parametrize("ttl", [0, -5, float("inf"), False])
def test_issue_session_refuses_a_bad_ttl(ttl: object):
    with pytest.raises(ValueError, match="ttl"):
        issue_session("alice", ttl=ttl, secret=SECRET.encode())  # type: ignore[arg-type]
