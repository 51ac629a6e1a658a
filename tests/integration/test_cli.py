"""The ``wsguard`` command line as a real process: exit codes, one-line errors, masked secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SECURE = '[server]\nhost = "127.0.0.1"\nport = 0\n'


def clean_env(**extra: str) -> dict[str, str]:
    """The parent's environment without any WSGUARD_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGUARD_")}
    return {**env, **extra}


def wsguard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsguard.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env if env is not None else clean_env(),
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wsguard.toml"
    path.write_text(text)
    return path


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [expected]
    assert result.stdout == ""


def test_version_prints_name_and_version():
    result = wsguard("--version")
    assert result.returncode == 0
    assert result.stdout == "wsguard 0.1.0\n"


def test_console_script_is_installed_and_runs():
    script = Path(sys.executable).with_name("wsguard")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout) == (0, "wsguard 0.1.0\n")


def test_config_check_ok_on_a_secure_config(tmp_path: Path):
    path = write(tmp_path, SECURE)
    result = wsguard("config", "check", str(path))
    assert result.returncode == 0
    assert result.stdout == f"{path}: OK\n"
    assert result.stderr == ""


def test_config_check_lists_one_warning_per_insecure_switch(tmp_path: Path):
    path = write(tmp_path, SECURE + "[auth]\nrequired = false\n")
    result = wsguard("config", "check", str(path), "--set", "origins.allow_null=true")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: OK"
    assert len(lines) == 3
    assert lines[1].startswith("warning: origins.allow_null = true:")
    assert lines[2].startswith("warning: auth.required = false:")


def test_config_check_invalid_value_is_one_line_and_exit_2(tmp_path: Path):
    path = write(tmp_path, '[limits]\nmax_message_bytes = "64k"\n')
    result = wsguard("config", "check", str(path))
    assert_one_line_error(
        result, 'error: limits.max_message_bytes: must be a positive integer, got "64k"'
    )


def test_config_check_unknown_key_suggests_the_right_one(tmp_path: Path):
    path = write(tmp_path, "[limits]\nmax_mesage_bytes = 1\n")
    result = wsguard("config", "check", str(path))
    assert_one_line_error(
        result, 'error: limits.max_mesage_bytes: unknown key (did you mean "max_message_bytes"?)'
    )


def test_config_check_set_override_is_validated(tmp_path: Path):
    path = write(tmp_path, SECURE)
    result = wsguard("config", "check", str(path), "--set", "server.port=70000")
    assert_one_line_error(
        result, "error: server.port: must be an integer between 0 and 65535, got 70000"
    )


def test_config_check_env_override_with_unknown_key_names_the_variable(tmp_path: Path):
    path = write(tmp_path, SECURE)
    result = wsguard("config", "check", str(path), env=clean_env(WSGUARD_LIMITS_BRUST="3"))
    assert_one_line_error(
        result,
        'error: WSGUARD_LIMITS_BRUST: unknown setting (did you mean "WSGUARD_LIMITS_BURST"?)',
    )


def test_config_check_missing_file(tmp_path: Path):
    path = tmp_path / "absent.toml"
    assert_one_line_error(wsguard("config", "check", str(path)), f"error: {path}: no such file")


def test_config_check_toml_syntax_error_names_the_line(tmp_path: Path):
    path = write(tmp_path, "[server]\nport = = 1\n")
    result = wsguard("config", "check", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {path}: invalid TOML: ")
    assert "line 2" in line


def test_config_show_prints_toml_and_masks_secrets(tmp_path: Path):
    path = write(tmp_path, SECURE + '[auth.jwt]\nsecret_env = "MY_JWT_SECRET"\n')
    env = clean_env(MY_JWT_SECRET="jwt-value-1234", WSGUARD_TICKET_SECRET="ticket-value-5678")
    result = wsguard("config", "show", str(path), env=env)
    assert result.returncode == 0
    assert 'secret_env = "MY_JWT_SECRET"  # set' in result.stdout
    assert 'secret_env = "WSGUARD_TICKET_SECRET"  # set' in result.stdout
    assert 'key_env = "WSGUARD_API_KEY"  # NOT SET' in result.stdout
    assert "jwt-value-1234" not in result.stdout + result.stderr
    assert "ticket-value-5678" not in result.stdout + result.stderr
    assert "port = 0\n" in result.stdout


def test_config_show_applies_set_overrides(tmp_path: Path):
    path = write(tmp_path, SECURE)
    result = wsguard("config", "show", str(path), "--set", "limits.burst=99")
    assert result.returncode == 0
    assert "\nburst = 99\n" in result.stdout


def test_serve_with_bad_config_exits_2_with_one_line(tmp_path: Path):
    path = write(tmp_path, '[server]\nws_path = "ws"\n')
    result = wsguard("serve", "-c", str(path))
    assert_one_line_error(
        result,
        'error: server.ws_path: must start with "/" and contain no "?", "#" or spaces, got "ws"',
    )


def test_serve_public_host_flag_without_tls_is_refused(tmp_path: Path):
    path = write(tmp_path, SECURE + '[origins]\nallowed_hosts = ["app.example.com"]\n')
    result = wsguard("serve", "-c", str(path), "--host", "0.0.0.0")  # noqa: S104
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: server.tls_cert: wsguard refuses to serve plain ws://")


def test_serve_port_flag_is_validated():
    result = wsguard("serve", "--port", "65536")
    assert_one_line_error(
        result, "error: server.port: must be an integer between 0 and 65535, got 65536"
    )


def test_serve_with_missing_config_file(tmp_path: Path):
    path = tmp_path / "absent.toml"
    assert_one_line_error(wsguard("serve", "-c", str(path)), f"error: {path}: no such file")


def test_unknown_command_is_a_usage_error():
    result = wsguard("frobnicate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "No such command" in result.stderr
