"""HTML output encoding: every string leaf and key escaped once; nothing else changes."""

from __future__ import annotations

import html
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsguard.core.encoding import ENCODINGS, MAX_DEPTH, html_escape

XSS = "<img src=x onerror=alert(1)>"
XSS_ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def test_encodings_are_the_channel_rule_values():
    assert ENCODINGS == ("none", "html")


def test_string_leaf_is_escaped():
    assert html_escape({"text": XSS}) == {"text": XSS_ESCAPED}


def test_every_special_character_is_escaped():
    assert html_escape("&<>\"'") == "&amp;&lt;&gt;&quot;&#x27;"


def test_attribute_breakout_is_escaped():
    assert html_escape({"name": "\" onmouseover='alert(1)"}) == {
        "name": "&quot; onmouseover=&#x27;alert(1)"
    }


def test_object_keys_are_escaped():
    assert html_escape({XSS: {"<b>": 1}}) == {XSS_ESCAPED: {"&lt;b&gt;": 1}}


def test_nested_lists_are_escaped():
    assert html_escape({"a": [[XSS, ["<"]], {"b": [">"]}]}) == {
        "a": [[XSS_ESCAPED, ["&lt;"]], {"b": ["&gt;"]}]
    }


def test_tuples_become_lists():
    assert html_escape(("<", (">",))) == ["&lt;", ["&gt;"]]


def test_non_string_leaves_are_untouched():
    value = {"n": 1, "f": 1.5, "t": True, "f2": False, "z": None, "big": 2**53 - 1}
    escaped = html_escape(value)
    assert escaped == value
    assert [type(v) for v in escaped.values()] == [int, float, bool, bool, type(None), int]


@pytest.mark.parametrize("leaf", [0, -1.25, True, None, "plain text"])
def test_top_level_scalar_comes_back_equal(leaf: Any):
    assert html_escape(leaf) == leaf


def test_input_is_not_modified():
    value = {"<": ["<"], "x": {"y": "&"}}
    html_escape(value)
    assert value == {"<": ["<"], "x": {"y": "&"}}


def test_a_copy_is_returned():
    inner = ["a"]
    value = {"k": inner}
    escaped = html_escape(value)
    assert escaped is not value
    assert escaped["k"] is not inner


def test_escaping_happens_once():
    # An already-escaped string is escaped again: the server does not guess what was meant.
    assert html_escape("&lt;") == "&amp;lt;"


def test_member_order_is_kept():
    assert list(html_escape({"b": 1, "<": 2, "a": 3})) == ["b", "&lt;", "a"]


def test_a_key_that_looks_escaped_does_not_collide_with_its_source():
    # "&" is escaped first, so escaping is one-to-one: no member is lost or chosen between.
    assert html_escape({"<": 1, "&lt;": 2}) == {"&lt;": 1, "&amp;lt;": 2}


def test_keys_that_look_escaped_deep_inside_are_all_kept():
    assert html_escape({"a": [{"&amp;": 1, "&": 2, "&#x27;": 3, "'": 4}]}) == {
        "a": [{"&amp;amp;": 1, "&amp;": 2, "&amp;#x27;": 3, "&#x27;": 4}]
    }


def test_same_escaped_key_in_different_objects_is_fine():
    assert html_escape([{"<": 1}, {"&lt;": 2}]) == [{"&lt;": 1}, {"&amp;lt;": 2}]


def nested(levels: int, leaf: Any) -> Any:
    value = leaf
    for index in range(levels):
        value = [value] if index % 2 else {"<k>": value}
    return value


def test_depth_1000_is_escaped():
    escaped = html_escape(nested(1000, XSS))
    for _ in range(1000):
        escaped = escaped[0] if isinstance(escaped, list) else escaped["&lt;k&gt;"]
    assert escaped == XSS_ESCAPED


def test_max_depth_is_allowed():
    escaped = html_escape(nested(MAX_DEPTH, "<"))
    for _ in range(MAX_DEPTH):
        escaped = escaped[0] if isinstance(escaped, list) else escaped["&lt;k&gt;"]
    assert escaped == "&lt;"


def test_deeper_than_max_depth_is_refused():
    with pytest.raises(ValueError, match=rf"^nesting deeper than {MAX_DEPTH} levels$"):
        html_escape(nested(MAX_DEPTH + 1, 1))


def test_reference_cycle_is_refused_not_looped_on():
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match=rf"^nesting deeper than {MAX_DEPTH} levels$"):
        html_escape(cycle)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def unescape(value: Any) -> Any:
    if isinstance(value, str):
        return html.unescape(value)
    if isinstance(value, dict):
        return {html.unescape(k): unescape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescape(item) for item in value]
    return value


@given(JSON)
def test_no_markup_character_survives_and_unescaping_gives_the_input(value: Any):
    escaped = html_escape(value)
    for text in strings(escaped):
        assert not set(text) & set("<>\"'")
    assert unescape(escaped) == value
