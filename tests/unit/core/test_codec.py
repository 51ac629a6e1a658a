"""The codec: every inbound text is a JSON object or a documented Violation; nothing escapes."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsguard.codes import ReplyCode
from wsguard.core.codec import FORBIDDEN_KEYS, MAX_SAFE_INTEGER, REASONS, Violation, decode, encode

BAD_JSON = Violation(ReplyCode.BAD_REQUEST, "bad_json", "invalid JSON")
DUPLICATE = Violation(ReplyCode.BAD_REQUEST, "duplicate_key", "duplicate key in an object")
OUT_OF_RANGE = Violation(
    ReplyCode.BAD_REQUEST,
    "number_out_of_range",
    "number outside the exactly representable range",
)
BAD_ENVELOPE = Violation(ReplyCode.BAD_REQUEST, "bad_envelope", "a message is a JSON object")


def too_deep(levels: int = 32) -> Violation:
    return Violation(ReplyCode.BAD_REQUEST, "too_deep", f"nesting deeper than {levels} levels")


def forbidden(key: str) -> Violation:
    return Violation(ReplyCode.BAD_REQUEST, "forbidden_key", f"forbidden key {key}")


def nested(levels: int, inner: str = "1") -> str:
    """``levels`` objects deep: ``{"a":{"a":...inner...}}``."""
    return '{"a":' * levels + inner + "}" * levels


def test_reasons_are_documented():
    assert {
        "bad_json",
        "duplicate_key",
        "too_deep",
        "number_out_of_range",
        "forbidden_key",
        "bad_envelope",
    } == REASONS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # not JSON
        pytest.param("", BAD_JSON, id="empty"),
        pytest.param("{", BAD_JSON, id="truncated"),
        pytest.param("{'a': 1}", BAD_JSON, id="single-quotes"),
        pytest.param('{"a":1,}', BAD_JSON, id="trailing-comma"),
        pytest.param('{"a":1} {"b":2}', BAD_JSON, id="two-documents"),
        pytest.param('{"a":"\x01"}', BAD_JSON, id="raw-control-char"),
        pytest.param('\ufeff{"a":1}', BAD_JSON, id="bom"),
        pytest.param('{"a":"\ud800"}', BAD_JSON, id="lone-surrogate-in-text"),
        pytest.param("// c\n{}", BAD_JSON, id="comment"),
        # RFC 8259 §6: "Numeric values that cannot be represented ... (such as Infinity and
        # NaN) are not permitted"; orjson refuses the literals, as these pin.
        pytest.param('{"a":NaN}', BAD_JSON, id="nan"),
        pytest.param('{"a":Infinity}', BAD_JSON, id="infinity"),
        pytest.param('{"a":-Infinity}', BAD_JSON, id="minus-infinity"),
        pytest.param('{"a":nan}', BAD_JSON, id="nan-lowercase"),
        # duplicates
        pytest.param('{"channel":"public","channel":"admin"}', DUPLICATE, id="dup-top"),
        pytest.param('{"a":{"b":1,"b":1}}', DUPLICATE, id="dup-nested-same-value"),
        pytest.param('{"a":[{"x":1},{"y":1,"y":2}]}', DUPLICATE, id="dup-in-array-of-objects"),
        pytest.param('{"a":1,"\\u0061":2}', DUPLICATE, id="dup-unicode-escaped"),
        pytest.param('{"\\u00e9":1,"\u00e9":2}', DUPLICATE, id="dup-escaped-vs-raw-non-ascii"),
        pytest.param('{"a" :1, "a"\n:\t2}', DUPLICATE, id="dup-whitespace-before-colon"),
        pytest.param('{"a":1,"a":2,"s":"x:y"}', DUPLICATE, id="dup-with-colon-in-string"),
        pytest.param('{"a" :1,"a" :2,"b":"\\":"}', DUPLICATE, id="dup-masked-by-escaped-quote"),
        pytest.param('{"a":1,"a":2,"b":"\\" :"}', DUPLICATE, id="dup-masked-escaped-quote-ws"),
        pytest.param('{"":1,"":2}', DUPLICATE, id="dup-empty-key"),
        pytest.param(r'{"a":1,"a":2,"s":"\""}', DUPLICATE, id="dup-with-escaped-quote"),
        pytest.param(r'{"a":"\"","a":"x"}', DUPLICATE, id="dup-dropped-value-has-escaped-quote"),
        pytest.param(r'{"a":["x","y"],"a":"\"\"\"\""}', DUPLICATE, id="dup-quotes-balance"),
        pytest.param('{"a":{"b":"c"},"a":1}', DUPLICATE, id="dup-dropped-object"),
        # depth
        pytest.param(nested(33), too_deep(), id="33-objects"),
        pytest.param('{"a":' + "[" * 32 + "]" * 32 + "}", too_deep(), id="arrays-count"),
        pytest.param(nested(10_000), too_deep(), id="10000-levels"),
        pytest.param('{"a":' + "[" * 10_000 + "]" * 10_000 + "}", too_deep(), id="10000-arrays"),
        # numbers
        pytest.param(f'{{"a":{2**53}}}', OUT_OF_RANGE, id="2^53"),
        pytest.param(f'{{"a":{-(2**53)}}}', OUT_OF_RANGE, id="-2^53"),
        pytest.param(f'{{"a":[{2**64 - 1}]}}', OUT_OF_RANGE, id="u64-max"),
        pytest.param(f'{{"a":{2**64}}}', OUT_OF_RANGE, id="beyond-64-bits"),
        pytest.param(f'{{"a":{-(2**64)}}}', OUT_OF_RANGE, id="beyond-64-bits-negative"),
        pytest.param('{"a":' + "9" * 300 + "}", OUT_OF_RANGE, id="300-digits"),
        pytest.param('{"a":' + "9" * 5000 + "}", OUT_OF_RANGE, id="5000-digits"),
        pytest.param('{"a":1e400}', OUT_OF_RANGE, id="float-overflow"),
        pytest.param('{"a":-1E400}', OUT_OF_RANGE, id="float-overflow-negative"),
        # prototype pollution
        pytest.param('{"__proto__":{"admin":true}}', forbidden("__proto__"), id="proto"),
        pytest.param('{"a":{"b":[{"__proto__":1}]}}', forbidden("__proto__"), id="proto-nested"),
        pytest.param('{"\\u005f_proto__":1}', forbidden("__proto__"), id="proto-escaped"),
        pytest.param('{"constructor":{"prototype":1}}', forbidden("constructor"), id="ctor"),
        pytest.param('{"a":{"prototype":1}}', forbidden("prototype"), id="prototype"),
        # top level
        pytest.param("[]", BAD_ENVELOPE, id="array"),
        pytest.param('"op"', BAD_ENVELOPE, id="string"),
        pytest.param("null", BAD_ENVELOPE, id="null"),
        pytest.param("7", BAD_ENVELOPE, id="number"),
        pytest.param("[" * 40 + "]" * 40, BAD_ENVELOPE, id="deep-array-is-not-an-object"),
    ],
)
def test_refused(text: str, expected: Violation):
    assert decode(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("{}", {}, id="empty-object"),
        pytest.param(' \t\n{"op":"ping"}\r\n', {"op": "ping"}, id="surrounding-whitespace"),
        pytest.param('{"a" : 1 , "b"\n:\n2}', {"a": 1, "b": 2}, id="whitespace-around-colons"),
        pytest.param(
            '{"s":"a:b","t":":","u":"\\":"}', {"s": "a:b", "t": ":", "u": '":'}, id="colons"
        ),
        pytest.param('{"a":{"a":1},"b":[{"a":1},{"a":2}]}', None, id="same-key-different-objects"),
        pytest.param(nested(31, "{}"), None, id="32-levels"),
        pytest.param(f'{{"a":{2**53 - 1},"b":{-(2**53 - 1)}}}', None, id="safe-integer-bounds"),
        pytest.param('{"a":1e30,"b":-1.5e300,"c":1e-400}', None, id="large-floats-are-floats"),
        pytest.param('{"a":1e30,"s":"x:y"}', None, id="large-float-with-colon-in-string"),
        pytest.param('{"a":1e30,"b":[1,2]}', None, id="large-float-exact-pass-ints"),
        pytest.param(r'{"s":"say \"hi\"","t":["\\"]}', None, id="escaped-quotes"),
        pytest.param('{"proto":1,"Constructor":2,"__proto":3}', None, id="near-forbidden-keys"),
        pytest.param('{"k":"__proto__"}', None, id="forbidden-word-as-value"),
        pytest.param('{"a":true,"b":false,"c":null,"d":-0.0}', None, id="literals"),
    ],
)
def test_accepted(text: str, expected: dict[str, Any] | None):
    assert decode(text) == (json.loads(text) if expected is None else expected)


def test_depth_limit_is_configurable():
    assert decode(nested(3), max_depth=3) == {"a": {"a": {"a": 1}}}
    assert decode(nested(4), max_depth=3) == too_deep(3)
    assert decode("{}", max_depth=0) == too_deep(0)


def test_orjson_depth_limit_wins_over_a_larger_max_depth():
    assert decode(nested(1100), max_depth=2000) == too_deep(2000)


def test_recursion_in_the_exact_pass_is_too_deep(monkeypatch: pytest.MonkeyPatch):
    # Only reachable with a max_depth near the interpreter's recursion limit (1,000 levels on
    # CPython 3.11), so simulate the stdlib parser running out of stack.
    def recursion(*args: object, **kwargs: object) -> None:
        raise RecursionError

    monkeypatch.setattr(json, "loads", recursion)
    assert decode(nested(3, r'"\""'), max_depth=1000) == too_deep(1000)


def test_max_int_is_configurable():
    assert decode('{"a":1000}', max_int=1000) == {"a": 1000}
    assert decode('{"a":-1001}', max_int=1000) == OUT_OF_RANGE
    assert decode('{"a":1001.5}', max_int=1000) == {"a": 1001.5}


def test_deep_nesting_is_fast():
    text = nested(10_000)
    started = time.perf_counter()
    for _ in range(100):
        decode(text)
    assert time.perf_counter() - started < 1.0


def test_forbidden_keys():
    assert {"__proto__", "constructor", "prototype"} == FORBIDDEN_KEYS


def test_violation_has_no_id_by_default():
    assert BAD_JSON.id is None


def test_decoded_objects_keep_key_order():
    decoded = decode('{"z":1,"a":2,"m":3}')
    assert isinstance(decoded, dict)
    assert list(decoded) == ["z", "a", "m"]


def test_encode_is_compact_utf8():
    assert encode({"id": 7, "ok": True, "s": "é"}) == '{"id":7,"ok":true,"s":"é"}'.encode()


def test_encode_refuses_non_string_keys():
    # Coercing them could emit the duplicates decode refuses: {1: "a", "1": "b"}.
    with pytest.raises(TypeError):
        encode({1: "a", "1": "b"})


def test_encode_refuses_integers_beyond_64_bits():
    with pytest.raises(orjson.JSONEncodeError):
        encode({"a": 2**64})


# Hypothesis: arbitrary text, arbitrary JSON.

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text().filter(lambda k: k not in FORBIDDEN_KEYS), inner, max_size=4)
    ),
    max_leaves=20,
)
json_objects = st.dictionaries(
    st.text().filter(lambda k: k not in FORBIDDEN_KEYS), json_values, max_size=6
)


@given(st.text())
def test_arbitrary_text_is_an_object_or_a_violation(text: str):
    result = decode(text)
    assert isinstance(result, dict) or result.reason in REASONS


@given(st.text(alphabet='{}[]":,\\ \tu0a1e-.9tfnl'))
def test_json_like_text_is_an_object_or_a_violation(text: str):
    result = decode(text)
    assert isinstance(result, dict) or result.reason in REASONS


@given(json_objects)
def test_round_trip(value: dict[str, Any]):
    decoded = decode(encode(value).decode())
    if isinstance(decoded, Violation):
        assert decoded.reason == "too_deep"
    else:
        assert decoded == value


@given(json_objects, st.data())
def test_an_injected_duplicate_is_always_found(value: dict[str, Any], data: st.DataObject):
    text = encode(value).decode()
    key = data.draw(st.text())
    duplicated = text[:-1] + ("," if value else "") + f"{json.dumps(key)}:1,{json.dumps(key)}:2}}"
    assert decode(duplicated, max_depth=1024) in (DUPLICATE, forbidden(key))


@given(json_objects)
def test_decode_agrees_with_the_stdlib_on_accepted_objects(value: dict[str, Any]):
    text = json.dumps(value, indent=1)  # whitespace before and after the colons
    assert decode(text, max_depth=1024) == json.loads(text)


# Differential: JSON text whose objects may repeat keys, spelled raw or escaped, nested anywhere.
# decode must refuse exactly the texts in which some object repeats a decoded key.

KEY_SPELLINGS = {"a": ["a", "\\u0061"], '"': ['\\"', "\\u0022"], "é": ["é", "\\u00e9"], "b": ["b"]}


@st.composite
def texts_with_keys(draw: st.DrawFn, depth: int = 0) -> tuple[str, bool]:
    """A JSON text and whether some object in it repeats a key."""
    kind = draw(st.sampled_from(["scalar", "list", "object"] if depth < 4 else ["scalar"]))
    if kind == "scalar":
        return draw(st.sampled_from(["1", '"x"', '"\\""', '":"', "null", "1.5e30"])), False
    parts = draw(st.lists(texts_with_keys(depth + 1), max_size=3))
    repeated = any(dup for _, dup in parts)
    if kind == "list":
        return "[" + ",".join(text for text, _ in parts) + "]", repeated
    keys = draw(
        st.lists(st.sampled_from(sorted(KEY_SPELLINGS)), min_size=len(parts), max_size=len(parts))
    )
    spelled = [draw(st.sampled_from(KEY_SPELLINGS[key])) for key in keys]
    members = ",".join(
        f'"{key}"{draw(st.sampled_from([":", " : "]))}{text}'
        for key, (text, _) in zip(spelled, parts, strict=True)
    )
    return "{" + members + "}", repeated or len(set(keys)) < len(keys)


@given(texts_with_keys())
def test_duplicates_are_found_exactly(case: tuple[str, bool]):
    text, repeated = case
    text = '{"v":' + text + "}"
    assert (decode(text) == DUPLICATE) is repeated
    if not repeated:
        assert decode(text) == json.loads(text)


@pytest.mark.parametrize("max_depth", [1, 2, 5])
def test_depth_limit_counts_arrays_and_objects_alike(max_depth: int):
    # The walk goes level by level over objects and arrays mixed; exactly max_depth passes.
    fits = '{"a":' + "[" * (max_depth - 1) + "]" * (max_depth - 1) + "}" if max_depth > 1 else "{}"
    assert isinstance(decode(fits, max_depth=max_depth), dict)
    deeper = "[" * max_depth + "]" * max_depth
    assert decode('{"a":' + deeper + "}", max_depth=max_depth) == too_deep(max_depth)
    assert decode('{"a":1,"b":{"c":' + deeper + "}}", max_depth=max_depth + 1) == too_deep(
        max_depth + 1
    )


def test_every_rule_applies_below_the_first_container():
    # Scalars, objects and arrays side by side on several levels: each check still sees all.
    assert decode('{"a":[1,"x",{"b":[{"prototype":1}]}]}') == Violation(
        ReplyCode.BAD_REQUEST, "forbidden_key", "forbidden key prototype"
    )
    assert decode('{"a":"x","b":[1,2,{"c":[3,' + str(MAX_SAFE_INTEGER + 1) + "]}]}") == OUT_OF_RANGE
    assert decode('{"a":[{"k":1}],"b":[{"k":1,"k":2}]}') == DUPLICATE
    assert decode('{"a":[],"b":{},"c":[[]],"d":[{}]}') == {"a": [], "b": {}, "c": [[]], "d": [{}]}
