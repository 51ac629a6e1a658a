"""The schema behind ``wsguard.config``: every settable field, its type and its range.

The schema is derived from the ``Settings`` dataclasses, so a field added there is settable from
TOML, the environment and ``--set`` at once. This module only types and range-checks single
values; rules that look at a value's meaning, or at several fields, live in ``wsguard.config``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from wsguard.exceptions import ConfigError
from wsguard.settings import Settings

__all__ = [
    "ARRAYS",
    "ENV_PREFIX",
    "FIELDS",
    "ITEM_FIELDS",
    "TABLES",
    "FieldSpec",
    "close_match",
    "coerce",
    "env_name",
    "parse_override_value",
    "show",
    "toml_value",
]

ENV_PREFIX = "WSGUARD_"

Kind = Literal["bool", "int", "float", "str", "optional_str", "choice", "list"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one leaf field is typed and bounded.

    Attributes:
        path: the dotted name, ``limits.max_message_bytes``.
        kind: the value's shape.
        choices: the allowed strings for ``choice`` fields and ``list`` items (empty: any string).
        minimum: the smallest allowed number (inclusive unless ``exclusive``).
        maximum: the largest allowed number (inclusive), or ``None``.
        exclusive: ``minimum`` itself is not allowed (``> 0`` rather than ``>= 0``).
    """

    path: str
    kind: Kind
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False

    def expectation(self) -> str:
        """The phrase after "must be", e.g. ``a positive integer``."""
        noun = "integer" if self.kind == "int" else "number"
        if self.kind in ("int", "float"):
            if self.minimum is not None and self.maximum is not None:
                return f"an integer between {self.minimum:g} and {self.maximum:g}"
            if self.minimum == 0 and self.exclusive:
                return f"a positive {noun}"
            if self.minimum is not None:
                return f"a {noun} >= {self.minimum:g}"
            return f"a finite {noun}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(json.dumps(c) for c in self.choices)
        if self.kind == "list":
            return "a list of strings"
        return "a string"


# Numbers default to "positive": every limit, timeout and count in Settings must be > 0. The
# exceptions are listed here; 0 for a port means "let the OS pick a free one" (tests use it).
_BOUNDS: dict[str, tuple[float, float | None, bool]] = {
    "server.port": (0, 65535, False),
    "api.port": (0, 65535, False),
    # JSON nesting depth guards the parser's recursion and CPU (deeply nested payload attacks).
    "limits.json_max_depth": (1, 1000, False),
    "auth.jwt.leeway": (0, None, False),
    # 0 switches keepalive pings off (a proxy or the client may do it instead).
    "limits.ping_interval": (0, None, False),
    "auth.expiry_grace": (0, None, False),
    # 0 keeps no history; the cap bounds the memory one busy channel can hold.
    "channels.history_size": (0, 10000, False),
    # 0 means publications never expire from history.
    "channels.history_ttl": (0, None, False),
}


def _spec(path: str, hint: Any) -> FieldSpec:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    bounds = _BOUNDS.get(path, (0, None, True))
    if hint is bool:
        return FieldSpec(path, "bool")
    if hint is int:
        return FieldSpec(path, "int", minimum=bounds[0], maximum=bounds[1], exclusive=bounds[2])
    if hint is float:
        return FieldSpec(path, "float", minimum=bounds[0], maximum=bounds[1], exclusive=bounds[2])
    if hint is str:
        return FieldSpec(path, "str")
    if origin is Literal:
        return FieldSpec(path, "choice", choices=tuple(str(a) for a in args))
    if origin in (types.UnionType, typing.Union) and set(args) == {str, type(None)}:
        return FieldSpec(path, "optional_str")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = args[0]
        choices = tuple(typing.get_args(item)) if typing.get_origin(item) is Literal else ()
        return FieldSpec(path, "list", choices=choices)
    raise TypeError(f"wsguard.config cannot load {path} of type {hint!r}")  # a bug, not a user's


def _array_item(hint: Any) -> type | None:
    """``ChannelConfig`` for ``tuple[ChannelConfig, ...]`` (an array of tables), else None."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = args[0]
        if dataclasses.is_dataclass(item) and isinstance(item, type):
            return item
    return None


def _walk(cls: type, prefix: str, fields: dict[str, FieldSpec], tables: dict[str, type]) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        hint = hints[f.name]
        item = _array_item(hint)
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            tables[path] = hint
            _walk(hint, path, fields, tables)
        elif item is not None:
            ARRAYS[path] = item
            ITEM_FIELDS[path] = {}
            _walk(item, path, ITEM_FIELDS[path], {})
        else:
            fields[path] = _spec(path, hint)


FIELDS: dict[str, FieldSpec] = {}
TABLES: dict[str, type] = {"": Settings}
# Arrays of tables ([[channels]]): path -> item class, and path -> the item's own fields, keyed
# by ``channels.pattern`` (an error names the item: ``channels[2].pattern``). File only: they
# have no environment or ``--set`` form.
ARRAYS: dict[str, type] = {}
ITEM_FIELDS: dict[str, dict[str, FieldSpec]] = {}
_walk(Settings, "", FIELDS, TABLES)


def env_name(path: str) -> str:
    """``auth.jwt.leeway`` -> ``WSGUARD_AUTH_JWT_LEEWAY``."""
    return ENV_PREFIX + path.replace(".", "_").upper()


def close_match(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to a misspelt ``word``, if any is close enough."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.7)
    return matches[0] if matches else None


def show(value: object) -> str:
    """A value as the operator would have written it in TOML (strings in double quotes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _fail(spec: FieldSpec, value: object) -> ConfigError:
    return ConfigError(spec.path, f"must be {spec.expectation()}, got {show(value)}")


def _number(spec: FieldSpec, value: object) -> int | float:
    # bool is a subclass of int; "true" is never a number here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(spec, value)
    if spec.kind == "int" and not isinstance(value, int):
        raise _fail(spec, value)
    number = value if spec.kind == "int" else float(value)
    if not math.isfinite(number):
        raise _fail(spec, value)
    if spec.minimum is not None and (
        number < spec.minimum or (spec.exclusive and number == spec.minimum)
    ):
        raise _fail(spec, value)
    if spec.maximum is not None and number > spec.maximum:
        raise _fail(spec, value)
    return number


def coerce(spec: FieldSpec, value: object) -> object:
    """Check one raw value (from TOML, env or ``--set``) against its field; return it typed.

    Lists become tuples; an empty string for an optional field means "not set".

    Raises:
        ConfigError: naming the field and the offending value.
    """
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise _fail(spec, value)
        return value
    if spec.kind in ("int", "float"):
        return _number(spec, value)
    if spec.kind == "optional_str" and value == "":
        return None
    if spec.kind in ("str", "optional_str"):
        if not isinstance(value, str):
            raise _fail(spec, value)
        return value
    if spec.kind == "choice":
        if not isinstance(value, str) or value not in spec.choices:
            raise _fail(spec, value)
        return value
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _fail(spec, value)
    for index, item in enumerate(value):
        if spec.choices and item not in spec.choices:
            hint = close_match(item, spec.choices)
            problem = f"unknown value {show(item)}" + (f' (did you mean "{hint}"?)' if hint else "")
            allowed = ", ".join(json.dumps(c) for c in spec.choices)
            raise ConfigError(f"{spec.path}[{index}]", f"{problem}; choose from {allowed}")
    return tuple(value)


def _parse_toml_value(text: str) -> tuple[bool, object]:
    try:
        doc = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return False, None
    if set(doc) != {"v"}:
        return False, None
    return True, doc["v"]


def parse_override_value(spec: FieldSpec, text: str) -> object:
    """Turn the text of an env var or ``--set`` into a raw value for ``spec``.

    The text is read as a TOML value when it is one (``true``, ``1000``, ``"x"``, ``["a"]``),
    else taken as a bare string. Strings are kept as written for string fields (so ``--set
    auth.jwt.audience=123`` stays ``"123"``), and list fields also take ``a,b,c``.
    """
    parsed, value = _parse_toml_value(text.strip())
    if spec.kind in ("str", "optional_str", "choice"):
        return value if parsed and isinstance(value, str) else text
    if spec.kind == "list":
        if parsed and isinstance(value, list):
            return value
        return [part.strip() for part in text.split(",") if part.strip()]
    return value if parsed else text


def _escape(text: str) -> str:
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: object) -> str:
    """A typed Settings value as TOML source text (the inverse of loading it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r} as TOML")
