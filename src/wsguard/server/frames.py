"""The engine's fast path for ordinary frames, beside the websockets core.

Almost every frame a server reads is a whole, masked text or binary message of a few bytes to
a few KiB. websockets parses each one through four nested generators and a ``Frame`` object,
which costs more than the checks wsguard runs on the message. The listener reads those frames
itself (:func:`read_header`) and hands every other frame (control frames, fragments, reserved
bits or opcodes, unmasked or oversized frames, 64-bit lengths) to the core whole, so the core
still decides everything RFC 6455 §5 makes an error, with the same close codes.

The two parsers share one stream, so the listener switches to its own only when the core is
between two frames (:func:`core_between_frames`), and from then on feeds it whole frames only,
or the rest of the one frame it is reading.

Server frames are not masked (§5.1), so :func:`server_frame` is a header and the payload.
"""

from __future__ import annotations

from types import GeneratorType
from typing import Final

from websockets.protocol import Protocol
from websockets.streams import StreamReader

try:  # the core's C helper, as websockets itself picks it
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover (a build of websockets without its C extension)
    from websockets.utils import apply_mask

__all__ = [
    "BINARY",
    "FAST_MAX",
    "TEXT",
    "apply_mask",
    "core_between_frames",
    "read_header",
    "server_frame",
]

# First byte of a whole (FIN) text / binary frame with no reserved bit set.
TEXT: Final = 0x81
BINARY: Final = 0x82
# Frames the fast path reads itself carry a 7- or 16-bit length. A frame it has to wait for is
# held whole, so this also bounds what a connection holds outside the core.
FAST_MAX: Final = 0xFFFF

_AT_EOF: Final = StreamReader.at_eof.__code__
_PARSE: Final = Protocol.parse.__code__


def server_frame(first: int, payload: bytes) -> bytes:
    """An unmasked, unfragmented frame: ``first`` is FIN and the opcode (``TEXT``, ``BINARY``)."""
    length = len(payload)
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return bytes((first, 126, length >> 8, length & 0xFF)) + payload
    return bytes((first, 127)) + length.to_bytes(8, "big") + payload


def read_header(buf: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """Where the frame at ``buf[pos:]`` has its payload and where it ends, from its header:
    ``(payload_start, frame_end)``; ``None`` while the header itself is incomplete.

    Only sizes are read here; whether the frame is acceptable is for the caller (its own
    frames) or the core (everything else) to decide.
    """
    if end - pos < 2:
        return None
    second = buf[pos + 1]
    length = second & 0x7F
    head = pos + 2
    if length == 126:
        if end - pos < 4:
            return None
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        head = pos + 4
    elif length == 127:
        if end - pos < 10:
            return None
        length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
        head = pos + 10
    if second & 0x80:
        head += 4  # the masking key
    return head, head + length


def core_between_frames(proto: Protocol) -> bool:
    """Whether the core's frame parser is waiting for the first byte of a frame, with nothing
    buffered: the only point where the listener may start reading frames itself.

    It looks at the parser's generator chain (websockets' ``parse`` suspended in
    ``StreamReader.at_eof``). Should a websockets release lay that out differently, this
    answers False and every frame keeps going through the core: slower, still correct.
    """
    gen: object = proto.parser
    outer: GeneratorType[object, object, object] | None = None
    while isinstance(gen, GeneratorType):
        inner = gen.gi_yieldfrom
        if inner is None:
            break
        outer, gen = gen, inner
    return (
        isinstance(gen, GeneratorType)
        and gen.gi_code is _AT_EOF
        and outer is not None
        and outer.gi_code is _PARSE
        and not proto.reader.buffer
    )
