"""The codec: one inbound text message in, a JSON object or a ``Violation`` out (DESIGN.md §5).

Performs no I/O; reads no clock. ``decode`` refuses, each with its own stable reason:

- text that is not JSON, including the ``NaN``/``Infinity`` literals RFC 8259 §6 does not
  allow (``bad_json``);
- duplicate keys in any object (``duplicate_key``): parsers disagree on which one wins (orjson
  and ``json`` keep the last, others the first), so ``{"channel": "public", "channel":
  "admin"}`` can be authorised as one channel and acted on as the other;
- nesting deeper than ``max_depth`` (``too_deep``): deep documents exhaust the stack of
  recursive consumers;
- integers outside ``±max_int`` and numbers that overflow a double (``number_out_of_range``):
  JavaScript consumers silently round them, so two readers see two different numbers;
- the keys ``__proto__``, ``constructor`` and ``prototype`` (``forbidden_key``): merged into a
  JavaScript object they pollute its prototype;
- a top level that is not an object (``bad_envelope``).

How duplicates are found without a second parse of every message. In JSON text a quote is
either one of the two delimiters of a string token (a key or a string value) or escaped inside
one (``\\"``; RFC 8259 §7), so the text holds ``Q = 2T + E`` quotes for ``T`` string tokens and
``E`` escaped quotes. orjson keeps the last of duplicate keys and drops the other members, so the
decoded result holds ``S <= T`` keys and string values, with ``S < T`` whenever a member was
dropped (its key alone is a token). Hence ``Q == 2S`` implies ``T == S``: nothing was dropped.
That costs one ``str.count`` and a counter in the walk that the depth, key and number checks
need anyway. Only when the text has escaped quotes (``Q > 2S`` without duplicates), or an
integer literal was too large for orjson to keep exact, does the exact second pass run: the
stdlib parser, which shows every member to ``object_pairs_hook`` and every integer literal to
``parse_int``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import orjson

from wsguard.codes import ReplyCode

__all__ = ["FORBIDDEN_KEYS", "MAX_SAFE_INTEGER", "REASONS", "Violation", "decode", "encode"]

MAX_SAFE_INTEGER: Final = 2**53 - 1
"""The largest integer JavaScript represents exactly (``Number.MAX_SAFE_INTEGER``)."""

FORBIDDEN_KEYS: Final = frozenset({"__proto__", "constructor", "prototype"})
"""Keys that pollute a JavaScript object's prototype when merged into it."""

REASONS: Final = frozenset(
    {
        "bad_json",
        "duplicate_key",
        "too_deep",
        "number_out_of_range",
        "forbidden_key",
        "bad_envelope",
    }
)
"""Every reason ``decode`` produces; all are 400 ``BAD_REQUEST``."""


@dataclass(frozen=True, slots=True)
class Violation:
    """A message refused with an error reply; the connection stays open.

    Attributes:
        code: the reply code.
        reason: a stable machine-readable reason.
        message: a short human-readable explanation; never contains exception text.
        id: the message id to echo in the reply, when it was read and valid.
    """

    code: ReplyCode
    reason: str
    message: str
    id: int | str | None = None


def _bad(reason: str, message: str) -> Violation:
    return Violation(ReplyCode.BAD_REQUEST, reason, message)


_BAD_JSON: Final = _bad("bad_json", "invalid JSON")
_DUPLICATE_KEY: Final = _bad("duplicate_key", "duplicate key in an object")
_OUT_OF_RANGE: Final = _bad("number_out_of_range", "number outside the exactly representable range")
_BAD_ENVELOPE: Final = _bad("bad_envelope", "a message is a JSON object")


# Bound once: both run on every message.
_loads: Final = orjson.loads
_no_forbidden_key: Final = FORBIDDEN_KEYS.isdisjoint


def _too_deep(max_depth: int) -> Violation:
    return _bad("too_deep", f"nesting deeper than {max_depth} levels")


class _Refused(Exception):
    """Raised by the exact pass's hooks to stop the stdlib parser."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(violation.reason)
        self.violation = violation


def decode(
    text: str, *, max_depth: int = 32, max_int: int = MAX_SAFE_INTEGER
) -> dict[str, Any] | Violation:
    """Decode one inbound text message.

    Args:
        text: the message text.
        max_depth: the deepest nesting of objects and arrays allowed; the top-level object
            is level 1. orjson refuses more than 1024 levels whatever this says.
        max_int: integers must lie in ``[-max_int, max_int]``.

    Returns:
        The decoded object, or a 400 ``Violation`` (reasons in ``REASONS``). Never raises.
    """
    try:
        root = _loads(text)
    except orjson.JSONDecodeError as exc:
        # orjson's own limits surface as decode errors; give them their own reasons. The
        # messages are pinned by tests (10,000 levels; 1e400).
        detail = str(exc)
        if detail.startswith("depth limit exceeded"):
            return _too_deep(max_depth)
        if detail.startswith("number is infinity"):
            return _OUT_OF_RANGE
        return _BAD_JSON
    if type(root) is not dict:  # orjson builds exact dicts, never subclasses
        return _BAD_ENVELOPE
    if max_depth < 1:
        return _too_deep(max_depth)
    # The walk: depth, keys and integers, without recursion, one level at a time. It counts
    # the keys and string values (``strings``) and notes whether every number was read exactly
    # (orjson turns integer literals beyond 64 bits into floats). It runs on every message, so
    # it is inlined here (no call, no result tuple) and allocates a list for the level below
    # only once a container is seen: most messages are one or two small objects.
    strings = 0
    exact = True
    level: list[Any] | tuple[dict[str, Any]] = (root,)
    depth = 1
    while True:
        below: list[Any] | None = None
        for node in level:
            if type(node) is dict:
                strings += len(node)
                if not _no_forbidden_key(node):
                    key = min(FORBIDDEN_KEYS.intersection(node))
                    return _bad("forbidden_key", f"forbidden key {key}")
                values: Any = node.values()
            else:
                values = node
            for value in values:
                kind = type(value)
                if kind is str:
                    strings += 1
                elif kind is dict or kind is list:
                    if below is None:
                        below = [value]
                    else:
                        below.append(value)
                elif kind is int:
                    if not -max_int <= value <= max_int:
                        return _OUT_OF_RANGE
                elif kind is float and not -max_int <= value <= max_int:
                    exact = False  # perhaps an integer literal orjson could not keep exact
        if below is None:
            break
        if depth >= max_depth:
            return _too_deep(max_depth)
        depth += 1
        level = below
    if exact and text.count('"') == 2 * strings:
        return root
    refused = _exact_pass(text, max_depth, max_int)
    return root if refused is None else refused


def _exact_pass(text: str, max_depth: int, max_int: int) -> Violation | None:
    """Parse again with the stdlib, which shows every member and every integer literal."""

    def pairs(members: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(members)
        if len(obj) != len(members):
            raise _Refused(_DUPLICATE_KEY)
        return obj

    def integer(literal: str) -> int:
        value = int(literal)
        if not -max_int <= value <= max_int:
            raise _Refused(_OUT_OF_RANGE)
        return value

    try:
        json.loads(text, object_pairs_hook=pairs, parse_int=integer)
    except _Refused as exc:
        return exc.violation
    except RecursionError:
        # Only reachable with a max_depth near the interpreter's recursion limit.
        return _too_deep(max_depth)
    except ValueError:  # pragma: no cover - orjson accepted it; fail closed if json does not
        return _BAD_JSON
    return None


def encode(value: Any) -> bytes:
    """Encode an outbound value as compact UTF-8 JSON.

    ``OPT_NON_STR_KEYS`` is deliberately not set: a non-string key raises ``TypeError``
    (``orjson.JSONEncodeError``) instead of being turned into a string, which could emit the
    duplicate keys ``decode`` refuses (``{1: "a", "1": "b"}``). Integers beyond 64 bits raise
    too. Note that orjson writes NaN and infinities as ``null``.

    Args:
        value: dicts with ``str`` keys, lists, tuples, strings, numbers, booleans, ``None``,
            and the other types orjson serializes natively (dataclasses, enums, ...).

    Returns:
        The JSON bytes.
    """
    return orjson.dumps(value)
