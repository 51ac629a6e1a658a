"""Reading the JSON Schema files that ``[[channels]]`` rules name (``schema``, ``output_schema``).

The I/O half of ``wsguard.core.schema``: ``load_schema`` reads one file, decodes it as strict
JSON (no duplicate keys, no ``NaN``/``Infinity``) and compiles it; ``compile_channel_schemas``
does that for every rule of a configuration, each distinct file once. The configuration loader
calls ``load_schema`` so that ``wsguard config check`` reports a bad file; the server calls
``compile_channel_schemas`` at start-up. Paths are absolute by then: the loader resolves them
against the directory of the configuration file.
"""

from __future__ import annotations

import json
import math
from typing import Any

from wsguard.core.schema import Schema
from wsguard.exceptions import ConfigError
from wsguard.settings import Settings

__all__ = ["ChannelSchemas", "compile_channel_schemas", "load_schema"]

ChannelSchemas = dict[int, tuple[Schema | None, Schema | None]]
"""Rule index in ``settings.channels`` -> (inbound ``schema``, ``output_schema``)."""


_JSON_TYPES = {
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}


class _BadJson(ValueError):
    """Raised by the decoder's hooks."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            # Parsers disagree on which duplicate wins: the schema read might not be the one meant.
            raise _BadJson(f"duplicate key {json.dumps(key, ensure_ascii=False)}")
        obj[key] = value
    return obj


def _constant(name: str) -> Any:
    raise _BadJson(f"{name} is not JSON (RFC 8259 §6)")


def _number(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _BadJson(f"number {literal} is out of range")
    return value


def load_schema(path: str) -> Schema:
    """Read, decode and compile the JSON Schema file at ``path``.

    Args:
        path: the file; relative paths are taken against the current directory.

    Returns:
        The compiled schema.

    Raises:
        ValueError: the file is missing or unreadable, not UTF-8, not strict JSON, not a JSON
            object, or not a valid JSON Schema (see ``Schema.compile``). The message names the
            file and says what is wrong, for the operator.
    """
    shown = json.dumps(path, ensure_ascii=False)
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        raise ValueError(f"file not found: {shown}") from None
    except OSError as exc:
        raise ValueError(f"cannot read {shown}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{shown}: not valid UTF-8") from None
    try:
        document = json.loads(
            text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_number
        )
    except _BadJson as exc:
        raise ValueError(f"{shown}: not valid JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{shown}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise ValueError(f"{shown}: not valid JSON: nested too deeply") from None
    if not isinstance(document, dict):
        kind = _JSON_TYPES.get(type(document), "null")
        raise ValueError(f"{shown}: must hold a JSON object (a JSON Schema), got {kind}")
    try:
        return Schema.compile(document)
    except ValueError as exc:
        raise ValueError(f"{shown}: {exc}") from None


def compile_channel_schemas(settings: Settings) -> ChannelSchemas:
    """Compile the schemas of every ``[[channels]]`` rule, each distinct file once.

    Returns:
        For each rule index, its inbound and output schemas (``None`` where the rule sets none).

    Raises:
        ConfigError: naming the field (``channels[2].output_schema``) of a file that does not
            load (see ``load_schema``).
    """
    cache: dict[str, Schema] = {}

    def compiled(field: str, path: str | None) -> Schema | None:
        if path is None:
            return None
        if path not in cache:
            try:
                cache[path] = load_schema(path)
            except ValueError as exc:
                raise ConfigError(field, str(exc)) from None
        return cache[path]

    return {
        index: (
            compiled(f"channels[{index}].schema", rule.schema),
            compiled(f"channels[{index}].output_schema", rule.output_schema),
        )
        for index, rule in enumerate(settings.channels)
    }
