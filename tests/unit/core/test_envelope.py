"""The envelope check: every decoded object is a typed Envelope or a documented Violation."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsguard.codes import ReplyCode
from wsguard.core.codec import Violation, decode, encode
from wsguard.core.envelope import (
    OPS,
    REASONS,
    Auth,
    History,
    Ping,
    Presence,
    Publish,
    Refresh,
    Rpc,
    Since,
    Subscribe,
    Unsubscribe,
    parse_envelope,
)

MAX_ID = 2**53 - 1
CH = "chat:room"
BAD_ID = Violation(
    ReplyCode.BAD_REQUEST, "bad_id", "id must be a non-negative integer or a string of 1-64 chars"
)
CHARS = "only A-Z a-z 0-9 _ : . @ - are allowed"
NAMESPACE = "the namespace allows only A-Z a-z 0-9 _ -"
SEGMENT = 'empty segment (nothing between two ":" or after the last one)'
CREDENTIAL = "token: exactly one of token and ticket is required"


def bad_field(message: str, msg_id: int | str | None = 7) -> Violation:
    return Violation(ReplyCode.BAD_REQUEST, "bad_field", message, msg_id)


def unknown_field(message: str, msg_id: int | str | None = 7) -> Violation:
    return Violation(ReplyCode.BAD_REQUEST, "unknown_field", message, msg_id)


def bad_channel(problem: str, msg_id: int | str | None = 7) -> Violation:
    # The rules and messages are core.channels' own: one validator for every channel name.
    return Violation(ReplyCode.BAD_REQUEST, "bad_channel", f"channel: {problem}", msg_id)


def test_reasons_are_documented():
    assert {"bad_id", "unknown_op", "unknown_field", "bad_field", "bad_channel"} == REASONS


def test_ops_are_the_wire_protocol_ops():
    assert set(OPS) == {
        "auth",
        "refresh",
        "subscribe",
        "unsubscribe",
        "publish",
        "history",
        "presence",
        "rpc",
        "ping",
    }


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param({"op": "ping"}, Ping(None), id="ping-without-id"),
        pytest.param({"id": 7, "op": "ping"}, Ping(7), id="ping"),
        pytest.param({"id": None, "op": "ping"}, Ping(None), id="null-id-is-no-id"),
        pytest.param({"id": 0, "op": "ping"}, Ping(0), id="id-zero"),
        pytest.param({"id": MAX_ID, "op": "ping"}, Ping(MAX_ID), id="id-max"),
        pytest.param({"id": "x" * 64, "op": "ping"}, Ping("x" * 64), id="id-64-chars"),
        pytest.param({"op": "auth", "token": "t"}, Auth(None, "t", None), id="auth-token"),
        pytest.param({"op": "auth", "ticket": "k"}, Auth(None, None, "k"), id="auth-ticket"),
        pytest.param({"op": "refresh", "token": "t"}, Refresh(None, "t", None), id="refresh"),
        pytest.param(
            {"op": "refresh", "ticket": "k"}, Refresh(None, None, "k"), id="refresh-ticket"
        ),
        pytest.param({"op": "subscribe", "channel": CH}, Subscribe(None, CH, None), id="subscribe"),
        pytest.param(
            {"op": "subscribe", "channel": CH, "since": {"epoch": "e1", "offset": 0}},
            Subscribe(None, CH, Since("e1", 0)),
            id="subscribe-since",
        ),
        pytest.param(
            {"op": "subscribe", "channel": CH, "since": None},
            Subscribe(None, CH, None),
            id="subscribe-since-null",
        ),
        pytest.param({"op": "unsubscribe", "channel": CH}, Unsubscribe(None, CH), id="unsubscribe"),
        pytest.param(
            {"op": "publish", "channel": CH, "data": {"x": [1]}},
            Publish(None, CH, {"x": [1]}),
            id="publish",
        ),
        pytest.param(
            {"op": "publish", "channel": CH, "data": None},
            Publish(None, CH, None),
            id="publish-null-data",
        ),
        pytest.param({"op": "history", "channel": CH}, History(None, CH, None, None), id="history"),
        pytest.param(
            {
                "op": "history",
                "channel": CH,
                "since": {"epoch": "e", "offset": MAX_ID},
                "limit": 1000,
            },
            History(None, CH, Since("e", MAX_ID), 1000),
            id="history-since-limit",
        ),
        pytest.param(
            {"op": "history", "channel": CH, "limit": 1},
            History(None, CH, None, 1),
            id="history-limit-1",
        ),
        pytest.param({"op": "presence", "channel": CH}, Presence(None, CH), id="presence"),
        pytest.param({"op": "rpc", "method": "a.b:c-d_9"}, Rpc(None, "a.b:c-d_9", None), id="rpc"),
        pytest.param(
            {"op": "rpc", "method": "m" * 128, "data": [1]},
            Rpc(None, "m" * 128, [1]),
            id="rpc-data-128",
        ),
        # channels
        pytest.param({"op": "presence", "channel": "a:b"}, Presence(None, "a:b"), id="ch-short"),
        pytest.param(
            {"op": "presence", "channel": "user_x-1:a.b@c-d:e_f"},
            Presence(None, "user_x-1:a.b@c-d:e_f"),
            id="ch-all-chars",
        ),
        pytest.param(
            {"op": "presence", "channel": "n:" + "r" * 253},
            Presence(None, "n:" + "r" * 253),
            id="ch-255",
        ),
    ],
)
def test_accepted(message: dict[str, Any], expected: Any):
    assert parse_envelope(message) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # id
        pytest.param({"id": -1, "op": "ping"}, BAD_ID, id="id-negative"),
        pytest.param({"id": MAX_ID + 1, "op": "ping"}, BAD_ID, id="id-too-large"),
        pytest.param({"id": 1.0, "op": "ping"}, BAD_ID, id="id-float"),
        pytest.param({"id": True, "op": "ping"}, BAD_ID, id="id-bool"),
        pytest.param({"id": "", "op": "ping"}, BAD_ID, id="id-empty"),
        pytest.param({"id": "x" * 65, "op": "ping"}, BAD_ID, id="id-65-chars"),
        pytest.param({"id": [1], "op": "ping"}, BAD_ID, id="id-list"),
        pytest.param({"id": {}, "op": "nope"}, BAD_ID, id="id-checked-before-op"),
        # op
        pytest.param({"id": 7}, bad_field("op: required"), id="op-missing"),
        pytest.param({"id": 7, "op": 1}, bad_field("op: must be a string"), id="op-int"),
        pytest.param({"id": 7, "op": None}, bad_field("op: must be a string"), id="op-null"),
        pytest.param(
            {"id": 7, "op": "PING"},
            Violation(ReplyCode.NOT_FOUND, "unknown_op", "unknown op", 7),
            id="op-unknown",
        ),
        pytest.param(
            {"id": "a", "op": "__proto__"},
            Violation(ReplyCode.NOT_FOUND, "unknown_op", "unknown op", "a"),
            id="op-unknown-string-id",
        ),
        # unknown fields
        pytest.param(
            {"id": 7, "op": "ping", "x": 1}, unknown_field("unknown field x"), id="ping-x"
        ),
        pytest.param(
            {"id": 7, "op": "publish", "channel": CH, "data": 1, "user": "admin"},
            unknown_field("unknown field user"),
            id="identity-smuggling",
        ),
        pytest.param(
            {"id": 7, "op": "subscribe", "channel": CH, "limit": 5},
            unknown_field("unknown field limit"),
            id="field-of-another-op",
        ),
        pytest.param(
            {"id": 7, "op": "ping", "<script>": 1},
            unknown_field("unknown field"),
            id="unsafe-field-name-not-echoed",
        ),
        pytest.param(
            {"id": 7, "op": "ping", "f" * 65: 1},
            unknown_field("unknown field"),
            id="long-field-name-not-echoed",
        ),
        pytest.param(
            {
                "id": 7,
                "op": "subscribe",
                "channel": CH,
                "since": {"epoch": "e", "offset": 1, "z": 0},
            },
            unknown_field("unknown field since.z"),
            id="since-unknown-field",
        ),
        pytest.param(
            {"id": 7, "op": "ping", "x": 1, "channel": 2},
            unknown_field("unknown field x"),
            id="first-unknown-field-named",
        ),
        # auth / refresh
        pytest.param({"id": 7, "op": "auth"}, bad_field(CREDENTIAL), id="auth-none"),
        pytest.param(
            {"id": 7, "op": "refresh", "token": "t", "ticket": "k"},
            bad_field(CREDENTIAL),
            id="refresh-both",
        ),
        pytest.param(
            {"id": 7, "op": "auth", "token": 1},
            bad_field("token: must be a non-empty string"),
            id="auth-token-int",
        ),
        pytest.param(
            {"id": 7, "op": "auth", "ticket": ""},
            bad_field("ticket: must be a non-empty string"),
            id="auth-ticket-empty",
        ),
        pytest.param(
            {"id": 7, "op": "auth", "token": None},
            bad_field("token: must be a non-empty string"),
            id="auth-token-null",
        ),
        # channel
        pytest.param(
            {"id": 7, "op": "subscribe"}, bad_field("channel: required"), id="channel-missing"
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": ["a:b"]},
            bad_field("channel: must be a string"),
            id="channel-list",
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": ""},
            bad_channel("empty channel name"),
            id="ch-empty",
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": "room"},
            bad_channel('must be "namespace:rest"'),
            id="ch-no-ns",
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": ":room"}, bad_channel(NAMESPACE), id="ch-no-ns2"
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": "chat:"},
            bad_channel('must be "namespace:rest"'),
            id="ch-no-rest",
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": "a:b c"}, bad_channel(CHARS), id="ch-space"
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": "a:b/c"}, bad_channel(CHARS), id="ch-slash"
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": "a:b\n"}, bad_channel(CHARS), id="ch-newline"
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": "a:\u0431"}, bad_channel(CHARS), id="ch-cyr"
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": "a:\uff41"}, bad_channel(CHARS), id="ch-wide"
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": "a:*"}, bad_channel(CHARS), id="ch-wildcard"
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": "a.b:c"}, bad_channel(NAMESPACE), id="ch-ns-dot"
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": "a::b"}, bad_channel(SEGMENT), id="ch-empty-seg"
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": "a:b:"},
            bad_channel(SEGMENT),
            id="ch-trailing-colon",
        ),
        pytest.param(
            {"id": 7, "op": "presence", "channel": "n:" + "r" * 254},
            bad_channel("longer than 255 characters"),
            id="ch-256",
        ),
        # publish
        pytest.param(
            {"id": 7, "op": "publish", "channel": CH}, bad_field("data: required"), id="no-data"
        ),
        pytest.param(
            {"id": 7, "op": "publish", "data": 1}, bad_field("channel: required"), id="pub-no-ch"
        ),
        # since
        pytest.param(
            {"id": 7, "op": "subscribe", "channel": CH, "since": 5},
            bad_field("since: must be an object with epoch and offset"),
            id="since-int",
        ),
        pytest.param(
            {"id": 7, "op": "history", "channel": CH, "since": {"offset": 1}},
            bad_field("since.epoch: must be a string of 1-64 characters"),
            id="since-no-epoch",
        ),
        pytest.param(
            {"id": 7, "op": "history", "channel": CH, "since": {"epoch": "", "offset": 1}},
            bad_field("since.epoch: must be a string of 1-64 characters"),
            id="since-epoch-empty",
        ),
        pytest.param(
            {"id": 7, "op": "history", "channel": CH, "since": {"epoch": "e" * 65, "offset": 1}},
            bad_field("since.epoch: must be a string of 1-64 characters"),
            id="since-epoch-65",
        ),
        pytest.param(
            {"id": 7, "op": "history", "channel": CH, "since": {"epoch": 3, "offset": 1}},
            bad_field("since.epoch: must be a string of 1-64 characters"),
            id="since-epoch-int",
        ),
        pytest.param(
            {"id": 7, "op": "subscribe", "channel": CH, "since": {"epoch": "e"}},
            bad_field("since.offset: must be a non-negative integer"),
            id="since-no-offset",
        ),
        pytest.param(
            {"id": 7, "op": "subscribe", "channel": CH, "since": {"epoch": "e", "offset": -1}},
            bad_field("since.offset: must be a non-negative integer"),
            id="since-offset-negative",
        ),
        pytest.param(
            {"id": 7, "op": "subscribe", "channel": CH, "since": {"epoch": "e", "offset": 1.0}},
            bad_field("since.offset: must be a non-negative integer"),
            id="since-offset-float",
        ),
        pytest.param(
            {"id": 7, "op": "subscribe", "channel": CH, "since": {"epoch": "e", "offset": False}},
            bad_field("since.offset: must be a non-negative integer"),
            id="since-offset-bool",
        ),
        pytest.param(
            {"id": 7, "op": "subscribe", "channel": CH, "since": {"epoch": "e", "offset": 2**53}},
            bad_field("since.offset: must be a non-negative integer"),
            id="since-offset-huge",
        ),
        # limit
        pytest.param(
            {"id": 7, "op": "history", "channel": CH, "limit": 0},
            bad_field("limit: must be an integer from 1 to 1000"),
            id="limit-0",
        ),
        pytest.param(
            {"id": 7, "op": "history", "channel": CH, "limit": 1001},
            bad_field("limit: must be an integer from 1 to 1000"),
            id="limit-1001",
        ),
        pytest.param(
            {"id": 7, "op": "history", "channel": CH, "limit": "5"},
            bad_field("limit: must be an integer from 1 to 1000"),
            id="limit-string",
        ),
        pytest.param(
            {"id": 7, "op": "history", "channel": CH, "limit": True},
            bad_field("limit: must be an integer from 1 to 1000"),
            id="limit-bool",
        ),
        # rpc
        pytest.param({"id": 7, "op": "rpc"}, bad_field("method: required"), id="rpc-no-method"),
        pytest.param(
            {"id": "r", "op": "rpc", "method": ""},
            bad_field("method: must be 1-128 characters of [A-Za-z0-9_.:-]", "r"),
            id="rpc-method-empty",
        ),
        pytest.param(
            {"id": 7, "op": "rpc", "method": "m" * 129},
            bad_field("method: must be 1-128 characters of [A-Za-z0-9_.:-]"),
            id="rpc-method-129",
        ),
        pytest.param(
            {"id": 7, "op": "rpc", "method": "a b"},
            bad_field("method: must be 1-128 characters of [A-Za-z0-9_.:-]"),
            id="rpc-method-space",
        ),
        pytest.param(
            {"id": 7, "op": "rpc", "method": "a\n"},
            bad_field("method: must be 1-128 characters of [A-Za-z0-9_.:-]"),
            id="rpc-method-trailing-newline",
        ),
        pytest.param(
            {"id": 7, "op": "rpc", "method": 5},
            bad_field("method: must be 1-128 characters of [A-Za-z0-9_.:-]"),
            id="rpc-method-int",
        ),
        # no id: the violation carries none
        pytest.param({"op": "rpc"}, bad_field("method: required", None), id="no-id-no-echo"),
    ],
)
def test_refused(message: dict[str, Any], expected: Violation):
    assert parse_envelope(message) == expected


def test_op_is_a_class_attribute_of_each_envelope():
    assert [cls.op for cls in (Auth, Refresh, Subscribe, Unsubscribe)] == [
        "auth",
        "refresh",
        "subscribe",
        "unsubscribe",
    ]
    assert [cls.op for cls in (Publish, History, Presence, Rpc, Ping)] == [
        "publish",
        "history",
        "presence",
        "rpc",
        "ping",
    ]


# Hypothesis


def json_values(
    integers: st.SearchStrategy[int], keys: st.SearchStrategy[str]
) -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | integers
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=10)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
        max_leaves=10,
    )


any_values = json_values(st.integers(-(2**60), 2**60), st.text(max_size=8))
# What decode lets through: safe integers, no prototype keys.
safe_values = json_values(
    st.integers(-MAX_ID, MAX_ID),
    st.text(max_size=8).filter(lambda k: k not in ("__proto__", "constructor", "prototype")),
)
field_names = st.sampled_from(
    ["id", "op", "channel", "since", "limit", "data", "method", "token", "ticket", "x"]
)
channels = st.sampled_from([CH, "bad", "a:b c"]) | st.text(alphabet="ab:.@-_ /", max_size=8)


@st.composite
def messages(draw: st.DrawFn, values: st.SearchStrategy[Any] = any_values) -> dict[str, Any]:
    since = (
        st.fixed_dictionaries(
            {"epoch": st.text(max_size=3) | values, "offset": st.integers(-2, 2**54) | values}
        )
        | values
    )
    message: dict[str, Any] = draw(st.dictionaries(field_names, values, max_size=4))
    message["op"] = draw(st.sampled_from([*OPS, "nope"]) | values)
    for name, strategy in (
        ("id", st.integers(-1, MAX_ID + 1) | st.text(max_size=66) | values),
        ("channel", channels),
        ("since", since),
        ("limit", st.integers(-1, 1001)),
        ("method", st.text(alphabet="ab.:- ", max_size=4)),
        ("token", st.text(max_size=2)),
    ):
        if draw(st.booleans()):
            message[name] = draw(strategy)
    return message


def check(result: object, message: dict[str, Any]) -> None:
    if isinstance(result, Violation):
        assert result.reason in REASONS
        assert result.code == (404 if result.reason == "unknown_op" else 400)
        assert result.id in (None, message.get("id"))
    else:
        assert result.op == message["op"]  # type: ignore[attr-defined]
        assert result.id == message.get("id")  # type: ignore[attr-defined]


@given(messages())
def test_messages_are_an_envelope_or_a_violation(message: dict[str, Any]):
    check(parse_envelope(message), message)


@given(st.dictionaries(st.text(max_size=8), any_values, max_size=5))
def test_arbitrary_objects_are_an_envelope_or_a_violation(message: dict[str, Any]):
    check(parse_envelope(message), message)


valid_channels = st.from_regex(r"[A-Za-z0-9_-]{1,20}(:[A-Za-z0-9_.@-]{1,20}){1,3}", fullmatch=True)
valid_since = st.builds(
    lambda epoch, offset: {"epoch": epoch, "offset": offset},
    st.text(min_size=1, max_size=64),
    st.integers(0, MAX_ID),
)
valid_fields = {
    "auth": st.sampled_from(["token", "ticket"]).flatmap(
        lambda name: st.fixed_dictionaries({name: st.text(min_size=1)})
    ),
    "subscribe": st.fixed_dictionaries(
        {"channel": valid_channels}, optional={"since": valid_since}
    ),
    "unsubscribe": st.fixed_dictionaries({"channel": valid_channels}),
    "publish": st.fixed_dictionaries({"channel": valid_channels, "data": safe_values}),
    "history": st.fixed_dictionaries(
        {"channel": valid_channels},
        optional={"since": valid_since, "limit": st.integers(1, 1000)},
    ),
    "presence": st.fixed_dictionaries({"channel": valid_channels}),
    "rpc": st.fixed_dictionaries(
        {"method": st.from_regex(r"[A-Za-z0-9_.:-]{1,128}", fullmatch=True)},
        optional={"data": safe_values},
    ),
    "ping": st.just({}),
}
valid_fields["refresh"] = valid_fields["auth"]


@st.composite
def valid_messages(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(sorted(OPS)))
    message: dict[str, Any] = {"op": op, **draw(valid_fields[op])}
    msg_id = draw(st.none() | st.integers(0, MAX_ID) | st.text(min_size=1, max_size=64))
    if msg_id is not None:
        message["id"] = msg_id
    return message


@given(valid_messages())
def test_valid_envelopes_round_trip_through_the_codec(message: dict[str, Any]):
    envelope = parse_envelope(message)
    assert not isinstance(envelope, Violation)
    decoded = decode(encode(message).decode())
    assert decoded == message
    assert parse_envelope(decoded) == envelope  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"id": 3, "op": "rpc", "method": "m.x", "data": {"a": [1]}}, Rpc(3, "m.x", {"a": [1]})),
        ({"op": "rpc", "method": "m"}, Rpc(None, "m", None)),
        ({"id": "q", "op": "publish", "channel": CH, "data": None}, Publish("q", CH, None)),  # type: ignore[arg-type]
    ],
)
def test_hot_envelopes_are_the_same_frozen_instances(message: dict[str, Any], expected: Any):
    # Rpc and Publish skip their generated __init__ (envelope.py): nothing else may differ.
    got = parse_envelope(message)
    assert type(got) is type(expected)
    assert got == expected
    assert repr(got) == repr(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.id = 9  # type: ignore[misc, union-attr]
    assert not hasattr(got, "__dict__")


def test_hot_envelopes_hash_like_the_constructed_ones():
    assert hash(parse_envelope({"id": 1, "op": "rpc", "method": "m", "data": 2})) == hash(
        Rpc(1, "m", 2)
    )
    assert hash(parse_envelope({"op": "publish", "channel": CH, "data": "x"})) == hash(
        Publish(None, CH, "x")  # type: ignore[arg-type]
    )


def test_the_first_unknown_field_in_message_order_is_named():
    for op, extra in (("rpc", {"method": "m"}), ("publish", {"channel": CH, "data": 1})):
        message = {"op": op, **extra, "zz": 1, "aa": 2, "id": 4}
        assert parse_envelope(message) == Violation(
            ReplyCode.BAD_REQUEST, "unknown_field", "unknown field zz", 4
        )


# ---------------------------------------------------------------- remembered method names


@pytest.mark.parametrize("method", [["echo"], {"echo": 1}, None, 1.5])
def test_a_method_that_is_not_a_string_is_refused_even_after_valid_names_were_remembered(
    method: object,
):
    # The remembered names are a set: an unhashable method must reach the type check, not the
    # set lookup (TypeError would escape parse_envelope).
    assert isinstance(parse_envelope({"op": "rpc", "method": "echo"}), Rpc)
    assert parse_envelope({"id": 3, "op": "rpc", "method": method}) == bad_field(
        "method: must be 1-128 characters of [A-Za-z0-9_.:-]", 3
    )


def test_refused_method_names_are_never_remembered_and_the_memory_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
):
    from wsguard.core import envelope

    remembered: set[str] = set()
    monkeypatch.setattr(envelope, "_valid_methods", remembered)
    monkeypatch.setattr(envelope, "_VALID_METHODS_KEPT", 3)
    for name in ["a b", "m" * 129, "a\n", "bad/name"]:
        refused = parse_envelope({"op": "rpc", "method": name})
        assert refused == bad_field("method: must be 1-128 characters of [A-Za-z0-9_.:-]", None)
        # Asked again, the pattern still refuses it.
        assert parse_envelope({"op": "rpc", "method": name}) == refused
    assert remembered == set()
    for i in range(5):
        assert parse_envelope({"op": "rpc", "method": f"m{i}"}) == Rpc(None, f"m{i}", None)
    assert remembered == {"m0", "m1", "m2"}
    # Names past the bound are still checked and accepted, and the bad ones still refused.
    assert parse_envelope({"op": "rpc", "method": "m4"}) == Rpc(None, "m4", None)
    assert parse_envelope({"op": "rpc", "method": "x y"}) == bad_field(
        "method: must be 1-128 characters of [A-Za-z0-9_.:-]", None
    )
    assert remembered == {"m0", "m1", "m2"}
