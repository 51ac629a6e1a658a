"""Load, validate and print wsguard's configuration.

Sources, lowest to highest precedence: built-in defaults, a TOML file, ``WSGUARD_<SECTION>_<KEY>``
environment variables, then ``section.key=value`` overrides from the command line. Every value is
checked at load time and every error is a ``ConfigError`` naming the field (and the value, unless
it could be a secret). Only this module and the CLI read the environment.

The schema (types, ranges) is in ``wsguard.config_fields``; the rules about meaning and about
several fields at once are in ``wsguard.config_rules``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wsguard.config_fields import (
    ARRAYS,
    ENV_PREFIX,
    FIELDS,
    ITEM_FIELDS,
    TABLES,
    close_match,
    coerce,
    env_name,
    parse_override_value,
    show,
    toml_value,
)
from wsguard.config_rules import insecure_switches, is_loopback_host, validate
from wsguard.core.auth.ticket import MIN_SECRET_BYTES
from wsguard.exceptions import ConfigError
from wsguard.settings import Settings

__all__ = [
    "insecure_switches",
    "is_loopback_host",
    "load_settings",
    "read_secret",
    "render_settings",
]

# Fields that hold the *name* of an environment variable carrying a secret.
SECRET_NAME_FIELDS = (
    "auth.jwt.secret_env",
    "auth.ticket.secret_env",
    "auth.cookie.secret_env",
    "api.key_env",
)


def read_secret(
    field: str, name: str, env: Mapping[str, str], min_bytes: int = MIN_SECRET_BYTES
) -> bytes:
    """Read the secret held by the environment variable ``name`` (which ``field`` names).

    Raises:
        ConfigError: naming ``field`` and the variable — never its value — when the variable
            is unset or holds fewer than ``min_bytes`` bytes (a short key can be brute-forced
            offline from any one ticket, cookie or request it signs).
    """
    value = env.get(name)
    if value is None:
        raise ConfigError(field, f"environment variable {name} is not set")
    secret = value.encode("utf-8")
    if len(secret) < min_bytes:
        raise ConfigError(
            field,
            f"environment variable {name} must hold at least {min_bytes} bytes"
            " (generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')",
        )
    return secret


Raw = dict[str, object]  # dotted field path -> raw value, before typing


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
) -> Settings:
    """Build validated ``Settings`` from defaults, a TOML file, the environment and overrides.

    Args:
        path: a TOML file, or ``None`` for defaults plus env and overrides only.
        env: the environment (``os.environ`` when ``None``). ``WSGUARD_<SECTION>_<KEY>`` variables
            override the file; variables named by ``*_env`` fields hold secrets and are skipped.
        overrides: ``section.key=value`` strings (``auth.jwt.leeway=3``); they win over all else.

    Returns:
        The validated settings.

    Raises:
        ConfigError: for an unreadable file, an unknown key, or any invalid value.
    """
    environ = os.environ if env is None else env
    raw = _read_file(Path(path)) if path is not None else {}
    cli = dict(_parse_override(item) for item in overrides)
    secret_names = _secret_env_names(raw, cli, environ)
    raw.update(_read_env(environ, secret_names))
    raw.update(cli)
    settings: Settings = _build(raw)
    settings = _absolute_schema_paths(settings, Path(path).parent if path is not None else None)
    validate(settings)
    return settings


def _absolute_schema_paths(settings: Settings, base: Path | None) -> Settings:
    """Resolve ``[[channels]]`` schema paths against the config file's directory (``base``).

    Relative paths would otherwise follow the server's working directory, so the same file
    could load different schemas depending on where the server was started from. Without a
    file (``base`` is ``None``), they resolve against the current directory.
    """

    def absolute(value: str | None) -> str | None:
        if value is None:
            return None
        return str(((base or Path()) / value).absolute())

    rules = tuple(
        dataclasses.replace(
            rule, schema=absolute(rule.schema), output_schema=absolute(rule.output_schema)
        )
        for rule in settings.channels
    )
    return dataclasses.replace(settings, channels=rules) if rules else settings


def _read_file(path: Path) -> Raw:
    try:
        with path.open("rb") as stream:
            doc = tomllib.load(stream)
    except FileNotFoundError:
        raise ConfigError("", f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError("", f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{path}: not valid UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        # The message carries "(at line L, column C)".
        raise ConfigError("", f"{path}: invalid TOML: {exc}") from None
    raw: Raw = {}
    _flatten(doc, "", raw)
    return raw


def _flatten(table: Mapping[str, Any], prefix: str, out: Raw) -> None:
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else key
        if "." in key:  # a quoted dotted key ("limits.burst" = 1) is not a path
            raise _unknown(prefix, key)
        if path in TABLES:
            if not isinstance(value, dict):
                raise ConfigError(path, f"must be a table ([{path}]), got {show(value)}")
            _flatten(value, path, out)
        elif path in FIELDS:
            out[path] = value
        elif path in ARRAYS:
            out[path] = _array_of_tables(path, value)
        else:
            raise _unknown(prefix, key)


def _array_of_tables(path: str, value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise ConfigError(path, f"must be an array of tables ([[{path}]]), got {show(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"{path}[{index}]", f"must be a table ([[{path}]]), got {show(item)}")
    return value


def _file_only(path: str, where: str) -> ConfigError:
    return ConfigError(
        path, f"[[{path}]] rules can only be set in the configuration file, not {where}"
    )


def _children(table: str) -> list[str]:
    return [f.name for f in dataclasses.fields(TABLES[table])]


def _unknown(table: str, key: str) -> ConfigError:
    """``limits.max_mesage_bytes: unknown key (did you mean "max_message_bytes"?)``."""
    path = f"{table}.{key}" if table else key
    what = "unknown key" if table else "unknown section"
    hint = close_match(key, _children(table))
    if hint is None:  # right key, wrong section?
        hint = next((p for p in FIELDS if p.rsplit(".", 1)[-1] == key), None)
    if hint is not None:
        return ConfigError(path, f'{what} (did you mean "{hint}"?)')
    return ConfigError(path, f"{what}; known: {', '.join(_children(table))}")


def _parse_override(item: str) -> tuple[str, object]:
    key, sep, text = item.partition("=")
    path = key.strip()
    if not sep or not path:
        raise ConfigError("", f"invalid override {show(item)}: expected section.key=value")
    if path in TABLES:
        raise ConfigError(
            path, f"is a section; set one of its keys, e.g. {path}.{_children(path)[0]}=..."
        )
    top = path.split(".", 1)[0].split("[", 1)[0]
    if top in ARRAYS:
        raise _file_only(top, "with --set")
    if path not in FIELDS:
        parts = path.split(".")
        table = ""
        for part in parts[:-1]:
            candidate = f"{table}.{part}" if table else part
            if candidate in FIELDS:
                raise ConfigError(path, f"{candidate} is a value, not a section")
            if candidate not in TABLES:
                break
            table = candidate
        depth = table.count(".") + 1 if table else 0
        raise _unknown(table, parts[depth])
    return path, parse_override_value(FIELDS[path], text)


def _secret_env_names(raw: Raw, cli: Raw, environ: Mapping[str, str]) -> set[str]:
    """Names of env vars that hold secrets: never read as overrides, never printed."""
    names: set[str] = set()
    for path in SECRET_NAME_FIELDS:
        default = _get(Settings(), path)
        if isinstance(default, str):
            names.add(default)
        for source in (raw, cli):
            if isinstance(source.get(path), str):
                names.add(str(source[path]))
        if env_name(path) in environ:
            names.add(environ[env_name(path)].strip())
    return names


def _read_env(environ: Mapping[str, str], secret_names: set[str]) -> Raw:
    by_env = {env_name(path): path for path in FIELDS}
    sections = {name for name in TABLES if name and "." not in name}
    raw: Raw = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or name in secret_names:
            continue
        section = name[len(ENV_PREFIX) :].split("_", 1)[0].lower()
        if section in ARRAYS:
            raise _file_only(section, f"from the environment ({name})")
        if section not in sections:
            continue  # not ours (WSGUARD_HOME, a test's variable...)
        path = by_env.get(name)
        if path is None:
            known = [n for n in by_env if n.startswith(f"{ENV_PREFIX}{section.upper()}_")]
            hint = close_match(name, known)
            problem = "unknown setting" + (f' (did you mean "{hint}"?)' if hint else "")
            # The value is not shown: an unknown WSGUARD_* variable may well hold a secret.
            raise ConfigError(name, problem)
        raw[path] = parse_override_value(FIELDS[path], text)
    return raw


def _get(settings: Settings, path: str) -> object:
    value: object = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _build(raw: Raw, table: str = "") -> Any:
    values: dict[str, Any] = {}
    for name in _children(table):
        path = f"{table}.{name}" if table else name
        if path in TABLES:
            values[name] = _build(raw, path)
        elif path in ARRAYS:
            tables: list[Mapping[str, Any]] = raw.get(path, [])  # type: ignore[assignment]
            values[name] = tuple(_build_item(path, i, item) for i, item in enumerate(tables))
        elif path in raw:
            values[name] = coerce(FIELDS[path], raw[path])
    return TABLES[table](**values)


def _build_item(array: str, index: int, table: Mapping[str, Any]) -> Any:
    """One ``[[channels]]`` table; errors name it: ``channels[2].publish``."""
    cls = ARRAYS[array]
    specs = ITEM_FIELDS[array]
    names = [f.name for f in dataclasses.fields(cls)]
    where = f"{array}[{index}]"
    values: dict[str, Any] = {}
    for key, value in table.items():
        spec = specs.get(f"{array}.{key}")
        if spec is None:
            hint = close_match(key, names)
            if hint is not None:
                raise ConfigError(f"{where}.{key}", f'unknown key (did you mean "{hint}"?)')
            raise ConfigError(f"{where}.{key}", f"unknown key; known: {', '.join(names)}")
        values[key] = coerce(dataclasses.replace(spec, path=f"{where}.{key}"), value)
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in values:
            raise ConfigError(f"{where}.{f.name}", f"is required in every [[{array}]] table")
    return cls(**values)


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo = f"{parts.username or ''}:****"
    return parts._replace(netloc=f"{userinfo}@{parts.netloc.rpartition('@')[2]}").geturl()


def render_settings(settings: Settings, *, env: Mapping[str, str] | None = None) -> str:
    """The effective configuration as TOML, for ``wsguard config show``.

    Fields naming a secret show the variable's name and whether it is set, never its value; a
    password in ``broker.url`` is masked. Unset fields are commented out, so the text loads back
    to the same settings.
    """
    environ = os.environ if env is None else env
    insecure = {line.split(" =", 1)[0] for line in insecure_switches(settings)}
    lines = ["# wsguard effective configuration (defaults < file < env < --set)"]
    for table in TABLES:
        if not table:
            continue
        lines += ["", f"[{table}]"]
        for name in _children(table):
            path = f"{table}.{name}"
            if path in TABLES:
                continue
            value = _get(settings, path)
            if value is None:
                lines.append(f"# {name} = (not set)")
                continue
            if path == "broker.url":
                value = _mask_url(str(value))
            line = f"{name} = {toml_value(value)}"
            if path in SECRET_NAME_FIELDS:
                line += "  # set" if environ.get(str(value)) else "  # NOT SET"
            elif path in insecure:
                line += "  # INSECURE"
            lines.append(line)
    for array in ARRAYS:
        items: tuple[Any, ...] = getattr(settings, array)
        for item in items:
            lines += ["", f"[[{array}]]"]
            for f in dataclasses.fields(item):
                value = getattr(item, f.name)
                if value is None:
                    lines.append(f"# {f.name} = (not set)")
                else:
                    lines.append(f"{f.name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"
