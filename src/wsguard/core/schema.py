"""JSON Schema checks for message data (DESIGN.md §5): one compiled ``Schema`` per document.

Performs no I/O; reads no clock. The threat is data that is well-formed JSON but not what the
application expects (a string where a number goes, an unexpected key, a 10 MB field): a channel's
``schema`` refuses it with 422 ``invalid_data`` before it reaches the broker or any subscriber,
and its ``output_schema`` holds every publication to the contract subscribers rely on.

Three choices keep the checker itself from becoming an attack surface:

- **No retrieval.** A ``$ref`` to anything outside the document (``https://``, ``file://``, a
  relative URI against an ``$id``) is refused at compile time: jsonschema-rs runs ``offline``, so
  loading a schema never makes a network request (SSRF, a slow or hostile server stalling start-up)
  nor reads a file.
- **Linear-time patterns.** ``pattern`` and ``patternProperties`` run on the ``regex`` engine
  (finite automata), not the backtracking default: a peer's string cannot make one match take
  exponential time (ReDoS). Look-around and back-references are therefore refused at compile.
- **Nothing of the peer's is reflected.** A violation names the JSON path of the first error and
  the failing keyword, never the value nor jsonschema's message (which quotes the value); object
  keys other than ``[A-Za-z0-9_]{1,64}`` show as ``[?]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import jsonschema_rs

from wsguard.codes import ReplyCode
from wsguard.core.codec import Violation

__all__ = ["INVALID_DATA", "MAX_PATH_SEGMENTS", "REASONS", "Schema", "json_path"]

INVALID_DATA: Final = "invalid_data"
"""The reason of a value the schema refuses (422 ``UNPROCESSABLE``)."""

REASONS: Final = frozenset({INVALID_DATA})
"""Every reason ``Schema.check`` produces."""

MAX_PATH_SEGMENTS: Final = 16
"""A violation shows at most this many trailing path segments: its size stays bounded."""

_SAFE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


class Schema:
    """A JSON Schema compiled once, checked against many values.

    Build it with ``Schema.compile``. Instances are immutable and safe to share.
    """

    __slots__ = ("_validator",)

    def __init__(self, validator: jsonschema_rs.Validator) -> None:
        self._validator = validator

    @classmethod
    def compile(cls, document: Mapping[str, Any]) -> Schema:
        """Compile a decoded JSON Schema document.

        The draft comes from ``$schema`` (2020-12, 2019-09, 7, 6 or 4); without it, 2020-12.

        Args:
            document: the schema, a JSON object as decoded (dicts, lists, str, numbers, ...).

        Returns:
            The compiled schema.

        Raises:
            ValueError: the document is not a valid JSON Schema (meta-validation), refers to a
                schema outside itself, or has a pattern the linear-time engine does not support.
                The message says where and what; it may quote the schema, never data.
        """
        if not isinstance(document, Mapping):
            raise ValueError(f"a JSON Schema must be a JSON object, got {type(document).__name__}")
        try:
            validator = jsonschema_rs.validator_for(
                dict(document), offline=True, pattern_options=jsonschema_rs.RegexOptions()
            )
        except jsonschema_rs.ValidationError as exc:
            raise ValueError(_compile_problem(exc)) from None
        return cls(validator)

    def check(self, value: Any, path: str = "data") -> Violation | None:
        """Check ``value`` against the schema.

        Args:
            value: decoded JSON data.
            path: the name of ``value`` in the message, the start of the error's path.

        Returns:
            ``None`` when the value is valid, else a 422 ``invalid_data`` violation such as
            ``data.items[2]: does not match the schema (minimum)`` — the first error's path and
            failing keyword only.
        """
        try:
            if self._validator.is_valid(value):  # twice as fast as iter_errors on valid data
                return None
            error = next(iter(self._validator.iter_errors(value)), None)
        except ValueError:
            # Only Python values that are not JSON get here (a dict with int keys); the codec
            # never produces them, but server code may publish anything.
            return Violation(ReplyCode.UNPROCESSABLE, INVALID_DATA, f"{path}: is not JSON data")
        if error is None:  # pragma: no cover - is_valid and iter_errors disagree: fail closed
            return Violation(ReplyCode.UNPROCESSABLE, INVALID_DATA, f"{path}: does not match")
        if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.FalseSchema):
            keyword = "false"  # the schema at that point is ``false``: nothing is allowed
        else:
            keyword = _keyword(error.schema_path)
        where = json_path(path, error.instance_path)
        return Violation(
            ReplyCode.UNPROCESSABLE,
            INVALID_DATA,
            f"{where}: does not match the schema ({keyword})",
        )


def _keyword(schema_path: Sequence[str | int]) -> str:
    last = schema_path[-1] if schema_path else ""
    return last if isinstance(last, str) and _SAFE_NAME.fullmatch(last) else "?"


def json_path(root: str, segments: Sequence[str | int]) -> str:
    """``data.items[2]``; keys that could carry markup or be huge show as ``[?]``.

    Past ``MAX_PATH_SEGMENTS`` levels, only the deepest are shown: ``data[...][998].name``.
    """
    shown = segments[-MAX_PATH_SEGMENTS:]
    parts = [root, "[...]"] if len(segments) > len(shown) else [root]
    for segment in shown:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif _SAFE_NAME.fullmatch(segment):
            parts.append(f".{segment}")
        else:
            parts.append("[?]")
    return "".join(parts)


def _pointer(segments: Sequence[str | int]) -> str:
    """A JSON Pointer (RFC 6901 §5: ``~`` as ``~0``, ``/`` as ``~1``) into the schema."""
    if not segments:
        return "the top level"
    return "".join("/" + str(s).replace("~", "~0").replace("/", "~1") for s in segments)


def _compile_problem(exc: jsonschema_rs.ValidationError) -> str:
    if isinstance(exc.kind, jsonschema_rs.ValidationErrorKind.Referencing):
        # A remote or file ``$ref``, a relative one with no base, or an unknown ``$schema``.
        return (
            f"unresolvable reference: {exc.message} (wsguard fetches no schema over the network"
            ' or from files: keep definitions in the document, under "$defs", and use a'
            ' standard "$schema" draft)'
        )
    location = exc.instance_path
    problem = f"invalid JSON Schema at {_pointer(location)}: {exc.message}"
    pattern = bool(location) and (
        location[-1] == "pattern" or (len(location) > 1 and location[-2] == "patternProperties")
    )
    if pattern and isinstance(exc.kind, jsonschema_rs.ValidationErrorKind.Format):
        problem += (
            " (patterns run on a linear-time engine, against ReDoS:"
            " look-around and back-references are not supported)"
        )
    return problem
