"""Loading the JWT keys from the environment and files: one source, clear errors, no secrets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import RSAAlgorithm

from wsguard.auth_keys import jwt_verifier, load_jwt_keys
from wsguard.core.decisions import Principal, Reject
from wsguard.exceptions import ConfigError
from wsguard.settings import JwtConfig

NOW = 1_700_000_000.0
SECRET = "a-secret-of-at-least-32-bytes-long!!"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = RSA_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
CLAIMS = {"sub": "alice", "exp": NOW + 60}


def write(tmp_path: Path, name: str, data: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def config_error(config: JwtConfig, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_jwt_keys(config, env or {})
    return info.value


# ---------------------------------------------------------------- sources


def test_secret_from_the_environment_verifies_hs256():
    keys = load_jwt_keys(JwtConfig(secret_env="JWT_SECRET"), {"JWT_SECRET": SECRET})
    assert keys is not None
    v = jwt_verifier(JwtConfig(), keys)
    signed = jwt.encode(CLAIMS, SECRET, "HS256")
    assert v.verify(signed, NOW) == Principal("alice", "jwt", expires_at=NOW + 60)


def test_public_key_file_verifies_rs256(tmp_path: Path):
    config = JwtConfig(algorithms=("RS256",), public_key_file=write(tmp_path, "k.pem", RSA_PEM))
    keys = load_jwt_keys(config, {})
    assert keys is not None
    signed = jwt.encode(CLAIMS, RSA_KEY, "RS256")
    assert isinstance(jwt_verifier(config, keys).verify(signed, NOW), Principal)


def test_jwks_file_verifies_by_kid(tmp_path: Path):
    jwk = {**RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "k1"}
    path = write(tmp_path, "jwks.json", json.dumps({"keys": [jwk]}))
    config = JwtConfig(algorithms=("RS256",), jwks_file=path, audience="api")
    keys = load_jwt_keys(config, {})
    assert keys is not None
    v = jwt_verifier(config, keys)
    good = jwt.encode({**CLAIMS, "aud": "api"}, RSA_KEY, "RS256", headers={"kid": "k1"})
    other = jwt.encode({**CLAIMS, "aud": "api"}, RSA_KEY, "RS256", headers={"kid": "k2"})
    assert isinstance(v.verify(good, NOW), Principal)
    assert v.verify(other, NOW) == Reject(401, "Unauthorized", "unknown_kid")


def test_jwks_url_alone_is_left_to_the_server():
    assert load_jwt_keys(JwtConfig(jwks_url="https://idp.example.com/jwks.json"), {}) is None


def test_no_key_source_is_refused():
    error = config_error(JwtConfig())
    assert error.field == "auth.jwt"
    assert "none is set" in error.problem
    assert "auth.jwt.secret_env" in error.problem


def test_several_key_sources_are_refused(tmp_path: Path):
    config = JwtConfig(
        secret_env="JWT_SECRET",
        jwks_file=write(tmp_path, "jwks.json", "{}"),
        jwks_url="https://idp.example.com/jwks.json",
    )
    error = config_error(config, {"JWT_SECRET": SECRET})
    assert error.field == "auth.jwt"
    assert "(auth.jwt.secret_env, auth.jwt.jwks_file, auth.jwt.jwks_url)" in error.problem


# ---------------------------------------------------------------- secret_env


@pytest.mark.parametrize("env", [{}, {"JWT_SECRET": ""}], ids=["unset", "empty"])
def test_missing_secret_variable_names_the_field_and_the_variable(env: dict[str, str]):
    error = config_error(JwtConfig(secret_env="JWT_SECRET"), env)
    assert error.field == "auth.jwt.secret_env"
    assert error.problem == "environment variable JWT_SECRET is not set or is empty"


def test_short_secret_is_refused_without_showing_it():
    short = "hunter2-but-too-short"
    error = config_error(JwtConfig(secret_env="JWT_SECRET"), {"JWT_SECRET": short})
    assert error.field == "auth.jwt.secret_env"
    assert "JWT_SECRET" in error.problem
    assert "21 bytes long; at least 32" in error.problem
    assert short not in str(error)
    assert error.__cause__ is None


def test_secret_with_undecodable_bytes_keeps_them():
    # os.environ holds undecodable bytes as lone surrogates; they are still 32 bytes of secret.
    value = "\udcff" * 32
    assert load_jwt_keys(JwtConfig(secret_env="S"), {"S": value}) is not None


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("field", ["public_key_file", "jwks_file"])
def test_missing_key_file_names_the_field(tmp_path: Path, field: str):
    error = config_error(JwtConfig(**{field: str(tmp_path / "nope")}))
    assert error.field == f"auth.jwt.{field}"
    assert "cannot read" in error.problem
    assert "No such file or directory" in error.problem


def test_directory_as_key_file_is_refused(tmp_path: Path):
    error = config_error(JwtConfig(public_key_file=str(tmp_path)))
    assert error.field == "auth.jwt.public_key_file"
    assert "cannot read" in error.problem


def test_huge_key_file_is_refused(tmp_path: Path):
    path = write(tmp_path, "big.pem", b"x" * (1024 * 1024 + 1))
    error = config_error(JwtConfig(public_key_file=path))
    assert error.field == "auth.jwt.public_key_file"
    assert "larger than 1 MiB" in error.problem


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"not a key", "expected one PEM block", id="not-pem"),
        pytest.param(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "not a valid PEM public key",
            id="bad-pem",
        ),
    ],
)
def test_invalid_pem_file_names_the_field_and_the_file(
    tmp_path: Path, content: bytes, message: str
):
    path = write(tmp_path, "k.pem", content)
    error = config_error(JwtConfig(public_key_file=path))
    assert error.field == "auth.jwt.public_key_file"
    assert path in error.problem
    assert message in error.problem


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("{not json", "is not valid JSON", id="not-json"),
        pytest.param(b"\xff\xfe", "is not valid JSON", id="not-utf8"),
        pytest.param("[" * 100_000, "is not valid JSON", id="deeply-nested"),
        pytest.param("[]", 'must hold a JSON object with a "keys" list', id="array"),
        pytest.param('{"keys": []}', "non-empty", id="no-keys"),
        pytest.param('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "symmetric", id="oct"),
    ],
)
def test_invalid_jwks_file_names_the_field(tmp_path: Path, content: Any, message: str):
    path = write(tmp_path, "jwks.json", content)
    error = config_error(JwtConfig(jwks_file=path))
    assert error.field == "auth.jwt.jwks_file"
    assert message in error.problem


# ---------------------------------------------------------------- jwt_verifier


def test_algorithms_the_keys_cannot_verify_name_auth_jwt_algorithms(tmp_path: Path):
    # The default allow-list is HS256, which an RSA key must never verify.
    config = JwtConfig(public_key_file=write(tmp_path, "k.pem", RSA_PEM))
    keys = load_jwt_keys(config, {})
    assert keys is not None
    with pytest.raises(ConfigError) as info:
        jwt_verifier(config, keys)
    assert info.value.field == "auth.jwt.algorithms"
    assert "RS256" in info.value.problem


def test_ec_key_file_permits_only_its_curve(tmp_path: Path):
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    config = JwtConfig(algorithms=("ES256", "ES384"), public_key_file=write(tmp_path, "k", pem))
    keys = load_jwt_keys(config, {})
    assert keys is not None
    v = jwt_verifier(config, keys)
    assert isinstance(v.verify(jwt.encode(CLAIMS, key, "ES384"), NOW), Principal)
