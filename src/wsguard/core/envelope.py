"""The envelope check: one decoded message in, a typed ``Envelope`` or a ``Violation`` out.

Performs no I/O; reads no clock. Runs after ``codec.decode`` (DESIGN.md §5) and knows the ops
of the wire protocol (DESIGN.md §6). It is strict, because anything it lets through unnamed is
a field some later stage may read without having checked it:

- ``id`` is a non-negative integer up to 2^53 - 1 or a string of 1 to 64 characters
  (``bad_id``): ids are echoed in replies, so a bound keeps replies from amplifying messages;
- ``op`` names a known op (404 ``unknown_op``);
- no field beyond the op's own (``unknown_field``): identities smuggled in payloads
  (``"user": "admin"``) are refused rather than ignored;
- every field has its type and range (``bad_field``, naming the field path), channel names
  the syntax of ``core.channels`` (``bad_channel``).

Once ``id`` is valid, every later ``Violation`` carries it, so the reply can echo it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final, TypeGuard

from wsguard.codes import ReplyCode
from wsguard.core.channels import ChannelName, validate_channel_name
from wsguard.core.codec import MAX_SAFE_INTEGER, Violation

__all__ = [
    "MAX_EPOCH_LENGTH",
    "MAX_HISTORY_LIMIT",
    "MAX_ID_LENGTH",
    "OPS",
    "REASONS",
    "Auth",
    "Envelope",
    "History",
    "MessageId",
    "Ping",
    "Presence",
    "Publish",
    "Refresh",
    "Rpc",
    "Since",
    "Subscribe",
    "Unsubscribe",
    "parse_envelope",
]

MessageId = int | str

MAX_ID_LENGTH: Final = 64
MAX_HISTORY_LIMIT: Final = 1000
MAX_EPOCH_LENGTH: Final = 64

REASONS: Final = frozenset({"bad_id", "unknown_op", "unknown_field", "bad_field", "bad_channel"})
"""Every reason ``parse_envelope`` produces: 404 for ``unknown_op``, 400 for the rest."""

_METHOD: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}", re.ASCII)
# Field names echoed in ``unknown_field`` messages: anything else is not shown, so a reply
# never reflects arbitrary peer text.
_SHOWN_FIELD: Final = re.compile(r"[A-Za-z0-9_]{1,64}", re.ASCII)


@dataclass(frozen=True, slots=True)
class Since:
    """A position in a channel's history: resume after ``offset`` within ``epoch``."""

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Auth:
    """``auth``: exactly one of ``token`` and ``ticket`` is set."""

    op: ClassVar[str] = "auth"
    id: MessageId | None
    token: str | None
    ticket: str | None


@dataclass(frozen=True, slots=True)
class Refresh:
    """``refresh``: exactly one of ``token`` and ``ticket`` is set."""

    op: ClassVar[str] = "refresh"
    id: MessageId | None
    token: str | None
    ticket: str | None


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``subscribe``: ``since`` asks for recovery of what was missed."""

    op: ClassVar[str] = "subscribe"
    id: MessageId | None
    channel: ChannelName
    since: Since | None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``unsubscribe``."""

    op: ClassVar[str] = "unsubscribe"
    id: MessageId | None
    channel: ChannelName


@dataclass(frozen=True, slots=True)
class Publish:
    """``publish``: ``data`` is any JSON value, ``null`` included."""

    op: ClassVar[str] = "publish"
    id: MessageId | None
    channel: ChannelName
    data: Any


@dataclass(frozen=True, slots=True)
class History:
    """``history``: publications after ``since`` (from the start without it), ``limit`` at most."""

    op: ClassVar[str] = "history"
    id: MessageId | None
    channel: ChannelName
    since: Since | None
    limit: int | None


@dataclass(frozen=True, slots=True)
class Presence:
    """``presence``."""

    op: ClassVar[str] = "presence"
    id: MessageId | None
    channel: ChannelName


@dataclass(frozen=True, slots=True)
class Rpc:
    """``rpc``: ``data`` is ``None`` when absent (or ``null``)."""

    op: ClassVar[str] = "rpc"
    id: MessageId | None
    method: str
    data: Any


@dataclass(frozen=True, slots=True)
class Ping:
    """``ping``."""

    op: ClassVar[str] = "ping"
    id: MessageId | None


Envelope = Auth | Refresh | Subscribe | Unsubscribe | Publish | History | Presence | Rpc | Ping
"""One checked message; dispatch on its class (or on ``op``)."""

# The fields each op allows besides ``id`` and ``op``.
OPS: Final[Mapping[str, frozenset[str]]] = {
    "auth": frozenset({"token", "ticket"}),
    "refresh": frozenset({"token", "ticket"}),
    "subscribe": frozenset({"channel", "since"}),
    "unsubscribe": frozenset({"channel"}),
    "publish": frozenset({"channel", "data"}),
    "history": frozenset({"channel", "since", "limit"}),
    "presence": frozenset({"channel"}),
    "rpc": frozenset({"method", "data"}),
    "ping": frozenset(),
}
_SINCE_FIELDS: Final = frozenset({"epoch", "offset"})
# The same with ``id`` and ``op``: the unknown-field check is then one C-level set test per
# message (the loop naming the field runs only when it fails).
_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    op: fields | {"id", "op"} for op, fields in OPS.items()
}
_MISSING: Final = object()
# Method names that matched ``_METHOD``: an rpc-heavy client calls a few methods many times, and
# the set lookup costs a fraction of the pattern. Validity depends on the name alone, so the
# set is shared; it stops growing at ``_VALID_METHODS_KEPT`` names (a client sending a new
# name every time fills it once, then pays the pattern as before).
_valid_methods: Final[set[str]] = set()
_VALID_METHODS_KEPT: Final = 1024


def _slot_setter(cls: type, name: str) -> Callable[[object, object], None]:
    """The setter of the slot ``name`` of ``cls`` (its member descriptor's ``__set__``)."""
    setter: Callable[[object, object], None] = cls.__dict__[name].__set__
    return setter


# Rpc and Publish are built on every rpc and publish message. The generated ``__init__`` of a
# frozen dataclass sets each field with ``object.__setattr__`` by name, a quarter of the cost
# of parsing the whole envelope; setting the slots through their descriptors does the same in
# half the time. The instances are the same: frozen, equal, hashable (tests pin it).
_new: Final = object.__new__
_RPC_ID: Final = _slot_setter(Rpc, "id")
_RPC_METHOD: Final = _slot_setter(Rpc, "method")
_RPC_DATA: Final = _slot_setter(Rpc, "data")
_PUBLISH_ID: Final = _slot_setter(Publish, "id")
_PUBLISH_CHANNEL: Final = _slot_setter(Publish, "channel")
_PUBLISH_DATA: Final = _slot_setter(Publish, "data")

_BAD_ID: Final = Violation(
    ReplyCode.BAD_REQUEST, "bad_id", "id must be a non-negative integer or a string of 1-64 chars"
)
_UNKNOWN_OP: Final = Violation(ReplyCode.NOT_FOUND, "unknown_op", "unknown op")


class _Invalid(Exception):
    """Raised inside the field readers; ``parse_envelope`` turns it into its ``Violation``."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(violation.reason)
        self.violation = violation


def _bad_field(path: str, rule: str) -> _Invalid:
    return _Invalid(Violation(ReplyCode.BAD_REQUEST, "bad_field", f"{path}: {rule}"))


def _unknown_field(path: str, name: str) -> _Invalid:
    shown = f" {path}{name}" if _SHOWN_FIELD.fullmatch(name) else ""
    return _Invalid(Violation(ReplyCode.BAD_REQUEST, "unknown_field", f"unknown field{shown}"))


def _is_int(value: object) -> TypeGuard[int]:
    return type(value) is int  # bool is an int subclass, and never a number here


def parse_envelope(message: Mapping[str, Any]) -> Envelope | Violation:
    """Check one decoded message against its op's envelope.

    Args:
        message: the object ``codec.decode`` returned.

    Returns:
        The typed envelope, or a ``Violation`` (reasons in ``REASONS``) that carries the
        message's ``id`` once that id is known to be valid. Never raises.
    """
    msg_id = message.get("id")
    if msg_id is not None and not (
        # _is_int inlined (one call less per message): bool is an int subclass, never an id
        (type(msg_id) is int and 0 <= msg_id <= MAX_SAFE_INTEGER)
        or (isinstance(msg_id, str) and 0 < len(msg_id) <= MAX_ID_LENGTH)
    ):
        return _BAD_ID
    try:
        return _parse(message, msg_id)
    except _Invalid as exc:
        return replace(exc.violation, id=msg_id)


def _parse(message: Mapping[str, Any], msg_id: MessageId | None) -> Envelope:
    op = message.get("op", _MISSING)
    if op is _MISSING:
        raise _bad_field("op", "required")
    if not isinstance(op, str):
        raise _bad_field("op", "must be a string")
    allowed = _FIELDS.get(op)
    if allowed is None:
        raise _Invalid(_UNKNOWN_OP)
    if not allowed.issuperset(message):
        for name in message:  # the first unknown field, in the message's order
            if name not in allowed:
                raise _unknown_field("", name)
    # The ops are exclusive: the most frequent are tested first.
    if op == "rpc":
        method = _method(message)
        rpc = _new(Rpc)
        _RPC_ID(rpc, msg_id)
        _RPC_METHOD(rpc, method)
        _RPC_DATA(rpc, message.get("data"))
        return rpc
    if op == "ping":
        return Ping(msg_id)
    if op in ("auth", "refresh"):
        token, ticket = _credential(message)
        return (Auth if op == "auth" else Refresh)(msg_id, token, ticket)
    channel = _channel(message)
    if op == "publish":
        data = message.get("data", _MISSING)
        if data is _MISSING:
            raise _bad_field("data", "required")
        publish = _new(Publish)
        _PUBLISH_ID(publish, msg_id)
        _PUBLISH_CHANNEL(publish, channel)
        _PUBLISH_DATA(publish, data)
        return publish
    if op == "subscribe":
        return Subscribe(msg_id, channel, _since(message))
    if op == "history":
        return History(msg_id, channel, _since(message), _limit(message))
    if op == "presence":
        return Presence(msg_id, channel)
    return Unsubscribe(msg_id, channel)


def _credential(message: Mapping[str, Any]) -> tuple[str | None, str | None]:
    if ("token" in message) == ("ticket" in message):
        raise _bad_field("token", "exactly one of token and ticket is required")
    for name in ("token", "ticket"):
        value = message.get(name)
        if name in message and not (isinstance(value, str) and value):
            raise _bad_field(name, "must be a non-empty string")
    return message.get("token"), message.get("ticket")


def _channel(message: Mapping[str, Any]) -> ChannelName:
    if "channel" not in message:
        raise _bad_field("channel", "required")
    channel = message["channel"]
    if not isinstance(channel, str):
        raise _bad_field("channel", "must be a string")
    # One validator for every channel name (core.channels): two would be a parser differential.
    problem = validate_channel_name(channel)
    if problem is not None:
        raise _Invalid(Violation(ReplyCode.BAD_REQUEST, "bad_channel", f"channel: {problem}"))
    return ChannelName(channel)


def _method(message: Mapping[str, Any]) -> str:
    if "method" not in message:
        raise _bad_field("method", "required")
    method = message["method"]
    if type(method) is str and method in _valid_methods:
        return method  # a name that passed the pattern before: one set lookup, no regex
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise _bad_field("method", "must be 1-128 characters of [A-Za-z0-9_.:-]")
    if len(_valid_methods) < _VALID_METHODS_KEPT:
        _valid_methods.add(method)
    return method


def _since(message: Mapping[str, Any]) -> Since | None:
    since = message.get("since")
    if since is None:
        return None
    if not isinstance(since, dict):
        raise _bad_field("since", "must be an object with epoch and offset")
    for name in since:
        if name not in _SINCE_FIELDS:
            raise _unknown_field("since.", name)
    epoch = since.get("epoch")
    if not isinstance(epoch, str) or not 0 < len(epoch) <= MAX_EPOCH_LENGTH:
        raise _bad_field("since.epoch", "must be a string of 1-64 characters")
    offset = since.get("offset")
    if not (_is_int(offset) and 0 <= offset <= MAX_SAFE_INTEGER):
        raise _bad_field("since.offset", "must be a non-negative integer")
    return Since(epoch, offset)


def _limit(message: Mapping[str, Any]) -> int | None:
    limit = message.get("limit")
    if limit is None:
        return None
    if not (_is_int(limit) and 1 <= limit <= MAX_HISTORY_LIMIT):
        raise _bad_field("limit", "must be an integer from 1 to 1000")
    return limit
