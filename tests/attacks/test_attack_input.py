"""INP: input validation, injection and output (security-references.md §4, group INP).

Every message is hostile until the codec (``core/codec.py``) and the envelope
(``core/envelope.py``) have checked it: text that is not UTF-8 fails the connection (1007, RFC
6455 §8.1); text that is not strict JSON, or JSON a JavaScript consumer would read differently
(duplicate keys, deep nesting, unsafe numbers, prototype keys), is refused with a 400 reply and
has no effect; data on an ``encode = "html"`` channel (``chat:*``) reaches every subscriber and
history HTML-escaped once, never evaluated; replies and close reasons never echo the input back
and never name the library.

Cases (exact reply codes from docs/reference/codes.md):

- INP-01 invalid UTF-8 in a text frame → close 1007 ``invalid UTF-8``
- INP-02 overlong / surrogate / truncated UTF-8 → close 1007
- INP-03 a valid UTF-8 sequence split across fragments → accepted
- INP-04 not JSON, ``NaN``, ``Infinity``, ``-Infinity``, a BOM, a lone surrogate → 400 ``bad_json``
- INP-05 a top level that is not an object → 400 ``bad_envelope``
- INP-06 a duplicate key (top level, at depth) → 400 ``duplicate_key``
- INP-07 ``__proto__``/``constructor``/``prototype`` keys → 400 ``forbidden_key``, nothing delivered
- INP-08 nesting depth 33 → 400 ``too_deep`` (depth 32 accepted)
- INP-09 2^53, -2^53, 1e400 → 400 ``number_out_of_range``
- INP-10 a bad ``id`` (negative, 65 chars, float, bool, empty) → 400 ``bad_id``
- INP-11 stored XSS → delivered and stored HTML-escaped; markup keys → 422 ``invalid_data``
- INP-12 SQL/command/template/JNDI injection strings → delivered inert, byte-exact after escaping
- INP-13 unknown op → 404 ``unknown_op``; unknown field → 400 ``unknown_field``
- INP-14 a binary frame → 400 ``binary_unsupported``
- INP-15 close reasons are the fixed generic phrases, never the parser's words
- INP-16 error replies never echo hostile input (``bad_channel``, ``unknown_field``, ``unknown_op``)
- INP-17 a schema violation on ``chat:*`` → 422 ``invalid_data``, nothing delivered or stored
- INP-18 path-traversal channel names → 400 ``bad_channel``
- INP-19 a pickle payload (binary frame) → 400 ``binary_unsupported``; as text it is inert data
"""

from __future__ import annotations

import pickle
import secrets
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest

from support.attack import AttackTarget, Closed, Session, error_reason, open_session
from support.rawws import OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT, frame

pytestmark = pytest.mark.integration

GENERIC = {
    1002: "protocol error",
    1007: "invalid UTF-8",
    1008: "policy violation",
    1009: "message too big",
}
# Words of the websockets core's own close reasons and of other servers' (STEWS fingerprints).
LIBRARY_WORDS = (
    "reserved",
    "rsv",
    "mask",
    "opcode",
    "size limit",
    "bytes",
    "65536",
    "continuation",
    "fragment",
    "utf-8 sequence",
    "codec",
    "websockets",
)


def _channel(prefix: str = "chat") -> str:
    return f"{prefix}:inp{secrets.token_hex(4)}"


async def _close(session: Session, timeout: float = 3.0) -> tuple[int | None, str, list[Any]]:
    """Read until the close frame: (code, reason, the messages before it)."""
    before: list[Any] = []
    while True:
        try:
            before.append(await session.receive(timeout))
        except Closed as closed:
            return closed.code, closed.reason, before


async def _refused(target: AttackTarget, text: bytes | str) -> tuple[int, str, dict[str, Any]]:
    """Send one text message on a fresh session; the error reply's (code, reason, reply)."""
    session = await open_session(target, "alice")
    await session.send_text(text)
    reply = await session.receive(3.0)
    code, reason = error_reason(reply)
    # The connection stays open after a refusal (one violation of five).
    assert (await session.call("ping"))["ok"] is True
    return code, reason, reply


async def _subscribed(target: AttackTarget, user: str, channel: str) -> Session:
    session = await open_session(target, user)
    reply = await session.call("subscribe", channel=channel)
    assert reply["ok"] is True, reply
    return session


# -- UTF-8 (RFC 6455 §8.1) ---------------------------------------------------------------------


async def test_inp_01_invalid_utf8_text_frame_closes_1007(target: AttackTarget) -> None:
    """INP-01: invalid UTF-8 in a text frame → 1007 (crash class CVE-2023-32695, CVE-2024-38355)."""
    session = await open_session(target, "alice")
    await session.raw.send(frame(OP_TEXT, b'{"op":"ping","x":"\xff\xfe"}'))
    code, reason, before = await _close(session)
    assert (code, reason) == (1007, "invalid UTF-8")
    assert before == []
    assert target.alive()


@pytest.mark.parametrize(
    "payload",
    [
        b'{"op":"ping","x":"\xc0\xaf"}',  # overlong "/" (path traversal filters' classic bypass)
        b'{"op":"ping","x":"\xed\xa0\x80"}',  # a UTF-16 surrogate encoded in UTF-8 (CESU)
        b'{"op":"ping","x":"\xe2\x82"}',  # truncated 3-byte sequence
        b'{"op":"ping","x":"\xf4\x90\x80\x80"}',  # beyond U+10FFFF
    ],
    ids=["INP-02-overlong", "INP-02-surrogate", "INP-02-truncated", "INP-02-above-max"],
)
async def test_inp_02_malformed_utf8_closes_1007(target: AttackTarget, payload: bytes) -> None:
    """INP-02: overlong/surrogate/truncated UTF-8 is not UTF-8 → 1007 (RFC 3629, RFC 6455 §8.1)."""
    session = await open_session(target, "alice")
    await session.raw.send(frame(OP_TEXT, payload))
    code, reason, before = await _close(session)
    assert (code, reason) == (1007, "invalid UTF-8")
    assert before == []


async def test_inp_03_utf8_split_across_fragments_is_accepted(target: AttackTarget) -> None:
    """INP-03: a valid sequence split between fragments is valid text (RFC 6455 §5.6, §8.1)."""
    session = await open_session(target, "alice")
    whole = '{"id":"€uro","op":"ping"}'.encode()
    cut = whole.index("€".encode()) + 1  # inside the three bytes of U+20AC
    await session.raw.send(frame(OP_TEXT, whole[:cut], fin=False) + frame(OP_CONT, whole[cut:]))
    assert await session.receive(3.0) == {"id": "€uro", "ok": True, "result": {}}


# -- JSON (core/codec.py) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        b"hello",
        b'{"op":"ping"',
        b'{"op":"ping","x":NaN}',
        b'{"op":"ping","x":Infinity}',
        b'{"op":"ping","x":-Infinity}',
        b"NaN",
        b'\xef\xbb\xbf{"op":"ping"}',  # RFC 8259 §8.1: senders MUST NOT add a BOM
        b'{"op":"ping","x":"\\ud800"}',  # a lone surrogate escape is no Unicode text
        b"{'op':'ping'}",
    ],
    ids=[
        "INP-04-text",
        "INP-04-truncated",
        "INP-04-nan",
        "INP-04-infinity",
        "INP-04-minus-infinity",
        "INP-04-bare-nan",
        "INP-04-bom",
        "INP-04-lone-surrogate",
        "INP-04-single-quotes",
    ],
)
async def test_inp_04_not_strict_json_is_bad_json(target: AttackTarget, text: bytes) -> None:
    """INP-04: anything but strict RFC 8259 JSON → 400 bad_json (parser differentials)."""
    code, reason, reply = await _refused(target, text)
    assert (code, reason) == (400, "bad_json")
    assert "id" not in reply


@pytest.mark.parametrize(
    "text",
    ['[{"op":"ping"}]', '"ping"', "1", "null"],
    ids=["INP-05-array", "INP-05-string", "INP-05-number", "INP-05-null"],
)
async def test_inp_05_non_object_top_level_is_bad_envelope(target: AttackTarget, text: str) -> None:
    """INP-05: a top level that is not an object → 400 bad_envelope."""
    code, reason, _ = await _refused(target, text)
    assert (code, reason) == (400, "bad_envelope")


@pytest.mark.parametrize(
    "text",
    [
        '{"id":1,"op":"subscribe","channel":"user:alice","channel":"user:bob"}',
        '{"id":1,"op":"publish","channel":"chat:x","data":{"a":{"b":{"text":"1","text":"2"}}}}',
        '{"id":1,"op":"ping","op":"ping"}',
    ],
    ids=["INP-06-top-level", "INP-06-at-depth", "INP-06-same-value"],
)
async def test_inp_06_duplicate_key_is_refused(target: AttackTarget, text: str) -> None:
    """INP-06: duplicate keys (authorise one value, act on the other) → 400 duplicate_key."""
    code, reason, _ = await _refused(target, text)
    assert (code, reason) == (400, "duplicate_key")


@pytest.mark.parametrize(
    "key",
    ["__proto__", "constructor", "prototype"],
    ids=["INP-07-proto", "INP-07-ctor", "INP-07-prototype"],
)
async def test_inp_07_prototype_keys_are_refused_and_not_relayed(
    target: AttackTarget, key: str
) -> None:
    """INP-07: prototype-pollution keys at depth → 400 forbidden_key, unrelayed (CVE-2022-2421)."""
    channel = _channel()
    bob = await _subscribed(target, "bob", channel)
    alice = await open_session(target, "alice")
    data = {"text": "x", "nested": {"deeper": {key: {"admin": True}}}}
    await alice.send_text(
        orjson.dumps({"id": 1, "op": "publish", "channel": channel, "data": data})
    )
    reply = await alice.receive(3.0)
    assert error_reason(reply) == (400, "forbidden_key")
    assert await bob.quiet(0.3) == []
    history = await bob.call("history", channel=channel)
    assert history["result"]["publications"] == []


async def test_inp_08_nesting_past_32_is_too_deep(target: AttackTarget) -> None:
    """INP-08: nesting depth 33 → 400 too_deep (stack exhaustion of recursive consumers)."""
    session = await open_session(target, "alice")
    # The top-level object is level 1, so 31 nested arrays make depth 32 (allowed) and 32
    # make depth 33. The value rides in an rpc's data; the codec runs before the method lookup.
    ok = '{"id":1,"op":"rpc","method":"none","data":' + "[" * 31 + "]" * 31 + "}"
    await session.send_text(ok)
    assert error_reason(await session.receive(3.0)) == (404, "unknown_method")
    deep = '{"id":2,"op":"rpc","method":"none","data":' + "[" * 32 + "]" * 32 + "}"
    await session.send_text(deep)
    reply = await session.receive(3.0)
    assert error_reason(reply) == (400, "too_deep")
    assert "id" not in reply


@pytest.mark.parametrize(
    "number",
    ["9007199254740992", "-9007199254740992", "1e400", "123456789012345678901234567890"],
    ids=["INP-09-2pow53", "INP-09-minus-2pow53", "INP-09-1e400", "INP-09-bignum"],
)
async def test_inp_09_unsafe_numbers_are_refused(target: AttackTarget, number: str) -> None:
    """INP-09: integers JavaScript rounds, doubles that overflow → 400 number_out_of_range."""
    text = '{"op":"publish","channel":"chat:x","data":{"text":"t","n":' + number + "}}"
    code, reason, _ = await _refused(target, text)
    assert (code, reason) == (400, "number_out_of_range")


@pytest.mark.parametrize(
    "msg_id",
    ["-1", '"' + "a" * 65 + '"', "7.0", "true", '""', "9007199254740992.5", "[1]"],
    ids=[
        "INP-10-negative",
        "INP-10-65-chars",
        "INP-10-float",
        "INP-10-bool",
        "INP-10-empty",
        "INP-10-huge-float",
        "INP-10-array",
    ],
)
async def test_inp_10_bad_id_is_refused(target: AttackTarget, msg_id: str) -> None:
    """INP-10: an id a client cannot match exactly → 400 bad_id, no id echoed."""
    code, reason, reply = await _refused(target, '{"id":' + msg_id + ',"op":"ping"}')
    assert (code, reason) == (400, "bad_id")
    assert "id" not in reply


@pytest.mark.parametrize("message", ['{"op":"ping"}', '{"id":null,"op":"ping"}'])
async def test_inp_10_a_request_without_id_gets_a_reply_without_id(
    target: AttackTarget, message: str
) -> None:
    """INP-10: no id (or ``null``) in, no id out (wire-protocol.md, "Ids"): a reply never
    carries an id the client did not send."""
    session = await open_session(target, "alice")
    await session.send_text(message)
    assert await session.receive() == {"ok": True, "result": {}}


# -- output encoding ---------------------------------------------------------------------------

XSS = [
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("<ScRiPt>alert(1)</sCrIpT>", "&lt;ScRiPt&gt;alert(1)&lt;/sCrIpT&gt;"),
    ("<img src=1 onerror=alert(1)>", "&lt;img src=1 onerror=alert(1)&gt;"),
    ('"onmouseover="alert(1)', "&quot;onmouseover=&quot;alert(1)"),
    ("'><svg/onload=alert(1)>", "&#x27;&gt;&lt;svg/onload=alert(1)&gt;"),
    ("&lt;script&gt;", "&amp;lt;script&amp;gt;"),  # escaped exactly once, never decoded
]


async def test_inp_11_stored_xss_is_delivered_and_stored_escaped(target: AttackTarget) -> None:
    """INP-11: markup published on chat:* reaches bob and history HTML-escaped (stored XSS)."""
    channel = _channel()
    bob = await _subscribed(target, "bob", channel)
    alice = await open_session(target, "alice")
    for raw, _ in XSS:
        reply = await alice.call("publish", channel=channel, data={"text": raw})
        assert reply["ok"] is True, reply
    delivered = [(await bob.push("message", 3.0))["data"]["text"] for _ in XSS]
    assert delivered == [escaped for _, escaped in XSS]
    history = await bob.call("history", channel=channel)
    stored = [p["data"]["text"] for p in history["result"]["publications"]]
    assert stored == [escaped for _, escaped in XSS]
    for text in delivered + stored:
        assert "<" not in text
        assert ">" not in text


async def test_inp_11_markup_keys_are_refused_by_the_schema(target: AttackTarget) -> None:
    """INP-11: keys with markup never reach a subscriber: the chat schema refuses them (422)."""
    channel = _channel()
    bob = await _subscribed(target, "bob", channel)
    alice = await open_session(target, "alice")
    reply = await alice.call(
        "publish", channel=channel, data={"text": "x", "<img src=1 onerror=alert(1)>": "y"}
    )
    assert error_reason(reply) == (422, "invalid_data")
    assert "<img" not in reply["error"]["message"]
    assert await bob.quiet(0.3) == []


INJECTION = [
    ("'; DROP TABLE x; --", "&#x27;; DROP TABLE x; --"),
    ("1' OR '1'='1", "1&#x27; OR &#x27;1&#x27;=&#x27;1"),
    ("$(id)", "$(id)"),
    ("`id`; cat /etc/passwd", "`id`; cat /etc/passwd"),
    ("{{7*7}}", "{{7*7}}"),
    ("${7*7}", "${7*7}"),
    ("#{7*7}", "#{7*7}"),
    ("${jndi:ldap://x/a}", "${jndi:ldap://x/a}"),
    (
        "T(java.lang.Runtime).getRuntime().exec('id')",
        "T(java.lang.Runtime).getRuntime().exec(&#x27;id&#x27;)",
    ),
]


async def test_inp_12_injection_strings_are_inert_data(target: AttackTarget) -> None:
    """INP-12: SQL/shell/SSTI/SpEL/JNDI strings arrive byte-exact after escaping (CVE-2018-1270)."""
    channel = _channel()
    bob = await _subscribed(target, "bob", channel)
    alice = await open_session(target, "alice")
    for raw, _ in INJECTION:
        reply = await alice.call("publish", channel=channel, data={"text": raw})
        assert reply["ok"] is True, reply
    delivered = [(await bob.push("message", 3.0))["data"]["text"] for _ in INJECTION]
    assert delivered == [escaped for _, escaped in INJECTION]
    assert "49" not in "".join(delivered)  # no template was evaluated
    assert target.alive()


# -- envelope ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"id":1,"op":"eval"}', (404, "unknown_op")),
        ('{"id":1,"op":"__proto__x"}', (404, "unknown_op")),
        ('{"id":1,"op":"ping","user":"bob"}', (400, "unknown_field")),
        ('{"id":1,"op":"subscribe","channel":"user:alice","role":"admin"}', (400, "unknown_field")),
    ],
    ids=["INP-13-unknown-op", "INP-13-odd-op", "INP-13-user-field", "INP-13-role-field"],
)
async def test_inp_13_unknown_op_and_field(
    target: AttackTarget, text: str, expected: tuple[int, str]
) -> None:
    """INP-13: ops and fields the protocol does not define are refused (mass assignment)."""
    code, reason, reply = await _refused(target, text)
    assert (code, reason) == expected
    assert reply["id"] == 1


async def test_inp_14_binary_frame_is_unsupported(target: AttackTarget) -> None:
    """INP-14: a binary frame → 400 binary_unsupported; the connection stays usable."""
    session = await open_session(target, "alice")
    await session.raw.send(frame(OP_BINARY, b'{"id":1,"op":"ping"}'))
    reply = await session.receive(3.0)
    assert error_reason(reply) == (400, "binary_unsupported")
    assert "id" not in reply
    assert (await session.call("ping"))["ok"] is True


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        (frame(OP_TEXT, b'{"op":"ping"}', mask=False), 1002),
        (frame(OP_TEXT, b'{"op":"ping"}', rsv=2), 1002),
        (frame(0x3, b"x"), 1002),
        (frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), 1002),
        # Only the header of a 70 000-byte frame: refused at the length (no unread payload
        # turning the server's close into a reset).
        (bytes([0x81, 0xFF]) + struct.pack("!Q", 70_000), 1009),
        (frame(OP_TEXT, b'"\xff"'), 1007),
        (frame(OP_CLOSE, struct.pack("!H", 999)), 1002),
    ],
    ids=[
        "INP-15-unmasked",
        "INP-15-reserved-bits",
        "INP-15-opcode",
        "INP-15-interleaved",
        "INP-15-over-size",
        "INP-15-utf8",
        "INP-15-close-code",
    ],
)
async def test_inp_15_close_reasons_are_generic(
    target: AttackTarget, attack: bytes, code: int
) -> None:
    """INP-15: close reasons are codes.md's fixed phrases, never the parser's words (STEWS)."""
    session = await open_session(target, "alice")
    await session.raw.send(attack)
    got, reason, _ = await _close(session)
    assert (got, reason) == (code, GENERIC[code])
    assert not any(word in reason.lower() for word in LIBRARY_WORDS)
    assert not any(ch.isdigit() for ch in reason.replace("UTF-8", ""))  # no limits disclosed


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"id": 1, "op": "subscribe", "channel": "<script>alert(1)</script>"},
            (400, "bad_channel"),
        ),
        (
            {"id": 1, "op": "subscribe", "channel": "chat:<img src=1 onerror=alert(1)>"},
            (400, "bad_channel"),
        ),
        ({"id": 1, "op": "ping", "<script>alert(1)</script>": 1}, (400, "unknown_field")),
        ({"id": 1, "op": "<script>alert(1)</script>"}, (404, "unknown_op")),
        ({"id": 1, "op": "history", "channel": "chat:x", "limit": "<script>"}, (400, "bad_field")),
    ],
    ids=[
        "INP-16-channel",
        "INP-16-channel-img",
        "INP-16-field-name",
        "INP-16-op",
        "INP-16-field-value",
    ],
)
async def test_inp_16_errors_never_echo_the_input(
    target: AttackTarget, message: dict[str, Any], expected: tuple[int, str]
) -> None:
    """INP-16: an error reply's message never reflects the hostile input (reflected XSS)."""
    code, reason, reply = await _refused(target, orjson.dumps(message))
    assert (code, reason) == expected
    text = orjson.dumps(reply).decode()
    for marker in ("<script", "<img", "alert(", "onerror"):
        assert marker not in text, reply


async def test_inp_17_schema_violation_is_refused_and_not_delivered(target: AttackTarget) -> None:
    """INP-17: chat data the schema refuses → 422 invalid_data; nothing delivered or stored."""
    channel = _channel()
    bob = await _subscribed(target, "bob", channel)
    alice = await open_session(target, "alice")
    secret_value = "S3CRET-" + "x" * 600  # over maxLength 500
    for data in ({"text": secret_value}, {"text": 42}, {"text": ""}, ["<script>"], {"txt": "x"}):
        reply = await alice.call("publish", channel=channel, data=data)
        assert error_reason(reply) == (422, "invalid_data"), reply
        assert "S3CRET" not in reply["error"]["message"]
        assert "<script>" not in reply["error"]["message"]
    assert await bob.quiet(0.3) == []
    history = await bob.call("history", channel=channel)
    assert history["result"]["publications"] == []


@pytest.mark.parametrize(
    "channel",
    [
        "../../etc/passwd",
        "chat:../../etc/passwd",
        "chat:..\\..\\windows",
        "chat:%2e%2e%2fetc",
        "chat:a\x00b",
    ],
    ids=["INP-18-bare", "INP-18-chat", "INP-18-backslash", "INP-18-encoded", "INP-18-nul"],
)
async def test_inp_18_path_channels_are_bad_channel(target: AttackTarget, channel: str) -> None:
    """INP-18: a file path as channel → 400 bad_channel (CVE-2020-15779 class)."""
    code, reason, reply = await _refused(
        target, orjson.dumps({"id": 1, "op": "subscribe", "channel": channel})
    )
    assert (code, reason) == (400, "bad_channel")
    assert "etc" not in reply["error"]["message"]


class _Payload:
    """Unpickling it creates ``marker``: the observable side effect of a deserialization."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


async def test_inp_19_pickle_is_never_deserialized(target: AttackTarget, tmp_path: Path) -> None:
    """INP-19: pickle bytes get no special treatment (CVE-2025-61765, CVE-2018-1270 class)."""
    marker = tmp_path / "unpickled"
    blob = pickle.dumps(_Payload(marker))
    channel = _channel()
    bob = await _subscribed(target, "bob", channel)
    alice = await open_session(target, "alice")
    await alice.raw.send(frame(OP_BINARY, blob))
    assert error_reason(await alice.receive(3.0)) == (400, "binary_unsupported")
    # As text it is an opaque string: stored and delivered as such, never loaded.
    text = blob.decode("latin-1").encode().decode()
    reply = await alice.call("publish", channel=channel, data={"text": text[:400]})
    assert reply["ok"] is True, reply
    push = await bob.push("message", 3.0)
    assert isinstance(push["data"]["text"], str)
    assert not marker.exists()
