"""Fuzz the strict JSON codec (``wsguard.core.codec.decode``): one inbound text in, a JSON object
or a documented ``Violation`` out.

Invariant: ``decode`` never raises; a refusal is a 400 ``Violation`` with a reason in
``codec.REASONS`` and no id; an accepted text is unambiguous and within the limits:

- the stdlib parser (which shows every member) finds no duplicate key and reads the same value,
  so no two JSON readers can disagree about it;
- no ``__proto__``/``constructor``/``prototype`` key, no nesting beyond ``max_depth``, no
  integer outside +-(2^53 - 1), at any depth;
- it round-trips: ``decode(encode(value)) == value``;
- metamorphic: with a smaller ``max_depth`` the same text is accepted as the same value when it
  is shallow enough, else refused as ``too_deep``.

A ``duplicate_key`` refusal is cross-checked too: the stdlib parser must see the duplicate (the
codec finds duplicates by counting quotes first, and that shortcut is what is fuzzed here).

Run: ``python fuzzing/fuzz_codec.py fuzzing/corpus/codec -dict=fuzzing/json.dict``.
"""

# A harness reports a broken invariant to libFuzzer by raising: assert is the tool here (never
# run a harness under python -O).
# ruff: noqa: S101, PT018

from __future__ import annotations

import json
import sys
from typing import Any

from wsguard.codes import ReplyCode
from wsguard.core.codec import FORBIDDEN_KEYS, MAX_SAFE_INTEGER, REASONS, Violation, decode, encode

MAX_DEPTH = 32  # limits.json_max_depth
SHALLOW = 2


class _Duplicate(Exception):
    pass


def _pairs(members: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(members)
    if len(obj) != len(members):
        raise _Duplicate
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def _reference(text: str) -> Any:
    """The stdlib's reading of ``text``; raises ``_Duplicate`` on a duplicate key."""
    return json.loads(text, object_pairs_hook=_pairs, parse_constant=_refuse_constant)


def _depth(value: Any) -> int:
    """Nesting depth of a decoded value (objects and arrays count; scalars are 0)."""
    deepest, level, depth = 0, [value], 0
    while level:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            break
        depth += 1
        deepest = depth
        level = [
            child
            for node in containers
            for child in (node.values() if isinstance(node, dict) else node)
        ]
    return deepest


def _check_leaves(value: Any) -> None:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            assert FORBIDDEN_KEYS.isdisjoint(node), "a forbidden key was accepted"
            assert all(isinstance(k, str) for k in node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, bool) or node is None or isinstance(node, str):
            pass
        elif isinstance(node, int):
            assert -MAX_SAFE_INTEGER <= node <= MAX_SAFE_INTEGER, "an unsafe integer was accepted"
        else:
            assert isinstance(node, float), type(node)
            assert node == node and abs(node) != float("inf"), "NaN/Infinity was accepted"


def check_text(text: str) -> None:
    """Decode ``text`` and check every invariant above."""
    result = decode(text, max_depth=MAX_DEPTH)
    if isinstance(result, Violation):
        assert result.reason in REASONS, result
        assert result.code == ReplyCode.BAD_REQUEST, result
        assert result.id is None, result
        if result.reason == "duplicate_key":
            try:
                _reference(text)
            except _Duplicate:
                pass
            else:
                raise AssertionError("duplicate_key refused, but the stdlib sees no duplicate")
        return
    assert type(result) is dict
    try:
        reference = _reference(text)
    except _Duplicate:
        raise AssertionError("a duplicate key was accepted") from None
    assert reference == result, "the stdlib reads another value than the codec accepted"
    _check_leaves(result)
    depth = _depth(result)
    assert depth <= MAX_DEPTH, depth
    assert decode(encode(result).decode("utf-8"), max_depth=MAX_DEPTH) == result
    shallow = decode(text, max_depth=SHALLOW)
    if depth <= SHALLOW:
        assert shallow == result, shallow
    else:
        assert isinstance(shallow, Violation), shallow
        assert shallow.reason == "too_deep", shallow


def TestOneInput(data: bytes) -> None:
    # The listener hands the session only valid UTF-8 (it closes 1007 otherwise).
    check_text(data.decode("utf-8", "replace"))


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
