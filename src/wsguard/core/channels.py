"""Channel names, channel patterns and the ``[[channels]]`` rule table.

Performs no I/O; reads no clock.

A channel name is ``namespace:rest``: at most 255 characters from ``[A-Za-z0-9_:.@-]``, split on
``:`` into segments. The namespace (first segment) is ``[A-Za-z0-9_-]+``; no segment may be empty
(``user:``, ``a::b`` and ``a:b:`` are refused), so that ``owner`` compares the user id with a real
segment. Anything else (Unicode look-alikes, spaces, control characters) is refused before it can
reach a broker key, a log line or a pattern match.

A pattern is a channel name in which whole segments after the namespace may be ``*``. A ``*``
matches exactly one non-empty segment and never a ``:``: ``user:*`` matches ``user:alice`` but not
``user:alice:inbox`` nor ``user:``; ``chat:*:messages`` matches ``chat:42:messages``. There is no
multi-segment wildcard and no partial one (``user-*``): what a rule covers is obvious from its text.

Rules are tried in file order and the first matching one wins, so exact rules must come before
the wildcards that also match them (the loader refuses a rule that an earlier one hides).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NewType

from wsguard.settings import ChannelConfig

__all__ = [
    "MAX_CHANNEL_LENGTH",
    "ChannelName",
    "ChannelPattern",
    "ChannelRules",
    "parse_channel_pattern",
    "validate_channel_name",
]

ChannelName = NewType("ChannelName", str)

# Bounds the broker keys, log lines and matching cost a client can cause with one name.
MAX_CHANNEL_LENGTH: Final = 255
WILDCARD: Final = "*"

_NAME_CHARS = re.compile(r"[A-Za-z0-9_:.@-]*")
_NAMESPACE = re.compile(r"[A-Za-z0-9_-]+")


def validate_channel_name(name: str) -> str | None:
    """Check a channel name.

    Returns:
        ``None`` when ``name`` is valid, else a message saying what is wrong (safe to show: it
        never repeats the name).
    """
    if not name:
        return "empty channel name"
    if len(name) > MAX_CHANNEL_LENGTH:
        return f"longer than {MAX_CHANNEL_LENGTH} characters"
    # Explicit ASCII classes (not \w): Unicode letters and digits are refused.
    if not _NAME_CHARS.fullmatch(name):
        return "only A-Z a-z 0-9 _ : . @ - are allowed"
    namespace, sep, rest = name.partition(":")
    if not sep or not rest:
        return 'must be "namespace:rest"'
    if not _NAMESPACE.fullmatch(namespace):
        return "the namespace allows only A-Z a-z 0-9 _ -"
    if "" in rest.split(":"):
        return 'empty segment (nothing between two ":" or after the last one)'
    return None


@dataclass(frozen=True, slots=True)
class ChannelPattern:
    """A parsed ``[[channels]]`` pattern: segments, each a literal or ``*``."""

    text: str
    segments: tuple[str, ...]

    @property
    def is_exact(self) -> bool:
        return WILDCARD not in self.segments

    def matches(self, segments: Sequence[str]) -> bool:
        """Whether the segments of a *valid* channel name match this pattern."""
        if len(segments) != len(self.segments):
            return False
        return all(p in (WILDCARD, s) for p, s in zip(self.segments, segments, strict=True))

    def covers(self, other: ChannelPattern) -> bool:
        """Whether every channel ``other`` matches is also matched by this pattern."""
        if len(other.segments) != len(self.segments):
            return False
        return all(p in (WILDCARD, o) for p, o in zip(self.segments, other.segments, strict=True))


def parse_channel_pattern(text: str) -> ChannelPattern:
    """Parse a pattern (see the module docstring).

    Raises:
        ValueError: saying what is wrong with it.
    """
    segments = tuple(text.split(":"))
    if WILDCARD in segments[0]:
        raise ValueError(f"the namespace cannot be a wildcard, got {_show(text)}")
    if any(WILDCARD in s and s != WILDCARD for s in segments):
        raise ValueError(
            f'"*" must be a whole segment (user:*, chat:*:messages), got {_show(text)}'
        )
    # Check the pattern as the names it matches: "*" stands for one segment.
    problem = validate_channel_name(text.replace(WILDCARD, "x"))
    if problem is not None:
        raise ValueError(f"not a valid channel pattern ({problem}), got {_show(text)}")
    return ChannelPattern(text, segments)


def _show(text: str) -> str:
    # The pattern comes from the operator's own file: shown in full, quoted, escaped.
    return json.dumps(text, ensure_ascii=True)


class ChannelRules:
    """The ``[[channels]]`` rules in file order.

    ``match`` returns the first rule whose pattern matches; ``None`` means the channel is unknown
    (and so nothing is granted on it).
    """

    __slots__ = ("_rules",)

    def __init__(self, configs: Sequence[ChannelConfig]) -> None:
        """Parse every pattern.

        Raises:
            ValueError: for an invalid pattern (the loader has checked them already).
        """
        self._rules = tuple((parse_channel_pattern(c.pattern), c) for c in configs)

    def __len__(self) -> int:
        return len(self._rules)

    def match(self, channel: str) -> ChannelConfig | None:
        """The first rule matching ``channel``; ``None`` for no rule or an invalid name."""
        if validate_channel_name(channel) is not None:
            return None
        segments = channel.split(":")
        for pattern, config in self._rules:
            if pattern.matches(segments):
                return config
        return None
