"""The attack suite's harness: a real ``wsguard serve`` process, raw clients bound to their
own loopback source addresses, credential minting, and the canary of every DoS case.

Conventions (../shared/research/security-references.md §3):

- The trusted page origin is ``https://app.example.test``; the allowed ``Host`` values are
  ``app.example.test`` and ``app.example.test:8443``. Raw sockets send these headers
  themselves; no name resolution is involved.
- Every connection comes from its own source address in 127.0.0.0/8 (Linux routes the whole
  block to loopback), taken from ``next_ip()``. The per-IP limits (``handshake_rate``,
  ``max_connections_per_ip``) therefore stay at their production defaults: the suite never
  relaxes a secure default to make room for itself, and one case's refusals never leak into
  the next case's budget.
- Users: ``alice`` (tenant ``a``), ``bob`` (tenant ``b``), ``admin`` (role ``admin``).
- A DoS case runs inside ``async with canary(target):``. The canary, an authenticated client
  from its own address, does a ``ping`` round trip every 250 ms during the attack and for a
  while after it; on exit it asserts it was never disconnected, that its p99 round trip stayed
  under ``p99_limit`` seconds, that the server process lives, and that its RSS stayed under
  the baseline plus ``rss_budget`` bytes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import secrets
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from support.processes import free_port, stop
from support.rawws import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, HttpResponse, RawClient, frame
from wsguard import sessions, tickets
from wsguard.users import hash_password

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "attacks" / "attack.toml"

TRUSTED = "https://app.example.test"
HOST = "app.example.test"
AUDIENCE = "wss://app.example.test"
ISSUER = "https://auth.example.test/"
BASIC_PASSWORD = "correct horse battery staple"
USERS = {"alice": ("user",), "bob": ("user",), "admin": ("admin",)}
TENANTS = {"alice": "a", "bob": "b", "admin": "a"}

_TRIES = 5
_addresses = (f"127.{a}.{b}.{c}" for a in range(1, 255) for b in range(256) for c in range(1, 255))


def next_ip() -> str:
    """A loopback source address no earlier case has used."""
    return next(_addresses)


def rss_of(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _tenant(user: str) -> list[str]:
    tenant = TENANTS.get(user)
    return [f"tenant:{tenant}"] if tenant else []


def jwt_claims(user: str | None = "alice", *, ttl: float = 300.0, **changes: Any) -> dict[str, Any]:
    """The claims of a token the server accepts for ``user`` (its roles and tenant), valid for
    ``ttl`` seconds from now, with ``changes`` applied."""
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": user,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now,
        "exp": now + int(ttl),
        "roles": list(USERS.get(user or "", ())),
        "channels": _tenant(user or ""),
    }
    body.update(changes)
    return body


@dataclass
class AttackTarget:
    """A running ``wsguard serve`` with ``tests/attacks/attack.toml``.

    Attributes:
        port: the WebSocket listener.
        api_port: the internal HTTP API (publish, revoke, disconnect).
        proc: the server process.
        log_path: its stderr (JSON logs and the audit log).
        env: the secrets it was started with.
        signing_key: the RSA private key (PEM) that signs the JWTs the server accepts.
        public_key: its public half (PEM), the server's ``auth.jwt.public_key_file``.
        tls: a ``wss://`` listener; ``cafile`` verifies its certificate.
        client_cert: a client certificate (PEM: certificate then key) for user ``alice``,
            signed by the CA the server trusts for mTLS; ``None`` without TLS.
    """

    port: int
    api_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]
    signing_key: bytes
    public_key: bytes
    tls: bool = False
    cafile: Path | None = None
    client_cert: Path | None = None
    baseline_rss: int = 0
    folder: Path = field(default_factory=Path)

    # -- credentials -----------------------------------------------------------------------

    def ticket(
        self,
        user: str = "alice",
        *,
        origin: str = TRUSTED,
        ttl: float = 30.0,
        roles: Sequence[str] | None = None,
        channels: Sequence[str] | None = None,
        secret: bytes | None = None,
        now: float | None = None,
    ) -> str:
        """A one-time ticket as the backend would mint it (default roles/tenant of ``user``)."""
        return tickets.mint(
            user,
            origin,
            ttl=ttl,
            roles=USERS.get(user, ()) if roles is None else roles,
            channels=_tenant(user) if channels is None else channels,
            secret=secret or self.env["WSGUARD_TICKET_SECRET"].encode(),
            now=now,
        )

    def jwt(
        self,
        user: str | None = "alice",
        *,
        ttl: float = 300.0,
        key: bytes | str | None = None,
        algorithm: str = "RS256",
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """An RS256 token the server accepts; any claim can be overridden or removed (None)."""
        body = {k: v for k, v in jwt_claims(user, ttl=ttl, **claims).items() if v is not None}
        return jwt.encode(body, key or self.signing_key, algorithm=algorithm, headers=headers)

    def session(self, user: str = "alice", *, ttl: float = 3600.0) -> tuple[str, str]:
        """``(cookie value, csrf nonce)`` of a session as the application would issue it."""
        return sessions.issue_session(
            user,
            ttl=ttl,
            roles=USERS.get(user, ()),
            secret=self.env["WSGUARD_COOKIE_SECRET"].encode(),
        )

    @staticmethod
    def basic(user: str = "alice", password: str = BASIC_PASSWORD) -> str:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return f"Basic {token}"

    # -- the internal API ------------------------------------------------------------------

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the internal API with its key; ``(status, decoded JSON body)``."""
        headers = {"Authorization": f"Bearer {self.env['WSGUARD_API_KEY']}"}
        url = f"http://127.0.0.1:{self.api_port}{path}"
        async with (
            aiohttp.ClientSession() as client,
            client.request(method, url, json=body, headers=headers) as response,
        ):
            return response.status, orjson.loads(await response.read() or b"null")

    async def publish(self, channel: str, data: Any) -> Any:
        status, body = await self.api("POST", "/api/publish", {"channel": channel, "data": data})
        assert status == 200, body
        return body

    # -- the process -----------------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss(self) -> int:
        return rss_of(self.proc.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def audit_reasons(self, since: int = 0) -> list[str]:
        """The ``reason`` of every audit event logged after byte offset ``since``."""
        return [str(event["reason"]) for event in self.events(since) if "reason" in event]

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def events(self, since: int = 0) -> Iterator[dict[str, Any]]:
        """The JSON log events (audit and others) written after byte offset ``since``."""
        with self.log_path.open("rb") as handle:
            handle.seek(since)
            lines = handle.read().splitlines()
        for line in lines:
            with contextlib.suppress(orjson.JSONDecodeError):
                event = orjson.loads(line)
                if isinstance(event, dict):
                    yield event


# -- starting the server ---------------------------------------------------------------------


def _rsa_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def _users_file(path: Path) -> None:
    digest = hash_password(BASIC_PASSWORD)
    lines = []
    for user, roles in USERS.items():
        quoted = ", ".join(f'"{r}"' for r in roles)
        lines += [f'[users."{user}"]', f'hash = "{digest}"', f"roles = [{quoted}]", ""]
    path.write_text("\n".join(lines))
    path.chmod(0o600)


@contextlib.contextmanager
def serve(
    folder: Path, *, tls: bool = False, overrides: Sequence[str] = ()
) -> Iterator[AttackTarget]:
    """Run ``wsguard serve -c tests/attacks/attack.toml`` on free loopback ports.

    Only ports, key files and secrets are supplied from outside the file (``--set`` and the
    environment); with ``tls=True`` the listener also gets a trustme certificate for
    ``app.example.test``/``127.0.0.1``, a client CA, and the ``mtls`` method.
    """
    folder.mkdir(parents=True, exist_ok=True)
    private, public = _rsa_pair()
    (folder / "jwt-public.pem").write_bytes(public)
    _users_file(folder / "users.toml")
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "WSGUARD_TICKET_SECRET": secrets.token_urlsafe(48),
        "WSGUARD_COOKIE_SECRET": secrets.token_urlsafe(48),
        "WSGUARD_API_KEY": secrets.token_urlsafe(40),
    }
    sets = [
        f"auth.jwt.public_key_file={folder / 'jwt-public.pem'}",
        f"auth.basic.users_file={folder / 'users.toml'}",
    ]
    cafile = client_cert = None
    if tls:
        ca = trustme.CA()
        leaf = ca.issue_cert(HOST, "127.0.0.1")
        cert_file, key_file = folder / "cert.pem", folder / "key.pem"
        cafile = folder / "ca.pem"
        cert_file.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key_file))
        ca.cert_pem.write_to_path(str(cafile))
        client_ca = trustme.CA()
        client_ca.cert_pem.write_to_path(str(folder / "clients-ca.pem"))
        client_cert = folder / "alice-client.pem"
        client_ca.issue_cert(
            "alice", common_name="alice"
        ).private_key_and_cert_chain_pem.write_to_path(str(client_cert))
        sets += [
            f"server.tls_cert={cert_file}",
            f"server.tls_key={key_file}",
            f"server.tls_client_ca={folder / 'clients-ca.pem'}",
            'auth.methods=["ticket", "jwt", "cookie", "basic", "mtls"]',
            'origins.allowed_hosts=["app.example.test", "app.example.test:8443", "127.0.0.1"]',
        ]
    last = ""
    for attempt in range(_TRIES):
        port, api_port = free_port(), free_port()
        if port == api_port:
            continue
        log_path = folder / f"serve-{attempt}.log"
        command = [sys.executable, "-m", "wsguard.cli", "serve", "-c", str(CONFIG)]
        for item in [*sets, f"server.port={port}", f"api.port={api_port}", *overrides]:
            command += ["--set", item]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log)
        assert proc.stdout is not None
        try:
            line = proc.stdout.readline().decode()
            if line.startswith("wsguard listening on port "):
                target = AttackTarget(
                    port=port,
                    api_port=api_port,
                    proc=proc,
                    log_path=log_path,
                    env=env,
                    signing_key=private,
                    public_key=public,
                    tls=tls,
                    cafile=cafile,
                    client_cert=client_cert,
                    folder=folder,
                )
                time.sleep(0.2)
                target.baseline_rss = target.rss()
                yield target
                return
        finally:
            stop(proc, grace=15)
            proc.stdout.close()
        last = log_path.read_text(errors="replace")
        if "address already in use" not in last.lower():
            break
    raise RuntimeError(f"wsguard serve did not start: {last[-3000:]}")


# -- requests and connections ----------------------------------------------------------------


def ws_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def request(
    *,
    path: str = "/ws",
    query: str = "",
    host: str | None = HOST,
    origin: str | None = TRUSTED,
    headers: Sequence[tuple[str, str]] = (),
    drop: Sequence[str] = (),
    method: str = "GET",
    version: str = "HTTP/1.1",
    key: str | None = None,
    body: bytes = b"",
) -> bytes:
    """The base handshake (BASE), varied by the arguments: ``drop`` removes fields by name,
    ``headers`` appends fields, ``None`` for ``host``/``origin`` leaves them out."""
    fields = []
    if host is not None:
        fields.append(("Host", host))
    fields += [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key if key is not None else ws_key()),
        ("Sec-WebSocket-Version", "13"),
    ]
    if origin is not None:
        fields.append(("Origin", origin))
    lowered = {name.lower() for name in drop}
    fields = [f for f in fields if f[0].lower() not in lowered]
    fields += list(headers)
    target = path + (f"?{query}" if query else "")
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
    return head.encode("latin-1") + b"\r\n" + body


def client_tls(target: AttackTarget, *, cert: Path | None = None) -> ssl.SSLContext:
    assert target.cafile is not None
    context = ssl.create_default_context(cafile=str(target.cafile))
    if cert is not None:
        context.load_cert_chain(str(cert))
    return context


async def connect(
    target: AttackTarget,
    ip: str | None = None,
    *,
    tls: ssl.SSLContext | None = None,
    rcvbuf: int | None = None,
) -> RawClient:
    """A TCP (or TLS, for a TLS target) connection from ``ip`` (a fresh address by default)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((ip or next_ip(), 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", target.port))
    if target.tls:
        context = tls or client_tls(target)
        reader, writer = await asyncio.open_connection(sock=sock, ssl=context, server_hostname=HOST)
    else:
        reader, writer = await asyncio.open_connection(sock=sock)
    return RawClient(reader, writer)


async def respond(
    target: AttackTarget, raw: bytes, *, ip: str | None = None, timeout: float = 5.0
) -> HttpResponse:
    """Send ``raw`` on a fresh connection and read the HTTP response head."""
    client = await connect(target, ip)
    await client.send(raw)
    return await client.read_response(timeout)


# -- verdicts ---------------------------------------------------------------------------------
#
# The audit log is written asynchronously: every check below polls it, for a bounded time.


async def audit_event(
    target: AttackTarget,
    since: int,
    peer: str,
    event: str | None = None,
    timeout: float = 2.0,
) -> dict[str, Any] | None:
    """The first audit event from source address ``peer`` logged after ``since``: of kind
    ``event``, or any handshake decision (``handshake_*``) when ``None``."""
    deadline = time.monotonic() + timeout
    while True:
        for record in target.events(since):
            kind = str(record.get("event", ""))
            if record.get("peer") == peer and (
                kind == event if event is not None else kind.startswith("handshake_")
            ):
                return record
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.05)


async def handshake_event(
    target: AttackTarget, ip: str, since: int, timeout: float = 2.0
) -> dict[str, Any]:
    """The handshake decision logged for source address ``ip``; fails when there is none."""
    record = await audit_event(target, since, ip, timeout=timeout)
    assert record is not None, f"no handshake audit event for {ip}"
    return record


async def expect_audit(target: AttackTarget, since: int, reason: str, timeout: float = 2.0) -> None:
    """Wait (bounded) until the audit log holds ``reason`` after byte offset ``since``."""
    deadline = time.monotonic() + timeout
    while True:
        reasons = target.audit_reasons(since)
        if reason in reasons:
            return
        assert time.monotonic() < deadline, f"audit reason {reason!r} not logged: {reasons}"
        await asyncio.sleep(0.05)


async def refused(target: AttackTarget, raw: bytes, status: int, reason: str) -> dict[str, Any]:
    """Send ``raw`` from a fresh address: exactly ``status``, no upgrade, nothing after the
    response, the connection closed, and one ``handshake_rejected`` audit event ``reason``."""
    ip = next_ip()
    since = target.log_size()
    client = await connect(target, ip)
    await client.send(raw)
    response = await client.read_response(3.0)
    assert response.status == status, response.raw
    assert response.header("sec-websocket-accept") is None, response.raw
    assert response.header("upgrade") is None, response.raw
    rest = b""
    with contextlib.suppress(ConnectionResetError):
        rest = await asyncio.wait_for(client.reader.read(), 3.0)
    assert rest == b"", rest
    event = await handshake_event(target, ip, since)
    assert event["event"] == "handshake_rejected", event
    assert (event["status"], event["reason"]) == (status, reason), str(event)
    assert target.alive()
    return event


async def drain(reader: asyncio.StreamReader, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (``True``) or ``timeout`` passes."""
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return data, False
            chunk = await asyncio.wait_for(reader.read(65536), left)
            if not chunk:
                return data, True
            data += chunk
    except TimeoutError:
        return data, False
    except (ConnectionError, ssl.SSLError):
        return data, True


def query_ticket(target: AttackTarget, user: str = "alice", **kwargs: Any) -> str:
    return f"ticket={target.ticket(user, **kwargs)}"


@dataclass
class Session:
    """An open WebSocket speaking wsguard's protocol, over a raw client."""

    raw: RawClient
    response: HttpResponse
    pushes: list[dict[str, Any]] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    async def send_text(self, text: str | bytes) -> None:
        payload = text.encode() if isinstance(text, str) else text
        await self.raw.send(frame(OP_TEXT, payload))

    async def send_json(self, message: Any) -> None:
        await self.send_text(orjson.dumps(message))

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next JSON message; answers pings; raises ``Closed`` on a close frame."""
        while True:
            opcode, payload = await self.raw.read_frame(timeout)
            if opcode == OP_PING:
                await self.raw.send(frame(OP_PONG, payload))
                continue
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(code, payload[2:].decode(errors="replace"))
            message = orjson.loads(payload)
            assert isinstance(message, dict)
            return message

    async def call(self, op: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Send a request and return its reply; pushes that arrive first go to ``pushes``."""
        request_id = next(self.ids)
        await self.send_json({"id": request_id, "op": op, **fields})
        return await self.reply(request_id, timeout)

    async def reply(self, request_id: int, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            message = await self.receive(timeout)
            if "push" in message:
                self.pushes.append(message)
                continue
            assert message.get("id") == request_id, message
            return message

    async def push(self, name: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The next push (named ``name``), from those already received first."""
        for index, message in enumerate(self.pushes):
            if name is None or message["push"] == name:
                return self.pushes.pop(index)
        while True:
            message = await self.receive(timeout)
            if "push" in message and (name is None or message["push"] == name):
                return message
            if "push" in message:
                self.pushes.append(message)

    async def closed_with(self, timeout: float = 10.0) -> int | None:
        """Read (answering pings, skipping messages) until the close frame; its code."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.receive(max(0.05, deadline - time.monotonic()))
            except Closed as closed:
                return closed.code

    async def quiet(self, seconds: float = 0.5) -> list[dict[str, Any]]:
        """Whatever messages arrive within ``seconds`` (pushes included)."""
        got: list[dict[str, Any]] = []
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            while True:
                got.append(await self.receive(seconds))
        return got


class Closed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code} {reason!r}")
        self.code = code
        self.reason = reason


def error_reason(reply: dict[str, Any]) -> tuple[int, str]:
    """``(code, reason)`` of an error reply; fails on a success."""
    assert reply["ok"] is False, reply
    return reply["error"]["code"], reply["error"]["reason"]


async def open_session(
    target: AttackTarget,
    user: str | None = "alice",
    *,
    ip: str | None = None,
    welcome: bool = True,
    rcvbuf: int | None = None,
    **kwargs: Any,
) -> Session:
    """A 101'd connection with a ticket for ``user`` (``None``: no credential, pending);
    ``kwargs`` go to ``request()`` (a given ``query`` replaces the ticket)."""
    if user is not None and "query" not in kwargs:
        kwargs["query"] = query_ticket(target, user)
    client = await connect(target, ip, rcvbuf=rcvbuf)
    await client.send(request(**kwargs))
    response = await client.read_response()
    assert response.status == 101, response.raw
    session = Session(client, response)
    if welcome and user is not None:
        await session.push("welcome")
    return session


# -- the canary ------------------------------------------------------------------------------


@dataclass
class CanaryReport:
    round_trips: list[float] = field(default_factory=list)
    peak_rss: int = 0

    def p99(self) -> float:
        ordered = sorted(self.round_trips)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@contextlib.asynccontextmanager
async def canary(
    target: AttackTarget,
    *,
    interval: float = 0.25,
    after: float = 1.0,
    p99_limit: float = 0.2,
    rss_budget: int = 64 * 2**20,
) -> AsyncIterator[CanaryReport]:
    """An authenticated bystander that must stay connected and fast while the block runs."""
    report = CanaryReport()
    session = await open_session(target, "canary")
    failure: list[BaseException] = []
    done = asyncio.Event()

    async def loop() -> None:
        try:
            while not done.is_set():
                began = time.perf_counter()
                reply = await session.call("ping", timeout=5.0)
                report.round_trips.append(time.perf_counter() - began)
                assert reply["ok"] is True, reply
                report.peak_rss = max(report.peak_rss, target.rss())
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await asyncio.wait_for(done.wait(), interval)
        except BaseException as exc:
            failure.append(exc)

    task = asyncio.create_task(loop())
    try:
        yield report
        await asyncio.sleep(after)
    finally:
        done.set()
        await task
    assert not failure, f"the canary failed during the attack: {failure[0]!r}"
    assert target.alive(), "the server process died"
    assert len(report.round_trips) >= 2, report.round_trips
    assert report.p99() < p99_limit, f"canary p99 {report.p99() * 1000:.0f} ms"
    assert report.peak_rss < target.baseline_rss + rss_budget, (
        f"RSS {report.peak_rss / 2**20:.0f} MiB, baseline {target.baseline_rss / 2**20:.0f} MiB"
    )
    reply = await session.call("ping")
    assert reply["ok"] is True
