"""The Basic users file and password hashing (wsguard.users)."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import argon2
import pytest
from argon2.exceptions import VerifyMismatchError

from wsguard.core.auth.basic import DUMMY_HASH, BasicAuthenticator, UserRecord
from wsguard.core.decisions import Authenticated
from wsguard.core.handshake import HandshakeContext
from wsguard.core.upgrade import Headers, UpgradeRequest
from wsguard.exceptions import ConfigError
from wsguard.users import (
    FIELD,
    add_user,
    check_password,
    hash_password,
    load_users,
    verify_hash,
)

# Cheap parameters: the real ones cost ~50 ms (or more) per hash.
CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery"
CTX = HandshakeContext("127.0.0.1", "http", "127.0.0.1", 8080, None)


@pytest.fixture(scope="module")
def cheap_hash() -> str:
    return hash_password(PASSWORD, CHEAP)


def users_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "users.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_users(path)
    assert info.value.field == FIELD == "auth.basic.users_file"
    return info.value


# --- hashing ------------------------------------------------------------------------------


def test_hash_password_uses_rfc_9106_second_recommended_parameters():
    params = argon2.extract_parameters(hash_password(PASSWORD))
    assert params.type is argon2.Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (3, 65536, 4)
    assert (params.salt_len, params.hash_len) == (16, 32)


def test_hash_password_salts_every_hash():
    assert hash_password(PASSWORD, CHEAP) != hash_password(PASSWORD, CHEAP)


def test_verify_hash_accepts_the_right_password(cheap_hash: str):
    assert verify_hash(cheap_hash, PASSWORD) is True


def test_verify_hash_refuses_a_wrong_password(cheap_hash: str):
    assert verify_hash(cheap_hash, PASSWORD + "!") is False


@pytest.mark.parametrize(
    "password_hash",
    [
        pytest.param("", id="empty"),
        pytest.param("not a hash", id="garbage"),
        pytest.param("$argon2id$v=19$m=8,t=1,p=1$AAAA", id="truncated"),
    ],
)
def test_verify_hash_refuses_a_malformed_hash(password_hash: str):
    assert verify_hash(password_hash, PASSWORD) is False


def test_dummy_hash_is_a_real_hash_that_costs_a_full_verification():
    # InvalidHashError would return at once, and the timing would tell unknown users apart.
    with pytest.raises(VerifyMismatchError):
        argon2.PasswordHasher().verify(DUMMY_HASH, PASSWORD)


# --- the authenticator with real hashes ---------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def verify(users: dict[str, UserRecord], user: str, password: str) -> bool:
    authenticator = BasicAuthenticator(users, verify_hash, dummy_hash=users["alice"].password_hash)
    headers = Headers([("Host", "127.0.0.1:8080"), ("Authorization", basic(user, password))])
    request = UpgradeRequest("GET", "/ws", "HTTP/1.1", headers, "127.0.0.1", False)
    result = authenticator.authenticate(request, CTX, 0.0)
    assert isinstance(result, Authenticated)
    assert result.verify is not None
    return result.verify()


def test_basic_with_real_hashes(cheap_hash: str):
    users = {"alice": UserRecord("alice", cheap_hash)}
    assert verify(users, "alice", PASSWORD) is True
    assert verify(users, "alice", "wrong password") is False
    # Even with alice's hash as the dummy and alice's password: unknown users never pass.
    assert verify(users, "mallory", PASSWORD) is False


# --- check_password -----------------------------------------------------------------------


def test_check_password_accepts_twelve_characters():
    check_password("a" * 12)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        pytest.param("a" * 11, "must be at least 12 characters", id="short"),
        pytest.param("", "must be at least 12 characters", id="empty"),
        pytest.param("long enough\tpassword", "must not contain control characters", id="tab"),
    ],
)
def test_check_password_refuses(password: str, problem: str):
    with pytest.raises(ConfigError) as info:
        check_password(password)
    assert (info.value.field, info.value.problem) == ("password", problem)


# --- add_user / load_users ----------------------------------------------------------------


def test_add_then_load_round_trips(tmp_path: Path):
    path = tmp_path / "users.toml"
    add_user(path, "alice", PASSWORD, ["admin", "reader"], hasher=CHEAP)
    users = load_users(path)
    assert list(users) == ["alice"]
    record = users["alice"]
    assert (record.user_id, record.roles) == ("alice", frozenset({"admin", "reader"}))
    assert record.password_hash.startswith("$argon2id$")
    assert verify_hash(record.password_hash, PASSWORD) is True


def test_add_creates_the_file_readable_by_its_owner_only(tmp_path: Path):
    path = tmp_path / "users.toml"
    add_user(str(path), "alice", PASSWORD, hasher=CHEAP)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_add_keeps_group_access_but_drops_other_access(tmp_path: Path):
    path = tmp_path / "users.toml"
    add_user(path, "alice", PASSWORD, hasher=CHEAP)
    path.chmod(0o644)
    add_user(path, "bob", PASSWORD, hasher=CHEAP)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_add_replaces_a_user_and_keeps_the_others(tmp_path: Path):
    path = tmp_path / "users.toml"
    add_user(path, "alice", PASSWORD, ["admin"], hasher=CHEAP)
    add_user(path, "bob", "bob's password", ["reader"], hasher=CHEAP)
    before = load_users(path)
    add_user(path, "alice", "a new password", [], hasher=CHEAP)
    after = load_users(path)
    assert list(after) == ["alice", "bob"]
    assert after["bob"] == before["bob"]
    assert after["alice"].roles == frozenset()
    assert verify_hash(after["alice"].password_hash, "a new password") is True
    assert verify_hash(after["alice"].password_hash, PASSWORD) is False
    assert sorted(os.listdir(tmp_path)) == ["users.toml"]


def test_add_round_trips_roles_that_need_escaping(tmp_path: Path):
    path = tmp_path / "users.toml"
    roles = ['quote"d', "back\\slash", "ünïcødé", "emoji \U0001f512"]
    add_user(path, "a.b@c-d_e", PASSWORD, roles, hasher=CHEAP)
    assert load_users(path)["a.b@c-d_e"].roles == frozenset(roles)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "users.toml"
    add_user(path, "alice", PASSWORD, hasher=CHEAP)
    before = path.read_bytes()

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(ConfigError) as info:
        add_user(path, "bob", PASSWORD, hasher=CHEAP)
    assert info.value.field == FIELD
    assert "No space left on device" in info.value.problem
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["users.toml"]


def test_add_into_a_missing_directory_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        add_user(tmp_path / "missing" / "users.toml", "alice", PASSWORD, hasher=CHEAP)
    assert info.value.field == FIELD


def test_add_refuses_to_overwrite_an_invalid_file(tmp_path: Path):
    path = users_file(tmp_path, "[users.alice]\nhash = 1\n")
    with pytest.raises(ConfigError):
        add_user(path, "bob", PASSWORD, hasher=CHEAP)
    assert path.read_text() == "[users.alice]\nhash = 1\n"


@pytest.mark.parametrize("user", ["", "a b", "alice:x", "é", "a" * 256])
def test_add_refuses_an_invalid_user_id(tmp_path: Path, user: str):
    with pytest.raises(ConfigError) as info:
        add_user(tmp_path / "users.toml", user, PASSWORD, hasher=CHEAP)
    assert info.value.field == "user"
    assert not (tmp_path / "users.toml").exists()


@pytest.mark.parametrize("role", ["", "a\nb", "r" * 256])
def test_add_refuses_an_invalid_role(tmp_path: Path, role: str):
    with pytest.raises(ConfigError) as info:
        add_user(tmp_path / "users.toml", "alice", PASSWORD, [role], hasher=CHEAP)
    assert info.value.field == FIELD
    assert "roles" in info.value.problem


def test_an_empty_file_has_no_users(tmp_path: Path):
    assert load_users(users_file(tmp_path, "")) == {}


def test_roles_default_to_none(tmp_path: Path, cheap_hash: str):
    users = load_users(users_file(tmp_path, f'[users.alice]\nhash = "{cheap_hash}"\n'))
    assert users == {"alice": UserRecord("alice", cheap_hash, frozenset())}


def test_a_missing_file_is_a_config_error(tmp_path: Path):
    error = load_error(tmp_path / "absent.toml")
    assert "cannot read" in error.problem


def test_a_directory_is_a_config_error(tmp_path: Path):
    assert "cannot read" in load_error(tmp_path).problem


def test_invalid_toml_is_a_config_error_without_the_content(tmp_path: Path, cheap_hash: str):
    error = load_error(users_file(tmp_path, f'[users.alice]\nhash = "{cheap_hash}\n'))
    assert "invalid TOML" in error.problem
    assert cheap_hash not in str(error)


def test_non_utf8_is_a_config_error(tmp_path: Path):
    path = tmp_path / "users.toml"
    path.write_bytes(b'[users.alice]\nhash = "\xff"\n')
    assert "invalid TOML" in load_error(path).problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('user = "x"\n', "unknown top-level key 'user'", id="top-level-key"),
        pytest.param('users = "alice"\n', "'users' must be a table", id="users-not-table"),
        pytest.param('[users]\nalice = "x"\n', "users.alice: must be a table", id="entry"),
        pytest.param("[users.alice]\nroles = []\n", "users.alice.hash: missing", id="no-hash"),
        pytest.param("[users.alice]\nhash = 1\n", "users.alice.hash: must be a string", id="int"),
        pytest.param(
            "[users.alice]\nHASH = 'x'\n", "users.alice: unknown key 'HASH'", id="unknown-key"
        ),
        pytest.param('[users."a b"]\nhash = "x"\n', "user id 'a b': a user id is", id="user-id"),
        pytest.param('[users.alice]\nhash = "$2b$12$abc"\n', "not an argon2id hash", id="bcrypt"),
        pytest.param('[users.alice]\nhash = "$argon2id$v=19$m=8"\n', "malformed", id="truncated"),
    ],
)
def test_invalid_content_is_a_config_error_naming_the_place(tmp_path: Path, text, expected):
    error = load_error(users_file(tmp_path, text))
    assert expected in error.problem


@pytest.mark.parametrize("kind", ["argon2i", "argon2d"])
def test_weaker_argon2_types_are_refused_without_echoing_the_hash(tmp_path: Path, kind: str):
    weak = argon2.PasswordHasher(
        time_cost=1, memory_cost=8, parallelism=1, type=argon2.Type[kind[-1].upper()]
    ).hash(PASSWORD)
    assert weak.startswith(f"${kind}$")
    error = load_error(users_file(tmp_path, f'[users.alice]\nhash = "{weak}"\n'))
    assert "users.alice.hash: argon2i and argon2d hashes are refused" in error.problem
    assert "argon2id" in error.problem
    assert weak not in str(error)
    assert weak.split("$")[-1] not in str(error)


@pytest.mark.parametrize(
    "roles",
    [
        pytest.param('"admin"', id="string-not-list"),
        pytest.param("[1]", id="not-strings"),
        pytest.param('[""]', id="empty-role"),
    ],
)
def test_invalid_roles_are_a_config_error(tmp_path: Path, cheap_hash: str, roles: str):
    text = f'[users.alice]\nhash = "{cheap_hash}"\nroles = {roles}\n'
    error = load_error(users_file(tmp_path, text))
    assert "users.alice: roles must be a list" in error.problem
    assert cheap_hash not in str(error)
