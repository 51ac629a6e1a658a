"""Group TLS: transport security and cookies.

With ``server.tls_cert``/``tls_key`` the listener speaks ``wss://`` only: TLS 1.2 or newer, the
stdlib's strong cipher list (forward secrecy, AEAD or SHA-2 MACs; no SHA-1, NULL or anonymous
suites), no TLS compression (CRIME), and nothing in plaintext on that port. A client certificate
is verified against ``server.tls_client_ca`` before any HTTP is read: a good one authenticates
its subject (``mtls``), one from another CA ends the TLS handshake, none leaves the socket
pending (first-message authentication, ``tls_client_auth = "optional"``). Behind a proxy,
``X-Forwarded-Proto``/``X-Forwarded-For`` are believed only from ``server.trusted_proxies``: a
trusted proxy reporting ``http`` is refused (403 ``plaintext``), anyone else's forwarded
headers change neither the scheme nor the client IP. Cookie sessions (``__Host-session``) need
the CSRF nonce of their own session. Responses carry no ``Server`` banner and a fixed body.

Cases (catalog ids of ../shared/research/security-references.md §4):

    TLS-01  TLS 1.0 / 1.1 offered (RFC 8996)                handshake refused
    TLS-02  TLS 1.2 / 1.3                                    accepted, AEAD cipher, 101
    TLS-03  only weak suites offered (SHA-1 CBC, NULL, anonymous)
                                                             handshake refused
    TLS-04  TLS compression (CRIME)                          off
    TLS-05  plaintext HTTP / WebSocket on the TLS port       no response, closed
    TLS-06  certificate names app.example.test; a client verifying another name refuses it
            (server side of CVE-2018-8034 / CVE-2020-11050)
    TLS-07  plaintext downgrade behind a proxy (PYSEC-2026-3844 class): trusted proxy with
            X-Forwarded-Proto http / missing / twice          403 plaintext
            ... with https                                   101
            untrusted peer: forwarded headers ignored, X-Forwarded-For does not change the
            audited client IP nor dodge handshake_rate (PortSwigger IP-ban bypass)
    TLS-08  mTLS: alice's client certificate                 101, welcome user alice (mtls)
    TLS-09  client certificate from an unknown CA            TLS handshake refused, no 101
    TLS-10  no client certificate                            101 pending, auth by first message
    TLS-11  no Server header, no version banner, fixed body on 101/403/404/426/414/431
                                                             [FINDING for 414/431 bodies]
    TLS-12  cookie session over wss: with its nonce 101; no nonce 403 csrf_missing; another
            session's nonce 403 csrf_mismatch; a cookie of another name is ignored (pending)

Harness note: TLS-01/03 first prove, against an in-process permissive TLS server, that this
machine's OpenSSL can offer the old version or suite at all, so a refusal is the server's
decision; they skip with the reason otherwise. TLS-07 runs a plain server of its own with
``server.trusted_proxies=["127.0.0.9"]`` (the suite's servers trust no proxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme

from support.attack import (
    HOST,
    AttackTarget,
    Session,
    audit_event,
    client_tls,
    connect,
    drain,
    next_ip,
    query_ticket,
    request,
    serve,
)
from support.rawws import RawClient

pytestmark = pytest.mark.integration

PROXY = "127.0.0.9"


# -- helpers ---------------------------------------------------------------------------------


async def _tcp(port: int, ip: str | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((ip or next_ip(), 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def _tls_open(
    port: int, context: ssl.SSLContext, server_hostname: str = HOST
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = await _tcp(port)
    return await asyncio.wait_for(
        asyncio.open_connection(sock=sock, ssl=context, server_hostname=server_hostname), 5.0
    )


def _old_client(
    *,
    cafile: Path | None,
    version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A client context that offers exactly ``version`` / ``ciphers`` (TLS <= 1.2 for a
    cipher list: TLS 1.3 suites cannot be narrowed this way), at OpenSSL security level 0."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cafile=str(cafile))
    with contextlib.suppress(ValueError):
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = version or ssl.TLSVersion.TLSv1_2
    if version is not None:
        context.minimum_version = version
    context.set_ciphers(f"{ciphers or 'ALL'}:@SECLEVEL=0")
    return context


@contextlib.asynccontextmanager
async def _permissive_server(tmp: Path) -> AsyncIterator[int]:
    """An in-process TLS server that accepts every version and suite this OpenSSL has."""
    ca = trustme.CA()
    leaf = ca.issue_cert(HOST)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with contextlib.suppress(ValueError):
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("ALL:aNULL:eNULL:@SECLEVEL=0")
    leaf.configure_cert(context)

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(serve_one, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _offerable(tmp: Path, version: ssl.TLSVersion | None, ciphers: str | None) -> bool:
    """Whether this machine's OpenSSL can negotiate ``version``/``ciphers`` at all."""
    async with _permissive_server(tmp) as port:
        context = _old_client(cafile=None, version=version, ciphers=ciphers)
        try:
            _, writer = await _tls_open(port, context)
        except (ssl.SSLError, ConnectionError, OSError):
            return False
        writer.close()
        return True


async def _handshake_refused(target: AttackTarget, context: ssl.SSLContext) -> None:
    """The TLS handshake fails (or the server drops the connection before any HTTP)."""
    since = target.log_size()
    try:
        reader, writer = await _tls_open(target.port, context)
    except (ssl.SSLError, ConnectionError):
        pass
    else:
        # TLS 1.3 client certificates are checked after the client's Finished: the refusal
        # then arrives on the first read. Nothing of HTTP may come before it.
        writer.write(request(query=query_ticket(target)))
        data, closed = await drain(reader, 3.0)
        assert data == b"", data[:300]
        assert closed
    await asyncio.sleep(0.2)
    assert "handshake_accepted" not in {e.get("event") for e in target.events(since)}


async def _session(client: RawClient, raw: bytes) -> Session:
    await client.send(raw)
    response = await client.read_response(5.0)
    assert response.status == 101, response.raw
    return Session(client, response)


async def _pending(session: Session) -> None:
    """No welcome: the socket is pending, and anything but ``auth`` gets 401."""
    reply = await session.call("ping")
    assert reply["ok"] is False, reply
    assert (reply["error"]["code"], reply["error"]["reason"]) == (401, "auth_required")
    assert not [p for p in session.pushes if p["push"] == "welcome"], session.pushes


# -- TLS-01..06: the TLS layer ---------------------------------------------------------------


@pytest.mark.parametrize(
    "version",
    [
        pytest.param(ssl.TLSVersion.TLSv1, id="TLSv1.0"),
        pytest.param(ssl.TLSVersion.TLSv1_1, id="TLSv1.1"),
    ],
)
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_tls_01_old_versions_refused(
    tls_target: AttackTarget, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    """TLS-01: TLS 1.0 and 1.1 are deprecated (RFC 8996, WSTG-CRYP-01): refused."""
    if not ssl.HAS_TLSv1_1 or not await _offerable(tmp_path, version, None):
        pytest.skip(f"this OpenSSL cannot offer {version.name} even at SECLEVEL=0")
    await _handshake_refused(tls_target, _old_client(cafile=tls_target.cafile, version=version))


@pytest.mark.parametrize(
    "version",
    [
        pytest.param(ssl.TLSVersion.TLSv1_2, id="TLSv1.2"),
        pytest.param(ssl.TLSVersion.TLSv1_3, id="TLSv1.3"),
    ],
)
async def test_tls_02_current_versions_accepted(
    tls_target: AttackTarget, version: ssl.TLSVersion
) -> None:
    """TLS-02: TLS 1.2 and 1.3 with the default client suites: an AEAD cipher, then 101."""
    context = client_tls(tls_target)
    context.minimum_version = context.maximum_version = version
    client = await connect(tls_target, tls=context)
    ssl_object = client.writer.get_extra_info("ssl_object")
    assert ssl_object.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
    cipher = ssl_object.cipher()[0]
    assert "GCM" in cipher or "CHACHA20" in cipher, cipher
    session = await _session(client, request(query=query_ticket(tls_target)))
    welcome = await session.push("welcome")
    assert welcome["user"] == "alice"


@pytest.mark.parametrize(
    "ciphers",
    [
        pytest.param("ECDHE-ECDSA-AES128-SHA", id="sha1-cbc-aes128"),
        pytest.param("ECDHE-ECDSA-AES256-SHA", id="sha1-cbc-aes256"),
        pytest.param("ECDHE-ECDSA-NULL-SHA", id="null-encryption"),
        pytest.param("AECDH-AES128-SHA", id="anonymous"),
        pytest.param("ECDHE-ECDSA-CAMELLIA128-SHA256:ECDHE-ECDSA-ARIA128-GCM-SHA256", id="odd"),
    ],
)
async def test_tls_03_weak_suites_refused(
    tls_target: AttackTarget, tmp_path: Path, ciphers: str
) -> None:
    """TLS-03: a client offering only weak suites (SHA-1 MAC CBC, NULL encryption,
    anonymous key exchange; outside the stdlib list) fails the TLS 1.2 handshake."""
    if not await _offerable(tmp_path, ssl.TLSVersion.TLSv1_2, ciphers):
        pytest.skip(f"this OpenSSL cannot negotiate {ciphers} even at SECLEVEL=0")
    context = _old_client(cafile=tls_target.cafile, version=ssl.TLSVersion.TLSv1_2, ciphers=ciphers)
    await _handshake_refused(tls_target, context)


async def test_tls_04_no_tls_compression(tls_target: AttackTarget) -> None:
    """TLS-04: TLS-level compression is off (CRIME; RFC 7692 §8 names the same risk)."""
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = client_tls(tls_target)
        context.maximum_version = version
        context.options &= ~ssl.OP_NO_COMPRESSION  # offer it, should the build support it
        client = await connect(tls_target, tls=context)
        assert client.writer.get_extra_info("ssl_object").compression() is None
        client.close()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(request(), id="websocket-handshake"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: app.example.test\r\n\r\n", id="http"),
    ],
)
async def test_tls_05_plaintext_on_the_tls_port(tls_target: AttackTarget, raw: bytes) -> None:
    """TLS-05: plaintext on the wss:// port is not HTTP to the server: no response at all
    (certainly no 101), the connection closed at once."""
    reader, writer = await asyncio.open_connection(sock=await _tcp(tls_target.port))
    writer.write(raw)
    data, closed = await drain(reader, 3.0)
    assert b"HTTP/" not in data, data[:300]
    assert closed
    writer.close()


async def test_tls_06_certificate_is_for_the_app_host_only(tls_target: AttackTarget) -> None:
    """TLS-06: the server's certificate verifies for app.example.test; a client that checks
    host names (what CVE-2018-8034 / CVE-2020-11050 clients did not) refuses it for another."""
    _, writer = await _tls_open(tls_target.port, client_tls(tls_target))
    writer.close()
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        await _tls_open(tls_target.port, client_tls(tls_target), "other.example.test")


# -- TLS-07: plaintext downgrade and forwarded headers ---------------------------------------


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttackTarget]:
    """A plain server behind a trusted proxy at 127.0.0.9: the only way to exercise the
    X-Forwarded-Proto rule (the suite's servers trust no proxy, as is the default)."""
    overrides = [f'server.trusted_proxies=["{PROXY}"]']
    with serve(tmp_path_factory.mktemp("attack-tls-proxy"), overrides=overrides) as server:
        yield server


@pytest.mark.parametrize(
    "forwarded",
    [
        pytest.param([("X-Forwarded-Proto", "http")], id="http"),
        pytest.param([], id="missing"),
        pytest.param([("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "https")], id="two"),
        pytest.param([("X-Forwarded-Proto", "https, http")], id="last-is-http"),
        pytest.param([("X-Forwarded-Proto", '"https"')], id="quoted"),
    ],
)
async def test_tls_07_trusted_proxy_reporting_plaintext(
    proxied: AttackTarget, forwarded: list[tuple[str, str]]
) -> None:
    """TLS-07: a trusted proxy whose client leg was plain http (or that does not say, or
    whose header was appended to): 403 ``plaintext``, credentials notwithstanding."""
    since = proxied.log_size()
    client = await connect(proxied, PROXY)
    forwarded = [*forwarded, ("X-Forwarded-For", "203.0.113.7")]
    await client.send(request(query=query_ticket(proxied), headers=forwarded))
    response = await client.read_response(3.0)
    assert response.status == 403, response.raw
    record = await audit_event(proxied, since, PROXY, "handshake_rejected")
    assert record is not None
    assert record["reason"] == "plaintext", record


async def test_tls_07_trusted_proxy_reporting_https(proxied: AttackTarget) -> None:
    """TLS-07: the same proxy reporting ``https`` is accepted; the audited client IP is the
    one it forwarded (the positive control for the untrusted case below)."""
    since = proxied.log_size()
    client = await connect(proxied, PROXY)
    headers = [("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "203.0.113.8")]
    session = await _session(client, request(query=query_ticket(proxied), headers=headers))
    assert (await session.push("welcome"))["user"] == "alice"
    record = await audit_event(proxied, since, PROXY, "handshake_accepted")
    assert record is not None
    assert record["client_ip"] == "203.0.113.8", record


async def test_tls_07_untrusted_peer_forwarded_headers_ignored(proxied: AttackTarget) -> None:
    """TLS-07: from a peer that is not a trusted proxy, X-Forwarded-For and -Proto are
    attacker input: the audit log keeps the real peer as client IP (PortSwigger's IP-ban
    bypass), whatever scheme the header claims."""
    for proto in ("http", "https"):
        ip = next_ip()
        since = proxied.log_size()
        client = await connect(proxied, ip)
        headers = [("X-Forwarded-Proto", proto), ("X-Forwarded-For", "1.2.3.4")]
        session = await _session(client, request(query=query_ticket(proxied), headers=headers))
        await session.push("welcome")
        record = await audit_event(proxied, since, ip, "handshake_accepted")
        assert record is not None
        assert record["client_ip"] == ip, record


async def test_tls_07_forwarded_for_does_not_dodge_handshake_rate(proxied: AttackTarget) -> None:
    """TLS-07: a fresh X-Forwarded-For on every handshake from one untrusted address does not
    buy fresh handshake buckets: past the burst of 20, 429 ``handshake_rate``."""
    ip = next_ip()
    since = proxied.log_size()

    async def attempt(i: int) -> int:
        client = await connect(proxied, ip)
        await client.send(request(headers=[("X-Forwarded-For", f"198.51.100.{i}")]))
        return (await client.read_response(3.0)).status

    began = time.monotonic()
    statuses = await asyncio.gather(*(attempt(i) for i in range(30)))
    refill = int(10 * (time.monotonic() - began)) + 1
    assert 20 <= statuses.count(101) <= 20 + refill, statuses
    assert statuses.count(429) == 30 - statuses.count(101)
    await asyncio.sleep(0.2)
    assert "handshake_rate" in proxied.audit_reasons(since)


# -- TLS-08..10: client certificates ---------------------------------------------------------


async def test_tls_08_mtls_client_certificate(tls_target: AttackTarget) -> None:
    """TLS-08: alice's certificate from the client CA authenticates her (``mtls``) with no
    other credential in the request."""
    assert tls_target.client_cert is not None
    client = await connect(tls_target, tls=client_tls(tls_target, cert=tls_target.client_cert))
    session = await _session(client, request())
    welcome = await session.push("welcome")
    assert (welcome["user"], welcome["auth"]) == ("alice", "mtls")
    reply = await session.call("subscribe", channel="user:alice")
    assert reply["ok"] is True, reply


async def test_tls_09_client_certificate_from_unknown_ca(
    tls_target: AttackTarget, tmp_path: Path
) -> None:
    """TLS-09: a certificate for "alice" from a CA the server does not trust: the TLS
    handshake fails, no HTTP is read, nobody is authenticated."""
    forged = tmp_path / "forged-alice.pem"
    trustme.CA().issue_cert(
        "alice", common_name="alice"
    ).private_key_and_cert_chain_pem.write_to_path(str(forged))
    await _handshake_refused(tls_target, client_tls(tls_target, cert=forged))


async def test_tls_10_no_client_certificate_is_pending(tls_target: AttackTarget) -> None:
    """TLS-10: without a certificate (``tls_client_auth = "optional"``) the socket opens
    pending: no welcome, 401 for anything but ``auth``; a JWT then authenticates it."""
    client = await connect(tls_target)
    session = await _session(client, request())
    await _pending(session)
    reply = await session.call("auth", token=tls_target.jwt("bob"))
    assert reply["ok"] is True, reply
    welcome = await session.push("welcome")
    assert (welcome["user"], welcome["auth"]) == ("bob", "jwt")


# -- TLS-11: banners -------------------------------------------------------------------------


_GENERIC_BODIES = {
    101: None,
    403: b"403 Forbidden\n",
    404: b"404 Not Found\n",
    426: b"426 Upgrade Required\n",
    414: b"414 Request-URI Too Long\n",
    431: b"431 Request Header Fields Too Large\n",
}


@pytest.mark.parametrize(
    ("status", "raw"),
    [
        pytest.param(101, "ticket", id="101"),
        pytest.param(403, request(origin="https://evil.example"), id="403"),
        pytest.param(404, request(path="/admin"), id="404"),
        pytest.param(426, request(drop=["Sec-WebSocket-Version"]), id="426"),
        pytest.param(414, request(query="q=" + "x" * 9000), id="414"),
        pytest.param(431, request(headers=[(f"X-{i}", "v") for i in range(129)]), id="431"),
    ],
)
async def test_tls_11_no_server_banner(
    tls_target: AttackTarget, status: int, raw: bytes | str
) -> None:
    """TLS-11: no ``Server`` header, no library or version name, a fixed body (STEWS
    fingerprinting; codes.md: "Exception text never reaches the peer")."""
    if raw == "ticket":
        raw = request(query=query_ticket(tls_target))
    assert isinstance(raw, bytes)
    client = await connect(tls_target)
    await client.send(raw)
    response = await client.read_response(3.0)
    assert response.status == status, response.raw
    assert response.header("server") is None
    assert response.header("x-powered-by") is None
    lowered = response.raw.lower()
    for word in (b"websockets", b"python", b"wsguard", b"uvloop", b"aiohttp", b"openssl"):
        assert word not in lowered, response.raw
    body = _GENERIC_BODIES[status]
    if body is not None:
        assert response.raw.split(b"\r\n\r\n", 1)[1] == body, response.raw
        assert response.header("cache-control") == "no-store"


# -- TLS-12: cookies -------------------------------------------------------------------------


async def test_tls_12_cookie_with_its_nonce_over_wss(tls_target: AttackTarget) -> None:
    """TLS-12: the ``__Host-session`` cookie plus its own CSRF nonce: accepted over wss."""
    cookie, nonce = tls_target.session("alice")
    client = await connect(tls_target)
    raw = request(query=f"csrf={nonce}", headers=[("Cookie", f"__Host-session={cookie}")])
    session = await _session(client, raw)
    welcome = await session.push("welcome")
    assert (welcome["user"], welcome["auth"]) == ("alice", "cookie")


@pytest.mark.parametrize("nonce", ["missing", "other-session"])
async def test_tls_12_cookie_without_its_nonce(tls_target: AttackTarget, nonce: str) -> None:
    """TLS-12: the cookie alone (CSWSH rides on it) or with another session's nonce:
    403 ``csrf_missing`` / ``csrf_mismatch``, never a 101."""
    cookie, _ = tls_target.session("alice")
    query = "" if nonce == "missing" else f"csrf={tls_target.session('alice')[1]}"
    ip = next_ip()
    since = tls_target.log_size()
    client = await connect(tls_target, ip)
    await client.send(request(query=query, headers=[("Cookie", f"__Host-session={cookie}")]))
    response = await client.read_response(3.0)
    assert response.status == 403, response.raw
    record = await audit_event(tls_target, since, ip, "handshake_rejected")
    assert record is not None
    assert (
        record["reason"] == {"missing": "csrf_missing", "other-session": "csrf_mismatch"}[nonce]
    ), record


@pytest.mark.parametrize("name", ["session", "__Secure-session", "__host-session"])
async def test_tls_12_cookie_of_another_name_is_ignored(
    tls_target: AttackTarget, name: str
) -> None:
    """TLS-12: only the configured ``__Host-`` name counts (a sibling subdomain can plant
    ``session`` but not ``__Host-session``): another name authenticates nobody, even with
    the right nonce; the socket is merely pending."""
    cookie, nonce = tls_target.session("alice")
    client = await connect(tls_target)
    session = await _session(
        client, request(query=f"csrf={nonce}", headers=[("Cookie", f"{name}={cookie}")])
    )
    await _pending(session)
