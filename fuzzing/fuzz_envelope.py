"""Fuzz the message path of a session: text -> ``codec.decode`` -> ``envelope.parse_envelope``
(``core.pipeline.MessageGate`` without its rate stage).

Invariant: nothing raises; a refusal is a ``Violation`` with a documented reason (404 for
``unknown_op``, 400 for every other) that echoes the message's ``id`` only when that id is
valid; an accepted envelope is what the message said and nothing more:

- its class is the one of ``op``, its ``id`` the message's, and the message has no field beyond
  the op's own (``envelope.OPS``), so nothing unchecked rides along;
- every channel is a valid channel name, ``since``/``limit`` lie in their ranges, an rpc
  method matches its syntax;
- it round-trips: encoding the message and parsing it again gives the same envelope.

Run: ``python fuzzing/fuzz_envelope.py fuzzing/corpus/envelope -dict=fuzzing/json.dict``.
"""

# A harness reports a broken invariant to libFuzzer by raising: assert is the tool here (never
# run a harness under python -O).
# ruff: noqa: S101, PT018

from __future__ import annotations

import re
import sys
from typing import Any

from wsguard.core import codec, envelope
from wsguard.core.channels import validate_channel_name
from wsguard.core.codec import MAX_SAFE_INTEGER, Violation, decode, encode
from wsguard.core.envelope import (
    MAX_EPOCH_LENGTH,
    MAX_HISTORY_LIMIT,
    MAX_ID_LENGTH,
    OPS,
    Auth,
    History,
    Ping,
    Presence,
    Publish,
    Refresh,
    Rpc,
    Subscribe,
    Unsubscribe,
    parse_envelope,
)

CLASSES: dict[str, type] = {
    "auth": Auth,
    "refresh": Refresh,
    "subscribe": Subscribe,
    "unsubscribe": Unsubscribe,
    "publish": Publish,
    "history": History,
    "presence": Presence,
    "rpc": Rpc,
    "ping": Ping,
}
METHOD = re.compile(r"[A-Za-z0-9_.:-]{1,128}", re.ASCII)


def _valid_id(value: object) -> bool:
    if type(value) is int:
        return 0 <= value <= MAX_SAFE_INTEGER
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def check_message(message: dict[str, Any]) -> None:
    """Parse one decoded message and check every invariant above."""
    result = parse_envelope(message)
    msg_id = message.get("id")
    if isinstance(result, Violation):
        assert result.reason in envelope.REASONS, result
        assert result.code == (404 if result.reason == "unknown_op" else 400), result
        if result.reason == "bad_id":
            assert msg_id is not None and not _valid_id(msg_id), result
            assert result.id is None, result
        else:
            assert result.id == msg_id, result
        return
    op = message["op"]
    assert type(result) is CLASSES[op], (op, result)
    assert result.op == op
    assert msg_id is None or _valid_id(msg_id), msg_id
    assert result.id == msg_id
    assert set(message) <= OPS[op] | {"id", "op"}, sorted(message)
    channel = getattr(result, "channel", None)
    if channel is not None:
        assert validate_channel_name(channel) is None, channel
        assert channel == message["channel"]
    since = getattr(result, "since", None)
    if since is not None:
        assert 0 < len(since.epoch) <= MAX_EPOCH_LENGTH
        assert type(since.offset) is int and 0 <= since.offset <= MAX_SAFE_INTEGER
    limit = getattr(result, "limit", None)
    if limit is not None:
        assert type(limit) is int and 1 <= limit <= MAX_HISTORY_LIMIT
    if isinstance(result, Rpc):
        assert METHOD.fullmatch(result.method), result.method
    if isinstance(result, Auth | Refresh):
        assert (result.token is None) != (result.ticket is None), result
    again = decode(encode(message).decode("utf-8"))
    assert not isinstance(again, Violation), again
    assert parse_envelope(again) == result


def TestOneInput(data: bytes) -> None:
    message = decode(data.decode("utf-8", "replace"))
    if isinstance(message, Violation):
        assert message.reason in codec.REASONS, message
        return
    check_message(message)


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
