"""core/pipeline.py: the rate, decode and envelope stages, and the violation window."""

from __future__ import annotations

import dataclasses

import pytest

from wsguard.core.codec import Violation
from wsguard.core.envelope import Publish
from wsguard.core.pipeline import MessageGate, UserRates, ViolationCounter
from wsguard.settings import LimitsConfig

PING = '{"op":"ping"}'


def gate(**limits: object) -> MessageGate:
    config = dataclasses.replace(LimitsConfig(), **limits)  # type: ignore[arg-type]
    return MessageGate(config, UserRates(config))


def reasons(results: list[object]) -> list[str]:
    return [r.reason if isinstance(r, Violation) else type(r).__name__ for r in results]


def test_burst_passes_then_rate_limited_until_refilled() -> None:
    g = gate(messages_per_second=2.0, burst=3)
    results = [g.admit(PING, len(PING), "alice", now=100.0) for _ in range(4)]
    assert reasons(results) == ["Ping", "Ping", "Ping", "rate_limited"]
    refused = results[3]
    assert isinstance(refused, Violation)
    assert int(refused.code) == 429
    # Half a second at 2/s refills exactly one token.
    assert reasons([g.admit(PING, len(PING), "alice", now=100.5)]) == ["Ping"]
    assert reasons([g.admit(PING, len(PING), "alice", now=100.5)]) == ["rate_limited"]


def test_byte_budget_is_separate_from_the_message_budget() -> None:
    # 1000 bytes/s: the bucket holds max(2 * 1000, max_message_bytes) = 2000 bytes.
    g = gate(bytes_per_second=1000, max_message_bytes=1000, burst=100)
    text = '{"op":"ping"}' + " " * 587  # 600 bytes of valid JSON
    results = [g.admit(text, len(text), "alice", now=0.0) for _ in range(4)]
    assert reasons(results) == ["Ping", "Ping", "Ping", "rate_limited"]


def test_user_budget_is_shared_by_all_connections_of_the_user() -> None:
    config = dataclasses.replace(
        LimitsConfig(), burst=100, user_burst=5, user_messages_per_second=1.0
    )
    users = UserRates(config)
    first, second = MessageGate(config, users), MessageGate(config, users)
    results = [g.admit(PING, len(PING), "alice", now=0.0) for g in (first, second) * 3]
    assert reasons(results) == ["Ping"] * 5 + ["rate_limited"]
    # Another user is not affected.
    assert reasons([first.admit(PING, len(PING), "bob", now=0.0)]) == ["Ping"]


def test_decode_and_envelope_refusals_come_after_the_rate_stage() -> None:
    g = gate()
    cases = {
        "not json": "bad_json",
        '{"op":"ping","op":"ping"}': "duplicate_key",
        '{"op":"publish","channel":"chat:a","data":{"__proto__":1}}': "forbidden_key",
        '{"op":"publish","channel":"chat:a","data":' + "[" * 40 + "]" * 40 + "}": "too_deep",
        '{"op":"nope"}': "unknown_op",
        '{"op":"publish","channel":"chat:a","data":1,"user":"admin"}': "unknown_field",
        '{"op":"subscribe","channel":"chat:<a>"}': "bad_channel",
    }
    for text, reason in cases.items():
        result = g.admit(text, len(text), "alice", now=0.0)
        assert isinstance(result, Violation), text
        assert result.reason == reason, text


def test_admit_returns_the_typed_envelope() -> None:
    text = '{"id":7,"op":"publish","channel":"chat:lobby","data":{"text":"hi"}}'
    result = gate().admit(text, len(text), "alice", now=0.0)
    assert result == Publish(7, "chat:lobby", {"text": "hi"})  # type: ignore[arg-type]


def test_charge_alone_counts_binary_frames() -> None:
    g = gate(burst=2)
    assert g.charge(10, "alice", 0.0) is None
    assert g.charge(10, "alice", 0.0) is None
    refused = g.charge(10, "alice", 0.0)
    assert refused is not None
    assert refused.reason == "rate_limited"


@pytest.mark.parametrize(
    ("times", "closes"),
    [
        ([0, 1, 2, 3, 4], [False, False, False, False, True]),
        # Spread out: never 5 within 60 s.
        ([0, 20, 40, 61, 80, 100, 121], [False] * 7),
        # The sixth refusal is within 60 s of the second one: close.
        ([0, 20, 30, 40, 50, 61], [False, False, False, False, True, True]),
    ],
)
def test_violation_window(times: list[float], closes: list[bool]) -> None:
    counter = ViolationCounter(limit=5, window=60.0)
    assert [counter.add(t) for t in times] == closes


def test_limit_of_one_closes_on_the_first_refusal() -> None:
    assert ViolationCounter(limit=1, window=60.0).add(0.0) is True
