"""Output encoding of publications (DESIGN.md §5): ``encode = "html"`` on a channel rule.

Performs no I/O; reads no clock. The threat is stored XSS: a publisher sends
``<img src=x onerror=alert(1)>`` and every subscriber whose page inserts the text with
``innerHTML`` runs it. With ``encode = "html"`` the server escapes every string leaf and every
object key once per publication, before fan-out, so each subscriber gets text that is inert as
HTML (element content and quoted attribute values alike: ``& < > " '`` are all escaped).
Numbers, booleans and ``null`` carry no markup and are left alone.
"""

from __future__ import annotations

from html import escape
from typing import Any, Final

__all__ = ["ENCODINGS", "MAX_DEPTH", "html_escape"]

ENCODINGS: Final = ("none", "html")
"""The values of a channel rule's ``encode``."""

MAX_DEPTH: Final = 1024
"""Deepest nesting ``html_escape`` walks (the codec allows at most 1000); deeper, or a reference
cycle in data built by server code, raises ``ValueError`` instead of looping forever."""


def html_escape(value: Any) -> Any:
    """A copy of ``value`` with every string leaf and object key HTML-escaped.

    ``& < > " '`` become ``&amp; &lt; &gt; &quot; &#x27;`` (``html.escape(s, quote=True)``).
    Dicts and lists (and tuples, as lists) are rebuilt; other values are returned as they are.
    The walk is iterative, so depth costs no stack.

    Args:
        value: decoded JSON data.

    Returns:
        The escaped copy; ``value`` itself is not modified.

    Two distinct keys never collide once escaped (``{"<": 1, "&lt;": 2}`` becomes
    ``{"&lt;": 1, "&amp;lt;": 2}``): ``&`` is escaped first, so every ``&`` of the output begins
    one of the five entities escaping wrote, and unescaping them gives back exactly the input.
    Escaping is one-to-one; no member can be lost or chosen between.

    Raises:
        ValueError: the nesting is deeper than ``MAX_DEPTH`` (or the data has a reference
            cycle); the publication is refused.
    """
    root, pending = _copy(value, 0)
    while pending:
        source, target, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(target, dict):
            for key, item in source.items():
                escaped = escape(key, quote=True) if isinstance(key, str) else key
                target[escaped], below = _copy(item, depth)
                pending += below
        else:
            for item in source:
                copied, below = _copy(item, depth)
                target.append(copied)
                pending += below
    return root


_Pending = list[tuple[Any, Any, int]]  # (source container, its empty copy, its depth)


def _copy(value: Any, depth: int) -> tuple[Any, _Pending]:
    """The escaped leaf, or an empty container to fill in and the work to fill it."""
    if isinstance(value, str):
        return escape(value, quote=True), []
    if isinstance(value, dict):
        copy: dict[Any, Any] = {}
        return copy, [(value, copy, depth + 1)]
    if isinstance(value, list | tuple):
        items: list[Any] = []
        return items, [(value, items, depth + 1)]
    return value, []
