"""``wsguard users add`` as a real process: exit codes, one-line errors, nothing secret echoed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from wsguard.users import load_users, verify_hash

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


def users_add(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGUARD_")}
    return subprocess.run(
        [sys.executable, "-m", "wsguard.cli", "users", "add", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [expected]
    assert result.stdout == ""


def test_add_from_stdin_writes_a_verifiable_hash(tmp_path: Path):
    path = tmp_path / "users.toml"
    result = users_add(
        str(path), "alice", "--role", "admin", "--role", "reader", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"added alice to {path}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = load_users(path)["alice"]
    assert record.roles == frozenset({"admin", "reader"})
    # The trailing newline is not part of the password.
    assert verify_hash(record.password_hash, PASSWORD) is True
    assert PASSWORD not in path.read_text()
    assert record.password_hash not in result.stdout


def test_short_password_is_refused_in_one_line(tmp_path: Path):
    path = tmp_path / "users.toml"
    result = users_add(str(path), "alice", "--password-stdin", stdin="short\n")
    assert_one_line_error(result, "error: password: must be at least 12 characters")
    assert "short" not in result.stderr
    assert not path.exists()


def test_invalid_users_file_is_refused_in_one_line(tmp_path: Path):
    path = tmp_path / "users.toml"
    path.write_text('[users.alice]\nhash = "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"\n')
    result = users_add(str(path), "bob", "--password-stdin", stdin=PASSWORD + "\n")
    assert_one_line_error(
        result,
        f"error: auth.basic.users_file: {path}: users.alice.hash: argon2i and argon2d hashes "
        "are refused; set the password again with 'wsguard users add' to store an argon2id hash",
    )
    assert "aGFzaA" not in result.stderr
