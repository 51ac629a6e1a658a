"""Loading, validating and rendering the configuration: defaults, sources, rules, secrets."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

from wsguard.config import insecure_switches, is_loopback_host, load_settings, render_settings
from wsguard.config_fields import FIELDS, env_name
from wsguard.exceptions import ConfigError
from wsguard.settings import (
    AuthConfig,
    BrokerConfig,
    JwtConfig,
    LimitsConfig,
    LogConfig,
    OriginsConfig,
    ServerConfig,
    Settings,
    TicketConfig,
)

ROOT = Path(__file__).resolve().parents[2]

PUBLIC = '[server]\nhost = "0.0.0.0"\n[origins]\nallowed_hosts = ["app.example.com"]\n'


def write(tmp_path: Path, text: str, name: str = "wsguard.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_text(
    tmp_path: Path, text: str, *, env: dict[str, str] | None = None, overrides: Sequence[str] = ()
) -> Settings:
    return load_settings(write(tmp_path, text), env=env or {}, overrides=overrides)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return str(info.value)


def override_error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, overrides=overrides)
    return str(info.value)


@pytest.fixture
def pem_files(tmp_path: Path) -> tuple[str, str, str]:
    names = ("cert.pem", "key.pem", "ca.pem")
    for name in names:
        (tmp_path / name).write_text("-----BEGIN PLACEHOLDER-----\n")
    cert, key, ca = (str(tmp_path / n) for n in names)
    return cert, key, ca


# ---------------------------------------------------------------- defaults and sources


def test_no_file_no_env_gives_the_secure_defaults():
    assert load_settings(env={}) == Settings()


def test_empty_file_gives_the_secure_defaults(tmp_path: Path):
    assert load_text(tmp_path, "") == Settings()


def test_file_values_are_typed_and_lists_become_tuples(tmp_path: Path):
    settings = load_text(
        tmp_path,
        '[server]\nport = 9000\n[auth]\nmethods = ["jwt"]\n[limits]\nmessages_per_second = 5\n',
    )
    assert settings.server.port == 9000
    assert settings.auth.methods == ("jwt",)
    assert settings.limits.messages_per_second == 5.0
    assert isinstance(settings.limits.messages_per_second, float)


def test_nested_tables_load(tmp_path: Path):
    settings = load_text(tmp_path, "[auth.jwt]\nleeway = 2\n[auth.ticket]\nttl = 10\n")
    assert settings.auth.jwt.leeway == 2.0
    assert settings.auth.ticket.ttl == 10.0


def test_env_overrides_file_and_cli_overrides_env(tmp_path: Path):
    path = write(tmp_path, "[limits]\nmax_message_bytes = 1000\nburst = 7\nmax_fragments = 9\n")
    env = {"WSGUARD_LIMITS_MAX_MESSAGE_BYTES": "2000", "WSGUARD_LIMITS_BURST": "8"}
    settings = load_settings(path, env=env, overrides=["limits.max_message_bytes=3000"])
    assert settings.limits.max_message_bytes == 3000
    assert settings.limits.burst == 8
    assert settings.limits.max_fragments == 9


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WSGUARD_LIMITS_BURST", "77")
    assert load_settings().limits.burst == 77


def test_env_bool_and_nested_sections():
    env = {
        "WSGUARD_SERVER_ALLOW_PLAINTEXT": "true",
        "WSGUARD_AUTH_JWT_LEEWAY": "10",
        "WSGUARD_AUTH_TICKET_TTL": "20",
    }
    settings = load_settings(env=env)
    assert settings.server.allow_plaintext is True
    assert settings.auth.jwt.leeway == 10.0
    assert settings.auth.ticket.ttl == 20.0


@pytest.mark.parametrize("text", ["jwt, ticket", '["jwt", "ticket"]', "jwt,ticket,"])
def test_env_list_is_comma_separated_or_a_toml_array(text: str):
    settings = load_settings(env={"WSGUARD_AUTH_METHODS": text})
    assert settings.auth.methods == ("jwt", "ticket")


def test_env_string_field_keeps_text_that_looks_like_a_number():
    settings = load_settings(env={"WSGUARD_AUTH_JWT_AUDIENCE": "123"})
    assert settings.auth.jwt.audience == "123"


def test_env_quoted_string_is_unquoted():
    settings = load_settings(env={"WSGUARD_AUTH_JWT_ISSUER": '"https://auth.example.com/"'})
    assert settings.auth.jwt.issuer == "https://auth.example.com/"


def test_cli_override_reaches_nested_section():
    settings = load_settings(env={}, overrides=["auth.jwt.leeway=3", "log.format=text"])
    assert settings.auth.jwt.leeway == 3.0
    assert settings.log.format == "text"


def test_cli_empty_value_unsets_an_optional_field(tmp_path: Path):
    settings = load_text(tmp_path, '[auth.jwt]\naudience = "x"\n', overrides=["auth.jwt.audience="])
    assert settings.auth.jwt.audience is None


def test_cli_list_override_replaces_the_file_list(tmp_path: Path):
    settings = load_text(
        tmp_path, '[auth]\nmethods = ["jwt"]\n', overrides=["auth.methods=ticket,cookie"]
    )
    assert settings.auth.methods == ("ticket", "cookie")


def test_env_names_are_unique_per_field():
    assert len({env_name(path) for path in FIELDS}) == len(FIELDS)


# ---------------------------------------------------------------- environment handling


def test_env_var_of_unknown_section_is_ignored():
    env = {"WSGUARD_HOME": "/opt/wsguard", "WSGUARD_DEBUG": "1", "OTHER_LIMITS_BURST": "x"}
    assert load_settings(env=env) == Settings()


def test_env_var_with_unknown_key_in_known_section_names_the_variable():
    with pytest.raises(ConfigError) as info:
        load_settings(env={"WSGUARD_LIMITS_MAX_MESAGE_BYTES": "10"})
    assert info.value.field == "WSGUARD_LIMITS_MAX_MESAGE_BYTES"
    assert str(info.value) == (
        "WSGUARD_LIMITS_MAX_MESAGE_BYTES: unknown setting (did you mean"
        ' "WSGUARD_LIMITS_MAX_MESSAGE_BYTES"?)'
    )


def test_env_var_with_unknown_key_never_shows_its_value():
    with pytest.raises(ConfigError) as info:
        load_settings(env={"WSGUARD_API_TOKEN": "hunter2-secret"})
    assert "hunter2-secret" not in str(info.value)


def test_default_secret_env_names_are_not_overrides():
    env = {"WSGUARD_API_KEY": "k-secret", "WSGUARD_TICKET_SECRET": "t-secret"}
    assert load_settings(env=env) == Settings()


def test_secret_env_named_in_file_is_skipped(tmp_path: Path):
    settings = load_text(
        tmp_path,
        '[auth.jwt]\nsecret_env = "WSGUARD_AUTH_JWT_SECRET"\n',
        env={"WSGUARD_AUTH_JWT_SECRET": "jwt-secret"},
    )
    assert settings.auth.jwt.secret_env == "WSGUARD_AUTH_JWT_SECRET"


def test_secret_env_named_by_env_override_is_skipped():
    env = {"WSGUARD_API_KEY_ENV": "WSGUARD_API_TOKEN", "WSGUARD_API_TOKEN": "k"}
    assert load_settings(env=env).api.key_env == "WSGUARD_API_TOKEN"


def test_secret_env_named_by_cli_override_is_skipped():
    env = {"WSGUARD_LOG_SIGNING_KEY": "k"}
    settings = load_settings(env=env, overrides=["auth.ticket.secret_env=WSGUARD_LOG_SIGNING_KEY"])
    assert settings.auth.ticket.secret_env == "WSGUARD_LOG_SIGNING_KEY"


# ---------------------------------------------------------------- file errors


def test_missing_file_names_the_path(tmp_path: Path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert info.value.field == ""
    assert str(info.value) == f"{path}: no such file"


def test_toml_syntax_error_names_path_and_line(tmp_path: Path):
    path = write(tmp_path, "[server]\nport = = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert info.value.field == ""
    assert str(info.value).startswith(f"{path}: invalid TOML: ")
    assert "line 2" in str(info.value)


def test_non_utf8_file_is_a_config_error(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b'[server]\nhost = "\xff"\n')
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_settings(path, env={})


# ---------------------------------------------------------------- unknown keys


def test_unknown_key_in_file_suggests_the_close_match(tmp_path: Path):
    assert error_of(tmp_path, "[limits]\nmax_mesage_bytes = 1\n") == (
        'limits.max_mesage_bytes: unknown key (did you mean "max_message_bytes"?)'
    )


def test_unknown_section_suggests_the_close_match(tmp_path: Path):
    assert (
        error_of(tmp_path, "[limts]\nburst = 1\n")
        == 'limts: unknown section (did you mean "limits"?)'
    )


def test_key_in_the_wrong_section_suggests_the_right_one(tmp_path: Path):
    assert error_of(tmp_path, '[server]\nallowed_hosts = ["a"]\n') == (
        'server.allowed_hosts: unknown key (did you mean "origins.allowed_hosts"?)'
    )


def test_unknown_key_without_close_match_lists_known_keys(tmp_path: Path):
    assert (
        error_of(tmp_path, "[broker]\nzzz = 1\n")
        == "broker.zzz: unknown key; known: url, prefix, presence_ttl"
    )


def test_unknown_key_in_nested_section(tmp_path: Path):
    assert error_of(tmp_path, "[auth.jwt]\nleewey = 1\n") == (
        'auth.jwt.leewey: unknown key (did you mean "leeway"?)'
    )


def test_section_given_as_a_value_is_an_error(tmp_path: Path):
    assert error_of(tmp_path, "limits = 3\n") == "limits: must be a table ([limits]), got 3"


def test_cli_unknown_key_suggests_the_close_match():
    assert override_error("limits.max_mesage_bytes=1") == (
        'limits.max_mesage_bytes: unknown key (did you mean "max_message_bytes"?)'
    )


def test_cli_unknown_section_suggests_the_close_match():
    assert override_error("limts.burst=1") == 'limts: unknown section (did you mean "limits"?)'


def test_cli_override_without_equals_sign_is_an_error():
    assert override_error("limits.burst") == (
        'invalid override "limits.burst": expected section.key=value'
    )


def test_cli_override_of_a_whole_section_is_an_error():
    assert override_error("auth.jwt=1").startswith("auth.jwt: is a section;")


def test_cli_override_below_a_value_is_an_error():
    assert override_error("limits.burst.x=1") == (
        "limits.burst.x: limits.burst is a value, not a section"
    )


# ---------------------------------------------------------------- types and ranges


def test_non_integer_text_is_rejected_with_field_and_value(tmp_path: Path):
    assert error_of(tmp_path, '[limits]\nmax_message_bytes = "64k"\n') == (
        'limits.max_message_bytes: must be a positive integer, got "64k"'
    )


def test_non_integer_env_value_is_rejected_with_field_and_value():
    with pytest.raises(ConfigError) as info:
        load_settings(env={"WSGUARD_LIMITS_MAX_MESSAGE_BYTES": "64k"})
    assert str(info.value) == 'limits.max_message_bytes: must be a positive integer, got "64k"'


def test_bool_is_not_an_integer(tmp_path: Path):
    assert error_of(tmp_path, "[limits]\nburst = true\n") == (
        "limits.burst: must be a positive integer, got true"
    )


def test_bool_is_not_a_number(tmp_path: Path):
    assert error_of(tmp_path, "[limits]\nidle_timeout = false\n") == (
        "limits.idle_timeout: must be a positive number, got false"
    )


def test_float_is_not_an_integer(tmp_path: Path):
    assert error_of(tmp_path, "[limits]\nburst = 4.5\n") == (
        "limits.burst: must be a positive integer, got 4.5"
    )


def test_string_is_not_a_bool(tmp_path: Path):
    assert error_of(tmp_path, '[server]\nallow_plaintext = "yes"\n') == (
        'server.allow_plaintext: must be true or false, got "yes"'
    )


def test_env_bool_must_be_toml_true_or_false():
    with pytest.raises(ConfigError) as info:
        load_settings(env={"WSGUARD_SERVER_ALLOW_PLAINTEXT": "1"})
    assert str(info.value) == "server.allow_plaintext: must be true or false, got 1"


def test_list_field_rejects_a_bare_string_in_the_file(tmp_path: Path):
    assert error_of(tmp_path, '[auth]\nmethods = "jwt"\n') == (
        'auth.methods: must be a list of strings, got "jwt"'
    )


def test_string_field_rejects_a_number(tmp_path: Path):
    assert error_of(tmp_path, "[server]\nhost = 127\n") == "server.host: must be a string, got 127"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (f.name, value)
        for f in dataclasses.fields(LimitsConfig)
        if f.name != "compression"
        for value in ("0", "-1")
        # ping_interval = 0 switches keepalive pings off (tested below).
        if (f.name, value) != ("ping_interval", "0")
    ],
)
def test_every_limit_must_be_positive(field: str, value: str):
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, overrides=[f"limits.{field}={value}"])
    assert info.value.field == f"limits.{field}"
    assert str(info.value).endswith(f", got {value}")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_numbers_are_rejected(value: str):
    with pytest.raises(ConfigError, match=r"^limits\.idle_timeout: must be a positive number"):
        load_settings(env={}, overrides=[f"limits.idle_timeout={value}"])


@pytest.mark.parametrize("value", [0, 1001])
def test_json_max_depth_is_bounded(value: int):
    assert override_error(f"limits.json_max_depth={value}") == (
        f"limits.json_max_depth: must be an integer between 1 and 1000, got {value}"
    )


@pytest.mark.parametrize("value", [1, 1000])
def test_json_max_depth_bounds_are_inclusive(value: int):
    settings = load_settings(env={}, overrides=[f"limits.json_max_depth={value}"])
    assert settings.limits.json_max_depth == value


def test_max_fragments_must_be_at_least_one():
    assert override_error("limits.max_fragments=0") == (
        "limits.max_fragments: must be a positive integer, got 0"
    )
    assert load_settings(env={}, overrides=["limits.max_fragments=1"]).limits.max_fragments == 1


@pytest.mark.parametrize("field", ["server.port", "api.port"])
@pytest.mark.parametrize("value", [-1, 65536])
def test_ports_are_0_to_65535(field: str, value: int):
    assert override_error(f"{field}={value}") == (
        f"{field}: must be an integer between 0 and 65535, got {value}"
    )


def test_port_zero_means_pick_a_free_port():
    settings = load_settings(env={}, overrides=["server.port=0", "api.port=65535"])
    assert (settings.server.port, settings.api.port) == (0, 65535)


def test_more_than_one_worker_on_the_memory_broker_is_refused_with_the_fix():
    assert override_error("server.workers=2") == (
        "server.workers: more than one worker needs a shared broker: set broker.url to "
        "redis://...; with memory:// every worker would keep its own channels, history, "
        "tickets and revocations"
    )


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://cache.example.com:6380"])
def test_more_than_one_worker_is_allowed_on_a_redis_broker(url: str):
    settings = load_settings(env={}, overrides=["server.workers=4", f"broker.url={url}"])
    assert settings.server.workers == 4


def test_one_worker_keeps_the_memory_broker():
    settings = load_settings(env={}, overrides=["server.workers=1"])
    assert (settings.server.workers, settings.broker.url) == (1, "memory://")


def test_workers_below_one_are_refused_by_the_rules_too():
    from wsguard.config_rules import validate

    with pytest.raises(ConfigError) as info:
        validate(Settings(server=ServerConfig(workers=0)))
    assert str(info.value) == "server.workers: must be a positive integer, got 0"


def test_workers_must_be_at_least_one():
    assert override_error("server.workers=0") == (
        "server.workers: must be a positive integer, got 0"
    )


def test_jwt_leeway_may_be_zero_but_not_negative():
    assert load_settings(env={}, overrides=["auth.jwt.leeway=0"]).auth.jwt.leeway == 0.0
    assert override_error("auth.jwt.leeway=-1") == (
        "auth.jwt.leeway: must be a number >= 0, got -1"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("log.level=verbose", 'log.level: must be one of "debug", "info", "warning", "error"'),
        ("log.format=xml", 'log.format: must be one of "json", "text"'),
        ("server.tls_client_auth=maybe", 'server.tls_client_auth: must be one of "optional"'),
    ],
)
def test_choice_fields_reject_other_values(override: str, message: str):
    assert override_error(override).startswith(message)


# ---------------------------------------------------------------- field rules


@pytest.mark.parametrize("path", ["ws", "/ws?x=1", "/ws#top", "/w s", ""])
def test_ws_path_must_be_a_plain_absolute_path(path: str):
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, overrides=[f'server.ws_path="{path}"'])
    assert str(info.value).startswith('server.ws_path: must start with "/"')


def test_tls_cert_without_key_is_an_error(pem_files: tuple[str, str, str]):
    cert, _, _ = pem_files
    assert override_error(f"server.tls_cert={cert}") == (
        "server.tls_key: must be set together with server.tls_cert"
    )


def test_tls_key_without_cert_is_an_error(pem_files: tuple[str, str, str]):
    _, key, _ = pem_files
    assert override_error(f"server.tls_key={key}") == (
        "server.tls_cert: must be set together with server.tls_key"
    )


def test_tls_files_must_exist(tmp_path: Path, pem_files: tuple[str, str, str]):
    cert, key, _ = pem_files
    missing = str(tmp_path / "nope.pem")
    assert override_error(f"server.tls_cert={missing}", f"server.tls_key={key}") == (
        f'server.tls_cert: file not found: "{missing}"'
    )
    assert override_error(f"server.tls_cert={cert}", f"server.tls_key={missing}") == (
        f'server.tls_key: file not found: "{missing}"'
    )


def test_tls_cert_and_key_together_load(pem_files: tuple[str, str, str]):
    cert, key, ca = pem_files
    settings = load_settings(
        env={},
        overrides=[
            f"server.tls_cert={cert}",
            f"server.tls_key={key}",
            f"server.tls_client_ca={ca}",
            "server.tls_client_auth=required",
        ],
    )
    assert (settings.server.tls_cert, settings.server.tls_key) == (cert, key)
    assert settings.server.tls_client_auth == "required"


def test_tls_client_ca_requires_tls_cert(pem_files: tuple[str, str, str]):
    _, _, ca = pem_files
    assert override_error(f"server.tls_client_ca={ca}") == (
        "server.tls_client_ca: requires server.tls_cert and server.tls_key"
    )


def test_tls_client_ca_must_exist(tmp_path: Path, pem_files: tuple[str, str, str]):
    cert, key, _ = pem_files
    missing = str(tmp_path / "ca-missing.pem")
    error = override_error(
        f"server.tls_cert={cert}", f"server.tls_key={key}", f"server.tls_client_ca={missing}"
    )
    assert error == f'server.tls_client_ca: file not found: "{missing}"'


def test_auth_methods_must_not_be_empty(tmp_path: Path):
    assert error_of(tmp_path, "[auth]\nmethods = []\n").startswith(
        "auth.methods: must name at least one method"
    )


def test_auth_methods_reject_unknown_method(tmp_path: Path):
    assert error_of(tmp_path, '[auth]\nmethods = ["jwt", "tiket"]\n') == (
        'auth.methods[1]: unknown value "tiket" (did you mean "ticket"?);'
        ' choose from "ticket", "jwt", "cookie", "basic", "mtls"'
    )


def test_auth_methods_reject_duplicates(tmp_path: Path):
    assert error_of(tmp_path, '[auth]\nmethods = ["jwt", "cookie", "jwt"]\n') == (
        'auth.methods[2]: duplicate method "jwt"'
    )


@pytest.mark.parametrize("name", ["none", "NONE", "None"])
def test_jwt_algorithm_none_is_never_allowed(tmp_path: Path, name: str):
    assert error_of(tmp_path, f'[auth.jwt]\nalgorithms = ["HS256", "{name}"]\n') == (
        'auth.jwt.algorithms[1]: "none" is never allowed:'
        " it accepts unsigned tokens that anyone can forge"
    )


def test_jwt_unknown_algorithm_suggests_the_close_match(tmp_path: Path):
    assert error_of(tmp_path, '[auth.jwt]\nalgorithms = ["HS257"]\n').startswith(
        'auth.jwt.algorithms[0]: unknown algorithm "HS257" (did you mean "HS256"?); known: HS256'
    )


def test_jwt_accepts_every_pyjwt_algorithm(tmp_path: Path):
    algorithms = [
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "ES256K", "EdDSA",
    ]  # fmt: skip
    settings = load_settings(env={"WSGUARD_AUTH_JWT_ALGORITHMS": ",".join(algorithms)})
    assert settings.auth.jwt.algorithms == tuple(algorithms)


def test_jwt_algorithms_must_not_be_empty():
    assert override_error("auth.jwt.algorithms=[]") == (
        "auth.jwt.algorithms: must name at least one algorithm"
    )


def test_jwt_key_files_must_exist(tmp_path: Path):
    missing = str(tmp_path / "pub.pem")
    assert override_error(f"auth.jwt.public_key_file={missing}") == (
        f'auth.jwt.public_key_file: file not found: "{missing}"'
    )


def test_jwks_url_must_be_https_unless_loopback():
    assert override_error("auth.jwt.jwks_url=http://auth.example.com/jwks.json") == (
        'auth.jwt.jwks_url: must be an https:// URL, got "http://auth.example.com/jwks.json"'
    )
    settings = load_settings(env={}, overrides=["auth.jwt.jwks_url=http://127.0.0.1:9/jwks"])
    assert settings.auth.jwt.jwks_url == "http://127.0.0.1:9/jwks"


def test_secret_env_fields_must_be_variable_names():
    assert override_error("api.key_env=not a name") == (
        'api.key_env: must be an environment variable name, got "not a name"'
    )


@pytest.mark.parametrize(
    "url", ["memory://", "redis://127.0.0.1:6379/0", "rediss://r.example:6380"]
)
def test_broker_url_accepts_memory_and_redis(url: str):
    assert load_settings(env={}, overrides=[f"broker.url={url}"]).broker.url == url


def test_broker_url_rejects_other_schemes_without_echoing_credentials():
    error = override_error("broker.url=amqp://user:s3cret@mq.example/")
    assert (
        error
        == 'broker.url: must start with "memory://", "redis://" or "rediss://", got scheme "amqp"'
    )
    assert "s3cret" not in error


# ---------------------------------------------------------------- allow-list entries (core parsers)


def test_invalid_allowed_host_names_field_and_index():
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, overrides=['origins.allowed_hosts=["app.example.com", ""]'])
    assert info.value.field == "origins.allowed_hosts[1]"
    assert str(info.value).startswith("origins.allowed_hosts[1]: ")


def test_invalid_allowed_origin_names_field_and_index():
    with pytest.raises(ConfigError) as info:
        load_settings(
            env={}, overrides=['origins.allowed=["https://app.example.com", "not an origin"]']
        )
    assert info.value.field == "origins.allowed[1]"
    assert str(info.value).startswith("origins.allowed[1]: ")


def test_invalid_trusted_proxy_names_field_and_index():
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, overrides=['server.trusted_proxies=["10.0.0.1", "not-an-ip"]'])
    assert info.value.field == "server.trusted_proxies[1]"
    assert str(info.value).startswith("server.trusted_proxies[1]: ")


def test_valid_allow_lists_load():
    settings = load_settings(
        env={},
        overrides=[
            "origins.allowed_hosts=app.example.com",
            "origins.allowed=https://app.example.com",
            "server.trusted_proxies=10.0.0.0/24",
        ],
    )
    assert settings.origins.allowed_hosts == ("app.example.com",)
    assert settings.origins.allowed == ("https://app.example.com",)
    assert settings.server.trusted_proxies == ("10.0.0.0/24",)


# ---------------------------------------------------------------- cross-field rules


def test_public_host_without_allowed_hosts_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, '[server]\nhost = "0.0.0.0"\nallow_plaintext = true\n')
    assert info.value.field == "origins.allowed_hosts"
    assert "must list the public host names" in info.value.problem


def test_public_host_without_tls_is_refused_naming_every_way_out(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, PUBLIC)
    assert info.value.field == "server.tls_cert"
    assert info.value.problem.startswith("wsguard refuses to serve plain ws://")
    for switch in (
        "server.tls_cert",
        "server.tls_key",
        "server.trusted_proxies",
        "server.allow_plaintext",
    ):
        assert switch in info.value.problem


def test_public_host_with_allow_plaintext_loads(tmp_path: Path):
    settings = load_text(tmp_path, PUBLIC, overrides=["server.allow_plaintext=true"])
    assert settings.server.allow_plaintext is True


def test_public_host_behind_trusted_proxy_loads(tmp_path: Path):
    settings = load_text(tmp_path, PUBLIC, overrides=["server.trusted_proxies=10.0.0.2"])
    assert settings.server.trusted_proxies == ("10.0.0.2",)


def test_public_host_with_tls_loads(tmp_path: Path, pem_files: tuple[str, str, str]):
    cert, key, _ = pem_files
    settings = load_text(
        tmp_path, PUBLIC, overrides=[f"server.tls_cert={cert}", f"server.tls_key={key}"]
    )
    assert settings.server.tls_cert == cert


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_loopback_host_needs_neither_tls_nor_allowed_hosts(host: str):
    assert load_settings(env={}, overrides=[f"server.host={host}"]).server.host == host


def test_allow_any_origin_with_an_allow_list_is_contradictory():
    with pytest.raises(ConfigError) as info:
        load_settings(
            env={},
            overrides=["origins.allow_any_origin=true", "origins.allowed=https://app.example.com"],
        )
    assert info.value.field == "origins.allow_any_origin"
    assert info.value.problem.startswith("contradicts origins.allowed")


def test_allow_any_origin_alone_loads():
    settings = load_settings(env={}, overrides=["origins.allow_any_origin=true"])
    assert settings.origins.allow_any_origin is True


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.255.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),  # noqa: S104
        ("::", False),
        ("", False),
        ("10.0.0.1", False),
        ("128.0.0.1", False),
        ("localhost.example.com", False),
        ("app.example.com", False),
    ],
)
def test_is_loopback_host(host: str, expected: bool):
    assert is_loopback_host(host) is expected


# ---------------------------------------------------------------- insecure switches


def test_defaults_have_no_insecure_switch():
    assert insecure_switches(Settings()) == []


@pytest.mark.parametrize(
    ("settings", "prefix"),
    [
        (Settings(server=ServerConfig(allow_plaintext=True)), "server.allow_plaintext = true:"),
        (Settings(origins=OriginsConfig(allow_missing=True)), "origins.allow_missing = true:"),
        (Settings(origins=OriginsConfig(allow_null=True)), "origins.allow_null = true:"),
        (
            Settings(origins=OriginsConfig(allow_any_origin=True)),
            "origins.allow_any_origin = true:",
        ),
        (Settings(auth=AuthConfig(required=False)), "auth.required = false:"),
        (Settings(server=ServerConfig(echo=True)), "server.echo = true:"),
        (Settings(limits=LimitsConfig(compression=True)), "limits.compression = true:"),
    ],
)
def test_each_insecure_switch_gives_one_sentence(settings: Settings, prefix: str):
    warnings = insecure_switches(settings)
    assert len(warnings) == 1
    assert warnings[0].startswith(prefix)


def test_compression_warning_names_crime_and_breach():
    (warning,) = insecure_switches(Settings(limits=LimitsConfig(compression=True)))
    assert "CRIME/BREACH" in warning


def test_all_insecure_switches_together_give_seven_sentences():
    settings = Settings(
        server=ServerConfig(allow_plaintext=True, echo=True),
        origins=OriginsConfig(allow_missing=True, allow_null=True, allow_any_origin=True),
        auth=AuthConfig(required=False),
        limits=LimitsConfig(compression=True),
    )
    assert len(insecure_switches(settings)) == 7


# ---------------------------------------------------------------- rendering


def test_render_shows_secret_names_and_whether_set_never_values():
    settings = Settings(auth=AuthConfig(jwt=JwtConfig(secret_env="MY_JWT_SECRET")))
    env = {"MY_JWT_SECRET": "jwt-s3cret-value", "WSGUARD_TICKET_SECRET": "ticket-s3cret"}
    text = render_settings(settings, env=env)
    assert 'secret_env = "MY_JWT_SECRET"  # set' in text
    assert 'secret_env = "WSGUARD_TICKET_SECRET"  # set' in text
    assert 'key_env = "WSGUARD_API_KEY"  # NOT SET' in text
    assert "jwt-s3cret-value" not in text
    assert "ticket-s3cret" not in text


def test_render_treats_an_empty_secret_as_not_set():
    text = render_settings(Settings(), env={"WSGUARD_TICKET_SECRET": ""})
    assert 'secret_env = "WSGUARD_TICKET_SECRET"  # NOT SET' in text


def test_render_masks_a_broker_password():
    settings = Settings(broker=BrokerConfig(url="redis://user:pa55word@redis.internal:6379/0"))
    text = render_settings(settings, env={})
    assert 'url = "redis://user:****@redis.internal:6379/0"' in text
    assert "pa55word" not in text


def test_render_marks_insecure_switches():
    text = render_settings(Settings(auth=AuthConfig(required=False)), env={})
    assert "required = false  # INSECURE" in text


def test_render_comments_out_unset_fields():
    text = render_settings(Settings(), env={})
    assert "# tls_cert = (not set)" in text
    assert "[auth.jwt]" in text


def test_render_of_defaults_loads_back_to_defaults(tmp_path: Path):
    assert load_text(tmp_path, render_settings(Settings(), env={})) == Settings()


def test_render_round_trips_non_default_settings(tmp_path: Path, pem_files: tuple[str, str, str]):
    cert, key, ca = pem_files
    settings = Settings(
        server=ServerConfig(
            host="0.0.0.0",  # noqa: S104
            port=0,
            ws_path="/socket",
            tls_cert=cert,
            tls_key=key,
            tls_client_ca=ca,
            tls_client_auth="required",
            workers=1,
        ),
        origins=OriginsConfig(
            allowed_hosts=("app.example.com",),
            allowed=("https://app.example.com",),
            allow_null=True,
        ),
        auth=AuthConfig(
            methods=("jwt", "mtls"),
            first_message_timeout=2.5,
            jwt=JwtConfig(algorithms=("RS256", "ES256"), audience='quote"and\\slash', leeway=0.0),
            ticket=TicketConfig(ttl=12.0, secret_env="TICKETS"),
        ),
        limits=LimitsConfig(max_message_bytes=1024, messages_per_second=0.5, compression=True),
        broker=BrokerConfig(url="redis://127.0.0.1:6379/1"),
        log=LogConfig(level="debug", format="text", audit=False),
    )
    rendered = write(tmp_path, render_settings(settings, env={}), name="rendered.toml")
    assert load_settings(rendered, env={}) == settings


# ---------------------------------------------------------------- shipped examples


def test_echo_conformance_example_is_loopback_echo_with_big_limits():
    settings = load_settings(ROOT / "examples" / "echo-conformance.toml", env={})
    assert is_loopback_host(settings.server.host)
    assert settings.server.port == 9001
    assert settings.server.echo is True
    assert settings.auth.required is False
    assert settings.origins.allow_missing is True
    assert settings.limits.max_message_bytes == 16777216
    assert settings.limits.max_fragments == 100000


def test_production_example_loads_with_real_certificate_paths(pem_files: tuple[str, str, str]):
    cert, key, _ = pem_files
    settings = load_settings(
        ROOT / "examples" / "wsguard.toml",
        env={},
        overrides=[f"server.tls_cert={cert}", f"server.tls_key={key}"],
    )
    assert settings.origins.allowed_hosts == ("app.example.com",)
    assert settings.origins.allowed == ("https://app.example.com",)
    assert insecure_switches(settings) == []


def test_public_api_is_curated():
    import wsguard.config

    assert sorted(wsguard.config.__all__) == [
        "insecure_switches",
        "is_loopback_host",
        "load_settings",
        "read_secret",
        "render_settings",
    ]


def test_ping_interval_zero_switches_pings_off():
    settings = load_settings(None, env={}, overrides=["limits.ping_interval=0"])
    assert settings.limits.ping_interval == 0
