"""Channel names, patterns and first-match rule lookup (``wsguard.core.channels``)."""

from __future__ import annotations

import pytest

from wsguard.core.channels import (
    MAX_CHANNEL_LENGTH,
    ChannelRules,
    parse_channel_pattern,
    validate_channel_name,
)
from wsguard.settings import ChannelConfig

# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    [
        "chat:lobby",
        "user:alice",
        "user:alice:inbox",
        "a:b",
        "ns_1-x:rest.with.dots",
        "mail:alice@example.com",
        "chat:room-1_2",
        "n:" + "x" * (MAX_CHANNEL_LENGTH - 2),
    ],
)
def test_valid_channel_names(name: str):
    assert validate_channel_name(name) is None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty channel name"),
        ("n:" + "x" * (MAX_CHANNEL_LENGTH - 1), "longer than 255 characters"),
        ("chat:caf\u00e9", "only A-Z a-z 0-9 _ : . @ - are allowed"),
        ("chat:\u0430lice", "only A-Z a-z 0-9 _ : . @ - are allowed"),  # Cyrillic a
        ("chat:\uff11", "only A-Z a-z 0-9 _ : . @ - are allowed"),  # fullwidth digit
        ("chat:two words", "only A-Z a-z 0-9 _ : . @ - are allowed"),
        ("chat:lobby\n", "only A-Z a-z 0-9 _ : . @ - are allowed"),
        ("chat:*", "only A-Z a-z 0-9 _ : . @ - are allowed"),
        ("chat/lobby", "only A-Z a-z 0-9 _ : . @ - are allowed"),
        ("lobby", 'must be "namespace:rest"'),
        ("user:", 'must be "namespace:rest"'),
        (":lobby", "the namespace allows only A-Z a-z 0-9 _ -"),
        ("a.b:c", "the namespace allows only A-Z a-z 0-9 _ -"),
        ("a@b:c", "the namespace allows only A-Z a-z 0-9 _ -"),
        ("a::b", 'empty segment (nothing between two ":" or after the last one)'),
        ("user:alice:", 'empty segment (nothing between two ":" or after the last one)'),
    ],
)
def test_invalid_channel_names_say_why(name: str, message: str):
    assert validate_channel_name(name) == message


def test_invalid_name_message_never_repeats_the_name():
    assert "<script>" not in str(validate_channel_name("x:<script>"))


# ---------------------------------------------------------------- patterns


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("chat:lobby", ("chat", "lobby")),
        ("user:*", ("user", "*")),
        ("chat:*:messages", ("chat", "*", "messages")),
        ("a:*:*", ("a", "*", "*")),
    ],
)
def test_valid_patterns_parse_into_segments(text: str, segments: tuple[str, ...]):
    pattern = parse_channel_pattern(text)
    assert pattern.text == text
    assert pattern.segments == segments


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("*:lobby", 'the namespace cannot be a wildcard, got "*:lobby"'),
        ("*", 'the namespace cannot be a wildcard, got "*"'),
        ("us*:x", 'the namespace cannot be a wildcard, got "us*:x"'),
        ("user-*:x", 'the namespace cannot be a wildcard, got "user-*:x"'),
        ("user:al*", '"*" must be a whole segment (user:*, chat:*:messages), got "user:al*"'),
        ("user:**", '"*" must be a whole segment (user:*, chat:*:messages), got "user:**"'),
        ("user", 'not a valid channel pattern (must be "namespace:rest"), got "user"'),
        ("user:", 'not a valid channel pattern (must be "namespace:rest"), got "user:"'),
        (
            "user:*:",
            'not a valid channel pattern (empty segment (nothing between two ":" or after the'
            ' last one)), got "user:*:"',
        ),
        (
            "chat:caf\u00e9",
            "not a valid channel pattern (only A-Z a-z 0-9 _ : . @ - are allowed),"
            ' got "chat:caf\\u00e9"',
        ),
        ("", 'not a valid channel pattern (empty channel name), got ""'),
    ],
)
def test_invalid_patterns_raise_value_error_with_message(text: str, message: str):
    with pytest.raises(ValueError, match=r".") as info:
        parse_channel_pattern(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("pattern", "channel", "matches"),
    [
        ("chat:lobby", "chat:lobby", True),
        ("chat:lobby", "chat:lobby2", False),
        ("chat:lobby", "chat:lobb", False),
        ("chat:lobby", "chat:Lobby", False),
        ("user:*", "user:alice", True),
        ("user:*", "user:alice:inbox", False),
        ("user:*", "users:alice", False),
        ("user:*", "user:", False),
        ("chat:*:messages", "chat:42:messages", True),
        ("chat:*:messages", "chat:42:other", False),
        ("chat:*:messages", "chat:messages", False),
        ("chat:*:messages", "chat:4:2:messages", False),
    ],
)
def test_pattern_matching(pattern: str, channel: str, matches: bool):
    rules = ChannelRules([ChannelConfig(pattern=pattern)])
    assert (rules.match(channel) is not None) is matches


@pytest.mark.parametrize(
    ("first", "second", "covers"),
    [
        ("user:*", "user:alice", True),
        ("user:*", "user:*", True),
        ("user:alice", "user:*", False),
        ("user:*", "user:*:inbox", False),
        ("chat:*:messages", "chat:1:messages", True),
        ("chat:*:messages", "chat:1:other", False),
        ("chat:lobby", "chat:lobby", True),
    ],
)
def test_pattern_covers(first: str, second: str, covers: bool):
    assert parse_channel_pattern(first).covers(parse_channel_pattern(second)) is covers


def test_is_exact():
    assert parse_channel_pattern("chat:lobby").is_exact
    assert not parse_channel_pattern("chat:*").is_exact


# ---------------------------------------------------------------- rules


def test_first_matching_rule_wins_in_file_order():
    exact = ChannelConfig(pattern="user:admin", subscribe=("role:admin",))
    wildcard = ChannelConfig(pattern="user:*", subscribe=("owner",))
    rules = ChannelRules([exact, wildcard])
    assert rules.match("user:admin") is exact
    assert rules.match("user:alice") is wildcard
    assert ChannelRules([wildcard, exact]).match("user:admin") is wildcard


def test_no_rule_means_unknown_channel():
    assert ChannelRules([ChannelConfig(pattern="chat:*")]).match("user:alice") is None
    assert ChannelRules([]).match("chat:lobby") is None


def test_invalid_name_matches_no_rule_even_if_it_would_split_right():
    rules = ChannelRules([ChannelConfig(pattern="chat:*")])
    assert rules.match("chat:caf\u00e9") is None
    assert rules.match("chat:a b") is None


def test_rules_length_and_invalid_pattern():
    assert len(ChannelRules([ChannelConfig(pattern="a:b"), ChannelConfig(pattern="a:*")])) == 2
    with pytest.raises(ValueError, match="namespace cannot be a wildcard"):
        ChannelRules([ChannelConfig(pattern="*:x")])
