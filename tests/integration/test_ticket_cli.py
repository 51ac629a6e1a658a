"""`wsguard ticket mint`: a ticket the server accepts, signed with the configured secret."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from wsguard.core.auth.ticket import TicketVerifier
from wsguard.core.decisions import Authenticated

pytestmark = pytest.mark.integration

SECRET = "s" * 40


def run(*args: str, secret: str | None = SECRET) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "WSGUARD_TICKET_SECRET"}
    if secret is not None:
        env["WSGUARD_TICKET_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "wsguard.cli", "ticket", "mint", *args],
        capture_output=True,
        env=env,
        timeout=30,
        check=False,
    )


def test_minted_ticket_verifies_for_its_user_origin_and_roles():
    result = run("alice", "--origin", "https://app.example.com", "--role", "admin", "--ttl", "20")
    assert result.returncode == 0
    ticket = result.stdout.decode().strip()
    verified = TicketVerifier(SECRET.encode()).verify(
        ticket, origin="https://app.example.com", now=time.time()
    )
    assert isinstance(verified, Authenticated)
    assert verified.principal.user_id == "alice"
    assert verified.principal.roles == frozenset({"admin"})
    assert verified.consume_until is not None
    assert 0 < verified.consume_until - time.time() <= 20


def test_missing_secret_is_one_line_naming_the_field():
    result = run("alice", "--origin", "https://app.example.com", secret=None)
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "error: auth.ticket.secret_env: environment variable WSGUARD_TICKET_SECRET is not set"
    )


def test_malformed_origin_is_refused_with_one_line():
    result = run("alice", "--origin", "not an origin")
    assert result.returncode == 2
    err = result.stderr.decode().strip()
    assert err.startswith("error: ticket: origin")
    assert "Traceback" not in err
