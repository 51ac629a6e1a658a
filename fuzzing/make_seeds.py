"""Write the seed corpora under fuzzing/corpus/ (valid and hostile examples per harness).

Run from the repository root: ``python fuzzing/make_seeds.py``. Deterministic: the seeds carry
the credentials harness_fixtures mints, so rerun it when those change.
"""

from __future__ import annotations

import base64
from pathlib import Path

from fuzz_frames import mask
from harness_fixtures import COOKIES, CSRF, JWTS, PASSWORD, TICKETS

CORPUS = Path(__file__).parent / "corpus"


def _request(target: str = "/ws", *extra: str, host: str = "app.example.com",
             origin: str = "https://app.example.com") -> bytes:  # fmt: skip
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        f"Origin: {origin}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


BASIC = "Basic " + base64.b64encode(b"alice:" + PASSWORD.encode()).decode()

SEEDS: dict[str, dict[str, bytes]] = {
    "codec": {
        "object": b'{"op":"publish","channel":"chat:room","data":{"text":"hi","n":[1,2.5,-3e2]}}',
        "duplicate": b'{"a":1,"a":2}',
        "escaped-duplicate": b'{"a\\"b":1,"a\\u0022b":2}',
        "escaped-quotes": b'{"q":"say \\"hi\\"","r":"\\\\"}',
        "deep": b'{"a":' * 33 + b"1" + b"}" * 33,
        "big-int": b'{"n":9007199254740992}',
        "huge-int": b'{"n":123456789012345678901234567890}',
        "infinity": b'{"n":1e400}',
        "nan": b'{"n":NaN}',
        "proto": b'{"x":{"__proto__":{"admin":true}}}',
        "array-top": b"[1,2,3]",
        "unicode": '{"é":"\u2028\\ud83d\\ude00"}'.encode(),
        "lone-surrogate": b'{"s":"\\ud800"}',
    },
    "envelope": {
        "subscribe": b'{"id":1,"op":"subscribe","channel":"chat:room","since":{"epoch":"e1","offset":3}}',  # noqa: E501
        "publish": b'{"id":"a1","op":"publish","channel":"chat:room","data":null}',
        "history": b'{"op":"history","channel":"chat:room","limit":1000}',
        "rpc": b'{"id":9007199254740991,"op":"rpc","method":"math.add","data":[1,2]}',
        "auth": b'{"op":"auth","token":"x.y.z"}',
        "refresh-both": b'{"op":"refresh","token":"a","ticket":"b"}',
        "unknown-field": b'{"op":"ping","user":"admin"}',
        "bad-channel": b'{"op":"presence","channel":"chat room"}',
        "bad-id": b'{"id":-1,"op":"ping"}',
        "unknown-op": b'{"id":2,"op":"drop_tables"}',
    },
    "handshake": {
        "valid-ticket": _request("/ws?ticket=" + TICKETS["alice"]),
        "valid-jwt": _request("/ws", "Authorization: Bearer " + JWTS["alice"]),
        "valid-cookie": _request(
            "/ws?csrf=" + CSRF["alice"], "Cookie: theme=dark; session=" + COOKIES["alice"]
        ),
        "valid-basic": _request("/ws", "Authorization: " + BASIC),
        "valid-wildcard": _request(
            "/ws", host="a.b.example.com:8443", origin="https://a.b.example.com:8443"
        ),
        "valid-loopback": _request("/ws", host="127.0.0.1:8080", origin="http://127.0.0.1:8080"),
        "proxy": _request("/ws", "X-Forwarded-Proto: https", "X-Forwarded-For: 198.51.100.2"),
        "duplicate-origin": _request("/ws", "Origin: https://evil.test"),
        "origin-suffix": _request("/ws", origin="https://app.example.com.evil.test"),
        "origin-null": _request("/ws", origin="null"),
        "host-userinfo": _request("/ws", host="app.example.com@evil.test"),
        "host-ipv6": _request("/ws", host="[::1]:8080", origin="http://[::1]:8080"),
        "smuggling": _request("/ws", "Transfer-Encoding: chunked", "Content-Length: 5"),
        "obs-fold": _request("/ws", "X-A: a\r\n b"),
        "http10": b"GET /ws HTTP/1.0\r\nHost: app.example.com\r\n\r\n",
        "healthz": b"GET /healthz HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
        "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        # A refused frame pipelined behind the head (the crash tests/unit/test_listener.py pins).
        "pipelined-bad-frame": _request("/ws", origin="https://evil.test") + b"\xff\x00",
    },
    "frames": {
        "text": mask(1, b'{"id":1,"op":"ping"}'),
        "fragmented": mask(1, b'{"op":', fin=False) + mask(9, b"p") + mask(0, b'"ping"}'),
        "binary": mask(2, b"\x00\x01\x02"),
        "ping-flood": mask(9, b"x") * 12,
        "close": mask(8, b"\x03\xe8bye"),
        "close-bad-code": mask(8, b"\x03\xedx"),
        "close-empty": mask(8, b""),
        "bad-utf8": mask(1, b"\xc3\x28"),
        "bad-utf8-split": mask(1, b"\xe2\x82", fin=False) + mask(0, b"\x28"),
        "too-big": mask(1, b"a" * 2100),
        "too-many-fragments": mask(1, b"a", fin=False) + mask(0, b"b", fin=False) * 9,
        "unmasked": b"\x81\x02hi",
        "reserved-opcode": mask(3, b""),
        "rsv1-deflate": mask(1, bytes.fromhex("f248cdc9c90700"), rsv1=True),
        "continuation-first": mask(0, b"x"),
        "long-ping": mask(9, b"p" * 126),
    },
    "credentials": {
        "ticket": TICKETS["alice"].encode(),
        "ticket-other-origin": TICKETS["bob-other-origin"].encode(),
        "ticket-expired": TICKETS["carol-expired"].encode(),
        "ticket-in-query": b"\x00ticket=" + TICKETS["alice"].encode(),
        "ticket-twice": b"\x00ticket=a&ticket=b",
        "jwt": JWTS["alice"].encode(),
        "bearer": b"Bearer " + JWTS["bob"].encode(),
        "jwt-audience": JWTS["dave-audience"].encode(),
        "jwt-none": b"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
        b"eyJzdWIiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OX0.",
        "cookie": f"session={COOKIES['alice']}\x00csrf={CSRF['alice']}".encode(),
        "cookie-twice": f"session={COOKIES['alice']}; session=x\x00csrf=y".encode(),
        "cookie-expired": f"session={COOKIES['erin-expired']}\x00csrf={CSRF['erin']}".encode(),
        "basic": BASIC.encode(),
        "basic-wrong": b"Basic " + base64.b64encode(b"alice:guess"),
    },
}


def main() -> None:
    for name, seeds in SEEDS.items():
        folder = CORPUS / name
        folder.mkdir(parents=True, exist_ok=True)
        for seed, data in seeds.items():
            (folder / seed).write_bytes(data)


if __name__ == "__main__":
    main()
