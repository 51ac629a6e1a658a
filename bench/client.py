"""Load client for the WebSocket engine benchmark.

Talks only to 127.0.0.1 / localhost (refuses other URLs). Every mode is bounded in time and
count and exits by itself. Every request carries `Host: 127.0.0.1:PORT` (taken from the URL)
and, with the default `--proto plain`, no Origin header.

--proto says how the benchmark's messages are wrapped (class Proto and subclasses):
  plain     the message itself, on /echo and /bcast ("BCAST K [B]" triggers a fan-out of K
            rounds, B per server loop pass)
  wsguard   wsguard's wire protocol on /ws, for the wsguard-full config: the handshake carries
            `Origin: http://HOST:PORT` and `Authorization: Bearer <JWT>` (HS256, minted here
            from the secret in $WSGUARD_BENCH_JWT_SECRET); echo requests are rpc `echo`
            envelopes whose frame payload is --size bytes, the reply is counted (its own size);
            the `welcome` push and other pushes are skipped; broadcast subscribers subscribe to
            `bench:fanout` and count `message` pushes; the trigger is rpc `bench.bcast` {"k": K}
            ({"k": K, "b": B} when --batch B > 1); with --publish-ops (a server that runs no
            application code, e.g. `wsguard serve --workers N`), the control connection
            publishes the K rounds itself: K `publish` ops of a 100-character string to
            `bench:fanout`, written as fast as the socket takes them
  socketio  Engine.IO v4 / Socket.IO over a WebSocket (/socket.io/?EIO=4&transport=websocket):
            open packet `0{...}` answered with `40`, then `42["echo","..."]` events sized to
            --size bytes; server pings `2` answered with `3`; trigger `42["bcast",K]`
            (`42["bcast",{"k":K,"b":B}]` when --batch B > 1)
Replies carrying `"ok":false` (wsguard) are counted as errors, and each result carries one
sample reply (`sample_reply`) to check by eye.
Output protocol (stdout, one line each):
  MARK <name> {json}   progress marks (the orchestrator samples server CPU/RSS on them)
  RESULT {json}        final result

Modes:
  echo     --conns N --size S [--binary] --window W --duration D
           default: raw pipelined client on uvloop (pre-masked frames, one write per read);
           --client picows: picows client on uvloop, one send per echoed message (plain only)
  latency  --conns N --rate R --duration D         (picows on uvloop, 64-byte text, fixed rate)
  bcast    --conns N --target-seconds T [--poll-ms P] [--batch B]
           default: epoll receiver on plain sockets; --client picows: picows on uvloop;
           the server publishes B rounds per loop pass (default 1);
           --publish-ops (--proto wsguard): the control connection publishes instead
  idle     --conns N --hold H                      (N idle connections opened by a raw
           client on uvloop, `--concurrency` handshakes in flight; picows warms up first)
  idlecpu  --conns N --hold H                      (picows on uvloop; N idle connections,
           MARK start 1 s after the last one is open, MARK end H s later, no traffic between:
           the orchestrator reads the server's CPU time on the two marks)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import sys
import time
from urllib.parse import urlsplit

import uvloop
from picows import WSCloseCode, WSListener, WSMsgType, ws_connect

TEXT, BINARY = WSMsgType.TEXT, WSMsgType.BINARY
perf = time.perf_counter
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
JWT_SECRET_ENV = "WSGUARD_BENCH_JWT_SECRET"  # noqa: S105 - a variable name (see servers.py)
OK_FALSE = b'"ok":false'


# ------------------------------------------------------------------ application protocols
def plain_trigger(k, b=1):
    """ "BCAST K" (one publication per server loop pass) or "BCAST K B" (B per pass)."""
    return f"BCAST {k}".encode() if b == 1 else f"BCAST {k} {b}".encode()


class Proto:
    """plain: the benchmark's messages as they are."""

    name = "plain"
    echo_path = "/echo"
    bcast_path = "/bcast"
    needs_open = False  # True: the connection is usable only after a protocol-level open

    def __init__(self, host, port):
        self.hostport = f"{host}:{port}"

    def headers(self):
        return []

    def echo_payload(self, size):
        return b"x" * size

    def reply_size(self, size):
        return size

    def trigger(self, k, b=1):
        return plain_trigger(k, b)

    def lat_payload(self, seq):
        return b"%012d" % seq + b"y" * (64 - 12)

    def lat_seq(self, payload):
        return int(payload[:12])

    def warm_payload(self):
        return b"hello"

    def control(self, payload):
        """A frame that is not a reply: None (it is one), or (answer payload or None, opened)."""
        return None


class WsguardProto(Proto):
    name = "wsguard"
    echo_path = bcast_path = "/ws"
    ECHO_HEAD = b'{"id":1,"op":"rpc","method":"echo","data":{"text":"'
    REPLY_HEAD = b'{"id":1,"ok":true,"result":{"text":"'
    TAIL = b'"}}'

    def __init__(self, host, port):
        super().__init__(host, port)
        import jwt  # PyJWT, a wsguard dependency

        secret = os.environ.get(JWT_SECRET_ENV)
        if not secret:
            sys.exit(f"--proto wsguard needs the HS256 secret in ${JWT_SECRET_ENV}")
        now = int(time.time())
        claims = {"sub": "bench", "aud": "wsguard-bench", "iss": "wsguard-bench"}
        claims.update(iat=now, exp=now + 3600)
        self.token = jwt.encode(claims, secret, algorithm="HS256")

    def headers(self):
        return [
            ("Origin", f"http://{self.hostport}"),
            ("Authorization", f"Bearer {self.token}"),
        ]

    def _text_len(self, size):
        n = size - len(self.ECHO_HEAD) - len(self.TAIL)
        if n < 10:
            sys.exit(f"--proto wsguard: --size must be at least {size - n + 10}")
        return n

    def echo_payload(self, size):
        return self.ECHO_HEAD + b"x" * self._text_len(size) + self.TAIL

    def reply_size(self, size):
        return len(self.REPLY_HEAD) + self._text_len(size) + len(self.TAIL)

    def trigger(self, k, b=1):
        if b == 1:
            return b'{"id":2,"op":"rpc","method":"bench.bcast","data":{"k":%d}}' % k
        return b'{"id":2,"op":"rpc","method":"bench.bcast","data":{"k":%d,"b":%d}}' % (k, b)

    def lat_payload(self, seq):
        return self.ECHO_HEAD + b"%010d" % seq + b"y" * (self._text_len(64) - 10) + self.TAIL

    def lat_seq(self, payload):
        i = payload.find(b'"text":"')
        if i < 0 or OK_FALSE in payload:
            return None
        return int(payload[i + 8 : i + 18])

    def warm_payload(self):
        return b'{"id":1,"op":"ping"}'

    def publish_wire(self, k):
        """K masked `publish` frames, each one round of the fan-out (--publish-ops)."""
        data = b"b" * 100  # the server's PAYLOAD_100, within the channel's schema
        op = b'{"id":3,"op":"publish","channel":"bench:fanout","data":"' + data + b'"}'
        return masked_frame(1, op) * k

    def control(self, payload):
        if payload.startswith(b'{"push"'):
            return None, False
        return None


class SocketioProto(Proto):
    name = "socketio"
    echo_path = bcast_path = "/socket.io/?EIO=4&transport=websocket"
    needs_open = True
    HEAD = b'42["echo","'
    TAIL = b'"]'

    def echo_payload(self, size):
        return self.HEAD + b"x" * (size - len(self.HEAD) - len(self.TAIL)) + self.TAIL

    def trigger(self, k, b=1):
        if b == 1:
            return b'42["bcast",%d]' % k
        return b'42["bcast",{"k":%d,"b":%d}]' % (k, b)

    def lat_payload(self, seq):
        return self.echo_payload(64)[:11] + b"%012d" % seq + self.echo_payload(64)[23:]

    def lat_seq(self, payload):
        return int(payload[11:23])

    def warm_payload(self):
        return self.echo_payload(16)

    def control(self, payload):
        if payload == b"2":  # Engine.IO ping: answer pong
            return b"3", False
        if payload[:1] == b"0":  # open packet: connect to the default namespace
            return b"40", False
        if payload[:2] == b"40":  # namespace connected
            return None, True
        if payload[:2] == b"41" or payload[:2] == b"44":  # disconnect / connect error
            raise ConnectionError(f"socket.io refused: {payload[:200]!r}")
        return None


PROTOS = {"plain": Proto, "wsguard": WsguardProto, "socketio": SocketioProto}


def make_proto(a):
    u = urlsplit(a.url)
    return PROTOS[a.proto](u.hostname, u.port)


def mark(name, **kw):
    print("MARK", name, json.dumps(kw), flush=True)


def result(d):
    print("RESULT", json.dumps(d), flush=True)


async def wait_until(cond, max_wait_s, step=0.01):
    """Poll `cond()` every `step` seconds for at most `max_wait_s` seconds; return `cond()`."""
    for _ in range(max(1, int(max_wait_s / step))):
        if cond():
            return True
        await asyncio.sleep(step)
    return bool(cond())


class Stats:
    def __init__(self):
        self.count = 0
        self.nbytes = 0
        self.errors = 0
        self.running = True
        self.target = 0
        self.fut = None
        self.error_replies = 0
        self.sample = None


async def connect_many(url, n, factory, concurrency, deadline_s=120.0, headers=None):
    sem = asyncio.Semaphore(concurrency)
    out = [None] * n
    failures = [0]
    t_end = perf() + deadline_s

    async def one(i):
        async with sem:
            last = None
            for _ in range(5):
                if perf() > t_end:
                    break
                try:
                    conn = await ws_connect(
                        factory,
                        url,
                        websocket_handshake_timeout=15,
                        max_frame_size=1 << 21,
                        extra_headers=headers or None,
                    )
                    # picows returns normally when the server drops the connection before
                    # answering the handshake: only a 101 response counts as connected.
                    t = conn[0]
                    if t.is_disconnected or t.response is None or t.response.status != 101:
                        raise ConnectionError("connection dropped before the handshake completed")
                    out[i] = conn
                except Exception as e:  # retry a few times, then give up
                    last = e
                    failures[0] += 1
                    await asyncio.sleep(0.05)
                else:
                    return
            raise RuntimeError(f"connect failed: {last!r}")

    await asyncio.gather(*(one(i) for i in range(n)))
    return out, failures[0]


async def close_all(conns):
    for c in conns:
        if c is None:
            continue
        t = c[0]
        with contextlib.suppress(Exception):
            t.send_close(WSCloseCode.OK)
            t.disconnect()
    await asyncio.sleep(0.2)


# ------------------------------------------------------------------ echo (picows client)
class EchoListener(WSListener):
    def __init__(self, st, mt, payload, size):
        self.st, self.mt, self.payload, self.size = st, mt, payload, size
        self.inflight = 0
        self.t = None

    def on_ws_connected(self, t):
        self.t = t

    def on_ws_frame(self, t, frame):
        mt = frame.msg_type
        if mt is TEXT or mt is BINARY:
            st = self.st
            st.count += 1
            if frame.payload_size != self.size:
                st.errors += 1
            if st.running:
                t.send(self.mt, self.payload)
            else:
                self.inflight -= 1

    def kick(self, window):
        for _ in range(window):
            self.t.send(self.mt, self.payload)
        self.inflight = window


async def run_echo(a):
    st = Stats()
    mt = BINARY if a.binary else TEXT
    payload = b"x" * a.size
    conns, fails = await connect_many(
        a.url + "/echo", a.conns, lambda: EchoListener(st, mt, payload, a.size), 64
    )
    listeners = [c[1] for c in conns]
    for lst in listeners:
        lst.kick(a.window)
    await asyncio.sleep(a.warmup)
    c0, p0, t0 = st.count, time.process_time(), perf()
    mark("start", t=time.time())
    await asyncio.sleep(a.duration)
    c1, p1, t1 = st.count, time.process_time(), perf()
    mark("end", t=time.time())
    st.running = False
    # drain in-flight messages (bounded)
    await wait_until(lambda: all(lst.inflight <= 0 for lst in listeners), 3.0)
    lost = sum(max(lst.inflight, 0) for lst in listeners)
    await close_all(conns)
    n = c1 - c0
    dt = t1 - t0
    result(
        {
            "mode": "echo",
            "client": "picows",
            "conns": a.conns,
            "size": a.size,
            "binary": a.binary,
            "window": a.window,
            "msgs": n,
            "seconds": dt,
            "msgs_per_s": n / dt,
            "mbytes_per_s": n * a.size / dt / 1e6,
            "client_cpu": (p1 - p0) / dt,
            "errors": st.errors,
            "undrained": lost,
            "connect_retries": fails,
        }
    )


# ------------------------------------------------------------------ raw pipelined echo client
# A minimal RFC 6455 client used for the echo-throughput tests: it pre-builds masked frames,
# and when a read delivers n echoed frames it answers with ONE write of n new frames. Its
# per-message cost is far below any server's, so the server (pinned to its own core) is the
# bottleneck. Server frames are fully parsed (lengths, opcodes); a server PING is answered
# with a PONG.
def masked_frame(opcode, payload, mask=b"\x12\x34\x56\x78"):
    n = len(payload)
    if n < 126:
        hdr = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        hdr = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        hdr = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    if not n:
        return hdr + mask
    m = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")
    return hdr + mask + body


def frame_bounds(buf, pos, end_buf):
    """(header length, payload length) of the server frame starting at buf[pos] (at least two
    bytes there), or None while its extended length is still to come."""
    b1 = buf[pos + 1] & 0x7F
    if b1 < 126:
        return 2, b1
    if b1 == 126:
        if end_buf - pos < 4:
            return None
        return 4, (buf[pos + 2] << 8) | buf[pos + 3]
    if end_buf - pos < 10:
        return None
    return 10, int.from_bytes(buf[pos + 2 : pos + 10], "big")


def ws_key():
    """(Sec-WebSocket-Key, expected Sec-WebSocket-Accept)."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + GUID, usedforsecurity=False).digest())
    return key, accept


def upgrade_request(host, path, key, headers=()):
    # Host is "127.0.0.1:PORT" (wsguard's Host check accepts it on a loopback-bound server);
    # no Origin header unless the protocol adds one (wsguard-full: Origin + Authorization).
    extra = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers)
    return (
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )


def check_upgrade(head, accept):
    status_line = head.split(b"\r\n", 1)[0]
    return b" 101 " in status_line and accept in head


class RawUpgrade(asyncio.Protocol):
    """A raw client connection's opening: it writes a pre-built upgrade request on connect;
    `ready` fails if the connection is lost before the upgrade."""

    def __init__(self, path, host, proto):
        self.proto = proto
        key, self.accept = ws_key()
        self.req = upgrade_request(host, path, key, proto.headers())
        self.ready = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.t = None

    def connection_made(self, t):
        self.t = t
        t.write(self.req)

    def connection_lost(self, exc):
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("lost before upgrade"))


class RawEcho(RawUpgrade):
    def __init__(self, st, opcode, size, window, host, proto):
        super().__init__(proto.echo_path, host, proto)
        self.st, self.window = st, window
        # the expected size of a reply frame's payload (the request's, except for wsguard)
        self.size = proto.reply_size(size)
        self.check_ok = proto.name == "wsguard"
        self.frame = masked_frame(opcode, proto.echo_payload(size) if opcode == 1 else b"x" * size)
        self.batches = [self.frame * i for i in range(window + 1)]
        self.buf = bytearray()
        self.inflight = 0

    def kick(self):
        self.t.write(self.batches[self.window])
        self.inflight = self.window

    def data_received(self, data):
        buf = self.buf
        buf += data
        st = self.st
        if not self.upgraded:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(buf[:i])
            del buf[: i + 4]
            if not check_upgrade(head, self.accept):
                self.ready.set_exception(ConnectionError(head[:200]))
                return
            self.upgraded = True
            if not self.proto.needs_open:
                self.ready.set_result(None)
        elif self.check_ok and OK_FALSE in data:
            st.error_replies += data.count(OK_FALSE)
        end_buf = len(buf)
        pos = 0
        n = 0
        size = self.size
        want_sample = st.sample is None
        while end_buf - pos >= 2:
            bounds = frame_bounds(buf, pos, end_buf)
            if bounds is None:
                break
            hl, plen = bounds
            end = pos + hl + plen
            if end > end_buf:
                break
            op = buf[pos] & 0x0F
            if op in (1, 2):
                if plen == size:
                    n += 1
                    if want_sample:
                        st.sample = bytes(buf[pos + hl : end])
                        want_sample = False
                else:
                    n += self.odd_frame(bytes(buf[pos + hl : end]))
            elif op == 9:
                self.t.write(masked_frame(10, bytes(buf[pos + hl : end])))
            elif op == 8 and st.running:
                st.errors += 1
            pos = end
        if pos:
            del buf[:pos]
        if n:
            st.count += n
            if st.running:
                w = self.window
                while n > w:
                    self.t.write(self.batches[w])
                    n -= w
                self.t.write(self.batches[n])
            else:
                self.inflight -= n

    def odd_frame(self, payload):
        """A data frame of another size than a reply: a protocol frame (0) or a bad reply (1)."""
        ctl = self.proto.control(payload)
        if ctl is None:
            if not (self.check_ok and OK_FALSE in payload):  # else counted in error_replies
                self.st.errors += 1
            if self.st.sample is None:
                self.st.sample = payload
            return 1
        answer, opened = ctl
        if answer is not None:
            self.t.write(masked_frame(1, answer))
        if opened and not self.ready.done():
            self.ready.set_result(None)
        return 0


class RawIdle(RawUpgrade):
    """An idle connection of the handshake test: a pre-built upgrade request, the 101 checked
    (status and Sec-WebSocket-Accept), then every frame read and dropped, except that pings
    get their pong and the protocol's own opening is answered (socket.io's 40).

    The picows client cost about as much CPU per handshake as the fastest servers here (both
    cores were ~85 % busy at ~4,000 handshakes/s), so it, not the server, bounded the rate."""

    def __init__(self, path, host, proto):
        super().__init__(path, host, proto)
        self.buf = b""

    def close(self):
        if self.t is not None and not self.t.is_closing():
            self.t.write(masked_frame(8, b"\x03\xe8"))
            self.t.close()

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                self.buf = buf
                return
            if not check_upgrade(buf[:i], self.accept):
                self.ready.set_exception(ConnectionError(buf[:200]))
                self.t.abort()
                return
            self.upgraded = True
            self.ready.set_result(None)
            buf = buf[i + 4 :]
        frames = split_frames(buf)
        for op, payload, _end in frames:
            if op == 1:
                ctl = self.proto.control(payload)
                if ctl is not None and ctl[0] is not None:
                    self.t.write(masked_frame(1, ctl[0]))
            elif op == 9:
                self.t.write(masked_frame(10, payload))
        self.buf = buf[frames[-1][2] :] if frames else buf


async def raw_connect_many(url, proto, n, concurrency, deadline_s=120.0):
    """N RawIdle connections, `concurrency` handshakes in flight (a worker each); a failed
    one is retried up to 5 times. Returns (protocols, failures)."""
    u = urlsplit(url)
    host, port = u.hostname, u.port
    path = u.path + (f"?{u.query}" if u.query else "")
    hostport = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    out = []
    failures = 0
    t_end = perf() + deadline_s
    todo = iter(range(n))

    async def worker():
        nonlocal failures
        for _ in todo:
            last = None
            for _attempt in range(5):
                if perf() > t_end:
                    break
                t = None
                try:
                    t, p = await asyncio.wait_for(
                        loop.create_connection(lambda: RawIdle(path, hostport, proto), host, port),
                        15,
                    )
                    await asyncio.wait_for(p.ready, 15)
                except Exception as e:  # retry a few times, then give up
                    if t is not None:
                        t.abort()  # connected, but no 101 in time: not left open
                    last = e
                    failures += 1
                    await asyncio.sleep(0.05)
                else:
                    out.append(p)
                    break
            else:
                raise RuntimeError(f"connect failed: {last!r}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out, failures


def sample_text(st):
    return None if st.sample is None else st.sample[:300].decode("utf-8", "replace")


async def run_echo_raw(a):
    st = Stats()
    u = urlsplit(a.url)
    host, port = u.hostname, u.port
    opcode = 2 if a.binary else 1
    proto = make_proto(a)
    if a.binary and proto.name != "plain":
        sys.exit(f"--proto {proto.name} carries text messages only (no --binary)")
    loop = asyncio.get_running_loop()
    protos = []
    for _ in range(a.conns):
        _t, p = await asyncio.wait_for(
            loop.create_connection(
                lambda: RawEcho(st, opcode, a.size, a.window, f"{host}:{port}", proto),
                host,
                port,
            ),
            15,
        )
        await asyncio.wait_for(p.ready, 15)
        protos.append(p)
    for p in protos:
        p.kick()
    await asyncio.sleep(a.warmup)
    c0, p0, t0 = st.count, time.process_time(), perf()
    mark("start", t=time.time())
    await asyncio.sleep(a.duration)
    c1, p1, t1 = st.count, time.process_time(), perf()
    mark("end", t=time.time())
    st.running = False
    await wait_until(lambda: all(p.inflight <= 0 for p in protos), 3.0)
    lost = sum(max(p.inflight, 0) for p in protos)
    close = masked_frame(8, (1000).to_bytes(2, "big"))
    for p in protos:
        p.t.write(close)
    await asyncio.sleep(0.2)
    for p in protos:
        p.t.close()
    n = c1 - c0
    dt = t1 - t0
    result(
        {
            "mode": "echo",
            "client": "raw",
            "proto": proto.name,
            "conns": a.conns,
            "size": a.size,
            "reply_size": protos[0].size,
            "binary": a.binary,
            "window": a.window,
            "msgs": n,
            "seconds": dt,
            "msgs_per_s": n / dt,
            "mbytes_per_s": n * a.size / dt / 1e6,
            "client_cpu": (p1 - p0) / dt,
            "errors": st.errors + st.error_replies,
            "error_replies": st.error_replies,
            "sample_reply": sample_text(st),
            "undrained": lost,
            "connect_retries": 0,
        }
    )


# ------------------------------------------------------------------ raw broadcast receiver
# Plain non-blocking sockets + epoll, no asyncio. The receiver polls every --poll-ms
# milliseconds and then drains every readable socket, so each recv() returns many frames;
# frames of the expected shape are counted with C-speed slicing (no Python loop per frame).
# This keeps the one-core client well below the server's cost, so the fan-out number is the
# server's. Waiting between polls does not change what the server does: its writes land in
# socket buffers that hold far more than one poll period of data.
def split_frames(buf):
    """[(opcode, payload, end), ...] for the complete server frames in buf; end = the offset
    just past the frame."""
    out = []
    pos = 0
    while len(buf) - pos >= 2:
        b1 = buf[pos + 1] & 0x7F
        hl, plen = 2, b1
        if b1 == 126:
            hl, plen = 4, int.from_bytes(buf[pos + 2 : pos + 4], "big")
        elif b1 == 127:
            hl, plen = 10, int.from_bytes(buf[pos + 2 : pos + 10], "big")
        if len(buf) - pos < hl + plen:
            break
        pos += hl + plen
        out.append((buf[pos - hl - plen] & 0x0F, bytes(buf[pos - plen : pos]), pos))
    return out


def read_until(s, buf, pred, max_frames=1000):
    """Blocking: read server frames until pred(payload) is true; the bytes left after it.

    Frames before it are handled (pings answered) or dropped; "ok":false raises."""
    for _ in range(max_frames):
        frames = split_frames(buf)
        for op, payload, end in frames:
            if op == 9:
                s.sendall(masked_frame(10, payload))
            elif op == 8:
                raise ConnectionError(f"closed during setup: {payload[:100]!r}")
            elif OK_FALSE in payload:
                raise ConnectionError(f"setup refused: {payload[:300]!r}")
            elif pred(payload):
                return buf[end:]
        buf = buf[frames[-1][2] :] if frames else buf
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed during setup")
        buf += chunk
    raise ConnectionError("setup: too many frames")


def ws_handshake_sock(host, port, proto, path, timeout=15.0):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key, accept = ws_key()
    s.sendall(upgrade_request(f"{host}:{port}", path, key, proto.headers()))
    buf = b""
    for _ in range(1000):
        if b"\r\n\r\n" in buf:
            break
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed during handshake")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not check_upgrade(head, accept):
        raise ConnectionError(head[:200])
    if proto.name == "wsguard":
        # subscribe to the fan-out channel and wait for the reply (the welcome push first)
        s.sendall(masked_frame(1, b'{"id":1,"op":"subscribe","channel":"bench:fanout"}'))
        rest = read_until(s, rest, lambda p: p.startswith(b'{"id":1,"ok":true'))
    elif proto.name == "socketio":
        rest = read_until(s, rest, lambda p: p[:1] == b"0")
        s.sendall(masked_frame(1, b"40"))
        rest = read_until(s, rest, lambda p: p[:2] == b"40")
    s.setblocking(False)
    return s, rest


class FrameCounter:
    """Counts the broadcast's data frames per read.

    Fixed size (plain, socketio): every frame is `size` bytes of payload, checked with strided
    slices; anything else takes the frame-by-frame path. variable (wsguard): the `message`
    push carries an offset whose digit count varies, so every frame header is parsed (still one
    C-level startswith per frame) and only `{"push":"message"` frames are counted; other frames
    (replies, pushes) are skipped, and a reply with "ok":false counts as an error."""

    def __init__(self, size, variable=False, sio=False):
        self.size = size
        self.variable, self.sio = variable, sio
        self.first = 0x81
        self.second = size if size < 126 else 126
        self.flen = (2 if size < 126 else 4) + size
        self.left = {}
        self.errors = 0
        self.pings = []

    def feed(self, fd, data):
        """The number of complete data frames in data (+ the leftover bytes of fd)."""
        lo = self.left.pop(fd, None)
        if lo:
            data = lo + data
        if self.variable:
            return self._slow(fd, data)
        fl = self.flen
        n, rem = divmod(len(data), fl)
        if n and data[0::fl][:n].count(self.first) == n and data[1::fl][:n].count(self.second) == n:
            if rem:
                self.left[fd] = data[n * fl :]
            return n
        return self._slow(fd, data)

    def _slow(self, fd, buf):
        end_buf = len(buf)
        pos = 0
        n = 0
        while end_buf - pos >= 2:
            bounds = frame_bounds(buf, pos, end_buf)
            if bounds is None:
                break
            hl, plen = bounds
            end = pos + hl + plen
            if end > end_buf:
                break
            op = buf[pos] & 0x0F
            if op in (1, 2):
                if self.variable:
                    if buf.startswith(b'{"push":"message"', pos + hl):
                        n += 1
                    elif buf.find(OK_FALSE, pos + hl, end) >= 0:
                        self.errors += 1
                elif plen == self.size:
                    n += 1
                elif self.sio and plen == 1 and buf[pos + hl] == 0x32:  # Engine.IO ping "2"
                    self.pings.append((fd, masked_frame(1, b"3")))
                else:
                    n += 1
                    self.errors += 1
            elif op == 9:
                self.pings.append((fd, masked_frame(10, bytes(buf[pos + hl : end]))))
            pos = end
        if pos < end_buf:
            self.left[fd] = buf[pos:]
        return n


def run_bcast_epoll(a):
    u = urlsplit(a.url)
    host, port = u.hostname, u.port
    proto = make_proto(a)
    socks = {}
    fc = FrameCounter(100, variable=proto.name == "wsguard", sio=proto.name == "socketio")
    t_conn0 = perf()
    for _ in range(a.conns):
        s, rest = ws_handshake_sock(host, port, proto, proto.bcast_path)
        socks[s.fileno()] = s
        if rest:
            fc.left[s.fileno()] = rest
    connect_s = perf() - t_conn0
    ep = select.epoll()
    for fd in socks:
        ep.register(fd, select.EPOLLIN)
    ctl = next(iter(socks.values()))
    poll_s = a.poll_ms / 1000.0
    time.sleep(1.0)  # let the server register every subscriber

    def drain(quiet_s, max_s=10.0):
        # read everything that arrives until `quiet_s` passes with nothing readable
        got = 0
        t_stop = perf() + max_s
        t_end = perf() + quiet_s
        while perf() < min(t_end, t_stop):
            for fd, _ev in ep.poll(0.05):
                try:
                    d = socks[fd].recv(1 << 20)
                except BlockingIOError:
                    continue
                if d:
                    got += fc.feed(fd, d)
                    t_end = perf() + quiet_s
        return got

    def one_round(k, timeout):
        target = a.conns * k
        count = 0
        t0 = perf()
        if a.publish_ops:
            pending = proto.publish_wire(k)  # sent as the socket takes it, between reads
        else:
            pending = masked_frame(1, proto.trigger(k, a.batch))
        t_last = t0
        deadline = t0 + timeout
        while count < target and perf() < deadline:
            if pending:
                with contextlib.suppress(BlockingIOError):
                    pending = pending[ctl.send(pending) :]
            for fd, _ev in ep.poll(poll_s):
                try:
                    d = socks[fd].recv(1 << 20)
                except BlockingIOError:
                    continue
                if d:
                    count += fc.feed(fd, d)
            t_last = perf()
            if fc.pings:
                for fd, wire in fc.pings:
                    socks[fd].send(wire)
                fc.pings.clear()
            if count < target and poll_s > 0:
                time.sleep(poll_s)
        return count, t_last - t0, count >= target

    got, dt, ok = one_round(warm_k(a.batch), 30)
    warm_rate = got / dt if dt > 0 else 0
    k = int(warm_rate * a.target_seconds / a.conns)
    k = max(a.kmin, min(a.kmax, k))
    drain(0.3)
    p0 = time.process_time()
    mark("start", t=time.time())
    got, dt, ok = one_round(k, a.timeout)
    mark("end", t=time.time())
    p1 = time.process_time()
    extra = drain(0.3)
    close = masked_frame(8, (1000).to_bytes(2, "big"))
    for s in socks.values():
        with contextlib.suppress(OSError):
            s.send(close)
    time.sleep(0.3)
    for s in socks.values():
        s.close()
    ep.close()
    result(
        {
            "mode": "bcast",
            "client": "epoll",
            "proto": proto.name,
            "conns": a.conns,
            "k": k,
            "expected": a.conns * k,
            "received": got,
            "complete": ok,
            "seconds": dt,
            "deliveries_per_s": got / dt,
            "warm_rate": warm_rate,
            "poll_ms": a.poll_ms,
            "batch": a.batch,
            "client_cpu": (p1 - p0) / dt,
            "errors": fc.errors,
            "late_extra": extra,
            "connect_seconds": connect_s,
            "connect_retries": 0,
        }
    )


# ------------------------------------------------------------------ latency
class ProtoListener(WSListener):
    """A picows listener that handles the protocol's own frames (pushes, socket.io control)."""

    def __init__(self, proto, st=None):
        self.proto, self.st = proto, st
        self.opened = not proto.needs_open
        self.t = None

    def on_ws_connected(self, t):
        self.t = t

    def is_control(self, t, payload):
        ctl = self.proto.control(payload)
        if ctl is None:
            return False
        answer, opened = ctl
        if answer is not None:
            t.send(TEXT, answer)
        if opened:
            self.opened = True
        return True


async def open_all(conns, max_wait_s=15.0):
    """Wait until every connection finished the protocol's own opening (socket.io's 40)."""
    listeners = [c[1] for c in conns]
    if not await wait_until(lambda: all(lst.opened for lst in listeners), max_wait_s):
        raise RuntimeError("protocol open did not complete on every connection")


class LatListener(ProtoListener):
    def __init__(self, proto, st, sent, rtts):
        super().__init__(proto, st)
        self.sent, self.rtts = sent, rtts

    def on_ws_frame(self, t, frame):
        if frame.msg_type is TEXT or frame.msg_type is BINARY:
            now = perf()
            payload = frame.get_payload_as_bytes()
            if self.is_control(t, payload):
                return
            seq = self.proto.lat_seq(payload)
            if seq is None:
                self.st.errors += 1
                if self.st.sample is None:
                    self.st.sample = payload
                return
            if self.st.sample is None:
                self.st.sample = payload
            self.rtts.append((seq, now - self.sent[seq]))


async def run_latency(a):
    total = int(a.rate * (a.warmup + a.duration)) + 10
    sent = [0.0] * total
    rtts = []
    st = Stats()
    proto = make_proto(a)
    payloads = [proto.lat_payload(i) for i in range(total)]
    if len(payloads[0]) != 64 or len(payloads[-1]) != 64:
        sys.exit("latency payloads must be 64 bytes")
    conns, fails = await connect_many(
        a.url + proto.echo_path,
        a.conns,
        lambda: LatListener(proto, st, sent, rtts),
        64,
        headers=proto.headers(),
    )
    await open_all(conns)
    ts = [c[0] for c in conns]
    nconn = len(ts)
    start = perf()
    end = start + a.warmup + a.duration
    first_measured = int(a.rate * a.warmup)
    i = 0
    marked = False
    p0 = time.process_time()
    while True:
        now = perf()
        if now >= end:
            break
        if not marked and i >= first_measured:
            mark("start", t=time.time())
            marked = True
        due = min(int((now - start) * a.rate), total)
        while i < due:
            sent[i] = perf()
            ts[i % nconn].send(TEXT, payloads[i])
            i += 1
        # 1 ms tick (event-loop timer resolution): every message due is sent on each tick
        await asyncio.sleep(0.001)
    mark("end", t=time.time())
    p1 = time.process_time()
    await wait_until(lambda: len(rtts) >= i, 2.0)
    await close_all(conns)
    samples = sorted(r for s, r in rtts if s >= first_measured)
    nexp = i - first_measured

    def pct(p):
        if not samples:
            return None
        k = min(len(samples) - 1, round(p / 100.0 * (len(samples) - 1)))
        return samples[k] * 1e6

    result(
        {
            "mode": "latency",
            "proto": proto.name,
            "conns": a.conns,
            "rate": a.rate,
            "samples": len(samples),
            "lost": nexp - len(samples),
            "p50_us": pct(50),
            "p90_us": pct(90),
            "p99_us": pct(99),
            "p999_us": pct(99.9),
            "max_us": pct(100),
            "client_cpu": (p1 - p0) / (a.warmup + a.duration),
            "errors": st.errors,
            "sample_reply": sample_text(st),
            "connect_retries": fails,
        }
    )


# ------------------------------------------------------------------ broadcast (picows client)
class BcastListener(WSListener):
    def __init__(self, st):
        self.st = st

    def on_ws_connected(self, t):
        self.t = t

    def on_ws_frame(self, t, frame):
        if frame.msg_type is TEXT or frame.msg_type is BINARY:
            st = self.st
            st.count += 1
            if frame.payload_size != 100:
                st.errors += 1
            if st.count >= st.target and st.fut is not None and not st.fut.done():
                st.fut.set_result(perf())


def warm_k(b):
    """K of the warm-up (sizing) round: 10 as before, at least two passes of B rounds."""
    return max(10, 2 * b)


async def bcast_round(st, ctl, n, k, b, max_wait_s):
    loop = asyncio.get_running_loop()
    st.count = 0
    st.target = n * k
    st.fut = loop.create_future()
    t0 = perf()
    ctl.send(TEXT, plain_trigger(k, b))
    try:
        t1 = await asyncio.wait_for(asyncio.shield(st.fut), max_wait_s)
        complete = True
    except TimeoutError:
        t1 = perf()
        complete = False
    return st.count, t1 - t0, complete


async def run_bcast(a):
    st = Stats()
    conns, fails = await connect_many(a.url + "/bcast", a.conns, lambda: BcastListener(st), 100)
    await asyncio.sleep(1.0)  # let the server register every subscriber
    ctl = conns[0][0]
    # warm-up round sizes K so the measured round lasts about target-seconds
    got, dt, ok = await bcast_round(st, ctl, a.conns, warm_k(a.batch), a.batch, 30)
    warm_rate = got / dt if dt > 0 else 0
    k = int(warm_rate * a.target_seconds / a.conns)
    k = max(a.kmin, min(a.kmax, k))
    await asyncio.sleep(0.5)
    p0 = time.process_time()
    mark("start", t=time.time())
    got, dt, ok = await bcast_round(st, ctl, a.conns, k, a.batch, a.timeout)
    mark("end", t=time.time())
    p1 = time.process_time()
    await asyncio.sleep(0.3)
    extra = st.count - got
    await close_all(conns)
    result(
        {
            "mode": "bcast",
            "conns": a.conns,
            "k": k,
            "expected": a.conns * k,
            "received": got,
            "complete": ok,
            "seconds": dt,
            "deliveries_per_s": got / dt,
            "warm_rate": warm_rate,
            "batch": a.batch,
            "client_cpu": (p1 - p0) / dt,
            "errors": st.errors,
            "late_extra": extra,
            "connect_retries": fails,
        }
    )


# ------------------------------------------------------------------ idle / memory
class IdleListener(ProtoListener):
    def on_ws_frame(self, t, frame):
        if frame.msg_type is TEXT:
            payload = frame.get_payload_as_bytes()
            if self.is_control(t, payload) or self.st is None:
                return
            self.st.count += 1
            if OK_FALSE in payload:
                self.st.errors += 1
            if self.st.sample is None:
                self.st.sample = payload


async def run_idle(a):
    # phase 1: warm the server (allocator, caches) with short-lived connections
    st = Stats()
    proto = make_proto(a)
    url = a.url + proto.echo_path
    hdrs = proto.headers()
    warm, _ = await connect_many(
        url, a.warm_conns, lambda: IdleListener(proto, st), 50, headers=hdrs
    )
    await open_all(warm)
    for t, _lst in warm:
        t.send(TEXT, proto.warm_payload())
    await wait_until(lambda: st.count >= len(warm), 5.0)
    warm_replies = st.count
    await close_all(warm)
    await asyncio.sleep(0.5)
    mark("warm", t=time.time())
    await asyncio.sleep(a.hold)
    # phase 2: N idle connections, opened by the raw client (the measured handshakes)
    t0 = perf()
    conns, fails = await raw_connect_many(url, proto, a.conns, a.concurrency)
    dt = perf() - t0
    mark("connected", t=time.time(), n=len(conns))
    await asyncio.sleep(a.hold)
    for c in conns:
        c.close()
    await asyncio.sleep(0.5)
    result(
        {
            "mode": "idle",
            "proto": proto.name,
            "conns": a.conns,
            "connect_seconds": dt,
            "handshakes_per_s": a.conns / dt,
            "concurrency": a.concurrency,
            "warm_replies": warm_replies,
            "errors": st.errors + (len(warm) - min(warm_replies, len(warm))),
            "sample_reply": sample_text(st),
            "connect_retries": fails,
        }
    )


async def run_idlecpu(a):
    # N idle connections (authenticated / opened per --proto), then a hold with no traffic
    # from us: the orchestrator reads the server's CPU time on MARK start and MARK end.
    st = Stats()
    proto = make_proto(a)
    t0 = perf()
    conns, fails = await connect_many(
        a.url + proto.echo_path,
        a.conns,
        lambda: IdleListener(proto, st),
        a.concurrency,
        headers=proto.headers(),
    )
    await open_all(conns)
    dt = perf() - t0
    await asyncio.sleep(1.0)
    frames0 = st.count
    t1 = perf()
    mark("start", t=time.time(), n=len(conns))
    await asyncio.sleep(a.hold)
    mark("end", t=time.time())
    held = perf() - t1
    frames = st.count - frames0
    alive = sum(1 for t, _lst in conns if not t.is_disconnected)
    await close_all(conns)
    result(
        {
            "mode": "idlecpu",
            "proto": proto.name,
            "conns": a.conns,
            "alive_at_end": alive,
            "hold_seconds": held,
            "connect_seconds": dt,
            # frames (other than pings and protocol control) that reached us during the hold
            "frames_during_hold": frames,
            "errors": st.errors + (a.conns - alive),
            "sample_reply": sample_text(st),
            "connect_retries": fails,
        }
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["echo", "latency", "bcast", "idle", "idlecpu"])
    ap.add_argument("--url", default="ws://127.0.0.1:8765")
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--binary", action="store_true")
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--target-seconds", type=float, default=3.0)
    ap.add_argument("--kmin", type=int, default=20)
    ap.add_argument("--kmax", type=int, default=2000)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--hold", type=float, default=3.0)
    ap.add_argument("--warm-conns", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument(
        "--batch",
        type=int,
        default=1,
        help="bcast: rounds the server publishes per event-loop pass (1..1000)",
    )
    ap.add_argument(
        "--client",
        default="raw",
        choices=["raw", "picows"],
        help="echo and bcast modes: raw client (default) or picows",
    )
    ap.add_argument(
        "--proto",
        default="plain",
        choices=sorted(PROTOS),
        help="how messages are wrapped: plain, wsguard (wsguard-full), socketio",
    )
    ap.add_argument(
        "--poll-ms",
        type=float,
        default=10.0,
        help="bcast raw receiver: wait between epoll rounds (batches reads)",
    )
    ap.add_argument(
        "--publish-ops",
        action="store_true",
        help="bcast, --proto wsguard: the control connection publishes the rounds itself",
    )
    a = ap.parse_args()
    host = urlsplit(a.url).hostname or ""
    if not a.url.startswith("ws://") or not (host.startswith("127.") or host == "localhost"):
        sys.exit("loopback only: --url must be ws://127.x.x.x:PORT or ws://localhost:PORT")
    if not 0 < a.duration <= 60 or not 0 < a.conns <= 10000 or not 0 < a.hold <= 60:
        sys.exit("bounded loads only: --duration and --hold <= 60 s, --conns <= 10000")
    if not 1 <= a.batch <= 1000:
        sys.exit("--batch must be 1..1000")
    if a.proto != "plain" and a.client == "picows" and a.mode in ("echo", "bcast"):
        sys.exit("--client picows speaks --proto plain only (use the raw client)")
    if a.publish_ops and (a.mode != "bcast" or a.proto != "wsguard" or a.client != "raw"):
        sys.exit("--publish-ops is for bcast with --proto wsguard and the raw client")
    if a.mode == "bcast" and a.client == "raw":
        signal.alarm(300)  # hard stop for the synchronous receiver
        run_bcast_epoll(a)
        return
    fn = {
        "echo": run_echo_raw if a.client == "raw" else run_echo,
        "latency": run_latency,
        "bcast": run_bcast,
        "idle": run_idle,
        "idlecpu": run_idlecpu,
    }[a.mode]
    signal.alarm(330)  # hard stop even if the event loop wedges
    uvloop.run(asyncio.wait_for(fn(a), 300))


if __name__ == "__main__":
    main()
