"""The handshake-level probes: Origin (CSWSH), Host (DNS rebinding), TLS and authentication.

Each probe sends a handful of handshakes through the session (paced and counted) and records a
verdict per check: a finding with evidence, a pass, or a skip saying why it could not conclude.
The frame-level probes are in ``frames.py``.
"""

from __future__ import annotations

import re
import ssl
from urllib.parse import urlsplit

import orjson

from wsguard.scanner import wire
from wsguard.scanner.checks import by_id
from wsguard.scanner.model import Evidence, Severity
from wsguard.scanner.session import ProbeError, ScanSession, client_tls_context
from wsguard.scanner.target import CREDENTIAL_PARAMS

__all__ = ["ATTACKER_HOST", "answered", "probe_auth", "probe_host", "probe_origin", "probe_tls"]

ATTACKER_HOST = "attacker.wsguard-scan.test"  # .test is reserved: it never resolves (RFC 2606)
_PING = '{"id": 1, "op": "ping"}'


def _split_origin(origin: str) -> tuple[str, str, str]:
    """``https://app.example.com:8443`` → ``("https", "app.example.com", ":8443")``."""
    parts = urlsplit(origin)
    port = f":{parts.port}" if parts.port else ""
    host = parts.hostname or ""
    return parts.scheme, f"[{host}]" if ":" in host else host, port


def _lookalikes(origin: str) -> list[tuple[str, str]]:
    """Origins an attacker can register that fool partial matches (STEWS's bypass set)."""
    scheme, host, port = _split_origin(origin)
    variants = [
        ("prefix match", f"{scheme}://{host}.{ATTACKER_HOST}{port}"),
        ("suffix match", f"{scheme}://wsgscan{host}{port}"),
        ("substring match", f"{scheme}://{ATTACKER_HOST}{port}/{host}"),
    ]
    if "." in host:
        variants.append(("unescaped regex dot", f"{scheme}://{host.replace('.', 'x', 1)}{port}"))
    # Substring checks are often written against the host without scheme or port.
    variants.append(("host inside another host", f"{scheme}://{host}-{ATTACKER_HOST}{port}"))
    return variants


def _evidence(label: str, origin: str | None, response: wire.Handshake) -> Evidence:
    sent = "(no Origin header)" if origin is None else f"Origin: {origin}"
    return Evidence(label, sent, response.describe())


async def _try_origin(
    s: ScanSession, label: str, origin: str | None, *, extra: tuple[str, ...] = ()
) -> tuple[bool, Evidence]:
    response, conn = await s.handshake(f"origin: {label}", origin=origin, extra_origins=extra)
    if conn is not None:
        await conn.close()
    sent = origin if not extra else ", ".join([str(origin), *extra])
    return response.accepted, _evidence(label, sent, response)


async def probe_origin(s: ScanSession) -> None:
    """Cross-site WebSocket hijacking: which Origin values open a socket."""
    v = s.verdicts
    trusted = s.options.origin
    ok, base = await _try_origin(s, "trusted origin", trusted)
    if not ok:
        reason = (
            f"the trusted origin's handshake, with only the cookie a cross-site page could send,"
            f" got {base.received}: Origin acceptance cannot be observed"
        )
        for check in ("foreign", "null", "missing", "lookalike", "subdomain", "scheme", "port",
                      "multiple"):  # fmt: skip
            v.skip(f"origin-{check}", reason, inconclusive=True)
        return
    foreign = f"https://{ATTACKER_HOST}"
    accepted, ev = await _try_origin(s, "foreign origin", foreign)
    await _credential_free(s, "origin-missing", "no Origin", None)
    if accepted:
        null_ok, null_ev = await _try_origin(s, "null origin", "null")
        evidence = [base, ev, null_ev] if null_ok else [base, ev]
        v.fail("origin-foreign", f"A handshake from {foreign} opened a socket.", evidence)
        implied = "implied by origin-foreign: the Origin header is not checked"
        for check in ("null", "lookalike", "subdomain", "scheme", "port", "multiple"):
            v.skip(f"origin-{check}", implied)
        return
    v.ok("origin-foreign")
    await _credential_free(s, "origin-null", "null origin", "null")
    passed = []
    for label, origin in _lookalikes(trusted):
        ok, ev = await _try_origin(s, label, origin)
        if ok:
            passed.append(ev)
    if passed:
        v.fail(
            "origin-lookalike",
            f"{len(passed)} look-alike origin(s) passed the check: "
            + ", ".join(e.label for e in passed)
            + ".",
            passed,
        )
    else:
        v.ok("origin-lookalike")
    scheme, host, port = _split_origin(trusted)
    await _single(s, "origin-subdomain", "arbitrary subdomain", f"{scheme}://wsgscan.{host}{port}")
    if scheme == "https":
        await _single(s, "origin-scheme", "http:// downgrade", f"http://{host}{port}")
    else:
        v.skip("origin-scheme", "the trusted origin is already http://")
    other_port = 8444 if port == ":8443" else 8443
    await _single(s, "origin-port", "another port", f"{scheme}://{host}:{other_port}")
    first, ev1 = await _try_origin(s, "trusted then foreign", trusted, extra=(foreign,))
    second, ev2 = await _try_origin(s, "foreign then trusted", foreign, extra=(trusted,))
    if first or second:
        evidence = [ev for ok, ev in ((first, ev1), (second, ev2)) if ok]
        v.fail("origin-multiple", "A handshake with two Origin headers opened a socket.", evidence)
    else:
        v.ok("origin-multiple")


async def _credential_free(s: ScanSession, check_id: str, label: str, origin: str | None) -> None:
    """Origins a browser rarely sends (none, "null"): first without the cookie, as a tool or a
    sandboxed page would; then, if that opens a socket, with it. Accepted with the cookie is
    hijacking (the check's severity); accepted only without it, one level lower."""
    what = "without an Origin header" if origin is None else f'with Origin "{origin}"'
    response, conn = await s.handshake(f"origin: {label}", origin=origin, cookie=False)
    if conn is None:
        s.verdicts.ok(check_id)
        return
    await conn.close()
    evidence = [_evidence(f"{label}, no cookie", origin, response)]
    check = by_id(check_id)
    if s.options.credentials.cookie:
        with_cookie, ev = await _try_origin(s, f"{label}, with the cookie", origin)
        evidence.append(ev)
        if with_cookie:
            s.verdicts.fail(check_id, f"A handshake {what} opened a socket, even with the"
                            " session cookie.", evidence)  # fmt: skip
            return
        summary = f"A handshake {what} opened a socket (refused when it carried the cookie)."
    else:
        summary = f"A handshake {what} opened a socket."
    lower = Severity(max(Severity.LOW, check.severity - 1))
    s.verdicts.fail(
        check_id, summary, evidence, severity=lower if s.options.credentials.cookie else None
    )


async def _single(s: ScanSession, check_id: str, label: str, origin: str) -> None:
    ok, ev = await _try_origin(s, label, origin)
    if ok:
        s.verdicts.fail(check_id, f"A handshake from {origin} opened a socket.", [ev])
    else:
        s.verdicts.ok(check_id)


async def probe_host(s: ScanSession) -> None:
    """DNS rebinding: a Host header naming the attacker's domain."""
    v = s.verdicts
    port = "" if s.target.port in (80, 443) else f":{s.target.port}"
    spoofed = f"{ATTACKER_HOST}{port}"
    response, conn = await s.handshake("host: spoofed", host=spoofed)
    if conn is not None:
        await conn.close()
        v.fail(
            "host-spoof",
            f"A handshake with Host: {spoofed} opened a socket.",
            [Evidence("spoofed Host", f"Host: {spoofed}", response.describe())],
        )
    else:
        v.ok("host-spoof")
    if any(f.check.id == "origin-foreign" for f in v.findings):
        v.skip("host-rebinding", "implied by origin-foreign: the Origin header is not checked")
        return
    origin = f"{'https' if s.target.secure else 'http'}://{spoofed}"
    response, conn = await s.handshake("host: rebinding", host=spoofed, origin=origin)
    if conn is not None:
        await conn.close()
        v.fail(
            "host-rebinding",
            "A handshake whose Host and Origin both name the attacker's domain opened a socket.",
            [Evidence("rebinding", f"Host: {spoofed}\nOrigin: {origin}", response.describe())],
        )
    else:
        v.ok("host-rebinding")


def _legacy_context() -> ssl.SSLContext | None:
    """A client context that offers only TLS 1.0 and 1.1, or None if this OpenSSL cannot."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        return None
    return context


async def probe_tls(s: ScanSession) -> None:
    """Plaintext, certificate verification and protocol versions."""
    v = s.verdicts
    target = s.target
    if not target.secure:
        v.skip("tls-certificate", "the target is plain ws://")
        v.skip("tls-legacy", "the target is plain ws://")
        response, conn = await s.handshake("tls: plaintext", token=True, ticket=True)
        if conn is not None:
            await conn.close()
            v.fail(
                "tls-plaintext",
                "The endpoint accepted a WebSocket handshake over plain ws://.",
                [Evidence("ws:// handshake", target.url, response.describe())],
            )
        else:
            v.ok("tls-plaintext")
        return
    try:
        conn = await s.connect()
        await conn.close()
        v.ok("tls-certificate")
    except ProbeError as exc:
        if not str(exc).startswith("certificate verification failed"):
            raise
        v.fail(
            "tls-certificate",
            f"{str(exc)[0].upper()}{str(exc)[1:]}.",
            [Evidence("TLS handshake", f"{target.host_header} (verifying)", str(exc))],
        )
        # The other probes still run, over an unverified connection.
        s.tls = client_tls_context(s.options.cafile, verify=False)
    legacy = _legacy_context()
    if legacy is None:
        v.skip("tls-legacy", "this machine's OpenSSL cannot offer TLS 1.0/1.1")
    else:
        try:
            conn = await s.connect(tls=legacy)
        except ProbeError as exc:
            # Errors raised by our own OpenSSL before a byte is sent are not the server's
            # refusal.
            if any(m in str(exc).lower() for m in ("no protocols available",
                                                   "no ciphers available")):  # fmt: skip
                v.skip("tls-legacy", "this machine's OpenSSL cannot offer TLS 1.0/1.1")
            else:
                v.ok("tls-legacy")
        else:
            await conn.close()
            v.fail(
                "tls-legacy",
                "A TLS 1.0/1.1-only client completed the TLS handshake.",
                [Evidence("TLS handshake", "TLS 1.0-1.1 only", "accepted")],
            )
    plain = target.with_scheme(False)
    try:
        response, conn = await s.handshake("tls: ws:// on the wss port", target=plain)
    except ProbeError:
        response, conn = wire.Handshake(None, error="no answer"), None
    if conn is not None:
        await conn.close()
        v.fail(
            "tls-plaintext",
            "The wss:// port also accepts plain ws:// handshakes.",
            [Evidence("ws:// handshake", plain.url, response.describe())],
        )
    else:
        v.ok("tls-plaintext")


async def answered(conn: wire.Connection) -> wire.Received:
    """Send one harmless message; collect what comes back within 1.5 s."""
    got = await conn.collect(0.3)
    if not got.closed and await conn.send(wire.build_frame(wire.OP_TEXT, _PING.encode())):
        more = await conn.collect(1.5)
        more.data[:0] = got.data
        got = more
    await conn.close()
    return got


# Replies that refuse rather than serve: an error saying authentication is needed.
_REFUSAL = re.compile(
    r"\b(401|403|4401|4403|unauthori[sz]ed|auth_required|authentication required|"
    r"not authenticated|login required|forbidden)\b",
    re.IGNORECASE,
)


def _refusal(text: str) -> bool:
    """A reply that refuses: an error object, or words saying authentication is needed."""
    try:
        reply = orjson.loads(text)
    except orjson.JSONDecodeError:
        reply = None
    if isinstance(reply, dict) and ("error" in reply or reply.get("ok") is False):
        return True
    return _REFUSAL.search(text) is not None


def _served(got: wire.Received) -> bool:
    """The server kept the connection and answered with something other than a refusal."""
    if got.closed or not got.data:
        return False
    return not all(_refusal(text) for text in got.data)


async def probe_auth(s: ScanSession) -> None:
    """Unauthenticated access, credentials in URLs, cookie-only handshakes."""
    v = s.verdicts
    creds = s.options.credentials
    response, conn = await s.handshake("auth: no credentials", cookie=False)
    anonymous = conn is not None and _served(got := await answered(conn))
    if anonymous:
        v.fail(
            "auth-none",
            "A client with no credentials was served.",
            [Evidence("no credentials", _PING, " | ".join(got.data[:3]))],
        )
    else:
        v.ok("auth-none")
    leaked = sorted({k for k, _ in s.target.query_params() if k.lower() in CREDENTIAL_PARAMS})
    if leaked:
        v.fail(
            "auth-query-token",
            "The URL carries credential parameters: " + ", ".join(leaked),
            [Evidence("URL query", ", ".join(f"{k}=…" for k in leaked), "")],
        )
    elif creds.token and not anonymous:
        for param in ("access_token", "token"):
            response, conn = await s.handshake(
                f"auth: ?{param}=", cookie=False, query=[(param, creds.token)]
            )
            if conn is not None and _served(got := await answered(conn)):
                v.fail(
                    "auth-query-token",
                    f"The server accepts the token as ?{param}=.",
                    [Evidence(f"?{param}=", f"?{param}=<token>", response.describe())],
                )
                break
        else:
            v.ok("auth-query-token")
    else:
        v.ok("auth-query-token")
    if not creds.cookie:
        v.skip("auth-cookie-only", "no --cookie given")
    elif anonymous:
        v.skip("auth-cookie-only", "implied by auth-none: no credential is needed at all")
    else:
        response, conn = await s.handshake("auth: cookie only")
        if conn is not None and _served(got := await answered(conn)):
            v.fail(
                "auth-cookie-only",
                "The cookie alone opened a served connection.",
                [Evidence("cookie only", "Cookie: <given>", response.describe())],
            )
        else:
            v.ok("auth-cookie-only")
