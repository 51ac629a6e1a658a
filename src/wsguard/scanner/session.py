"""One scan's shared state: pacing, the connection budget, credentials and the verdicts.

Every connection a probe opens goes through :meth:`ScanSession.connect`, which waits for its
turn (``max_rate`` per second) and refuses once the scan's budget is spent, so no probe, however
written, can flood the target.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

from wsguard.scanner import wire
from wsguard.scanner.checks import by_id
from wsguard.scanner.model import Evidence, Finding, Severity
from wsguard.scanner.target import ScanOptions, Target

__all__ = ["ORIGIN_DEFAULT", "ProbeError", "ScanSession", "Verdicts"]

ORIGIN_DEFAULT = object()  # sentinel: send the trusted origin


class ProbeError(Exception):
    """A probe could not run to a conclusion (its checks are skipped with this reason)."""


@dataclass
class Verdicts:
    """What each check concluded; the first verdict for a check wins."""

    findings: list[Finding] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    inconclusive: list[str] = field(default_factory=list)  # skipped because a probe failed

    def decided(self, check_id: str) -> bool:
        return (
            check_id in self.passed
            or check_id in self.skipped
            or any(f.check.id == check_id for f in self.findings)
        )

    def fail(
        self,
        check_id: str,
        summary: str,
        evidence: Sequence[Evidence] = (),
        severity: Severity | None = None,
    ) -> None:
        if not self.decided(check_id):
            self.findings.append(Finding(by_id(check_id), summary, tuple(evidence), severity))

    def ok(self, check_id: str) -> None:
        if not self.decided(check_id):
            self.passed.append(check_id)

    def skip(self, check_id: str, reason: str, *, inconclusive: bool = False) -> None:
        """Record why ``check_id`` did not run: by choice (an option not given, a check implied
        by another) or, with ``inconclusive``, because the target did not let it conclude."""
        if not self.decided(check_id):
            self.skipped[check_id] = reason
            if inconclusive:
                self.inconclusive.append(check_id)


def client_tls_context(cafile: str | None, *, verify: bool) -> ssl.SSLContext:
    """The scanner's TLS client context: verifying (system CAs or ``cafile``) or not."""
    context = ssl.create_default_context(cafile=cafile)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ScanSession:
    """Shared by the probes of one scan."""

    def __init__(self, options: ScanOptions) -> None:
        self.options = options
        self.target = options.target
        self.verdicts = Verdicts()
        self.requests = 0
        self.tls = client_tls_context(options.cafile, verify=True)
        self.handshakes: list[tuple[str, wire.Handshake]] = []  # every response, for disclosure
        self.closes: list[tuple[str, wire.Received]] = []  # every close seen, for disclosure
        self._lock = asyncio.Lock()
        self._next_start = 0.0

    # -- pacing -----------------------------------------------------------------------------

    async def _turn(self) -> None:
        async with self._lock:
            if self.requests >= self.options.max_connections:
                raise ProbeError(
                    f"the scan's budget of {self.options.max_connections} connections is spent"
                )
            loop = asyncio.get_running_loop()
            wait = self._next_start - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_start = loop.time() + 1.0 / self.options.max_rate
            self.requests += 1

    async def connect(
        self, *, target: Target | None = None, tls: ssl.SSLContext | None = None
    ) -> wire.Connection:
        """Open a TCP (TLS for wss) connection, paced and counted.

        Raises:
            ProbeError: when the budget is spent or the target cannot be reached.
        """
        target = target or self.target
        await self._turn()
        context = (tls or self.tls) if target.secure else None
        try:
            return await wire.open_connection(
                target.host,
                target.port,
                tls=context,
                server_hostname=target.host,
                within=self.options.timeout,
            )
        except TimeoutError:
            raise ProbeError(f"connecting to {target.host_header} timed out") from None
        except ssl.SSLCertVerificationError as exc:
            raise ProbeError(f"certificate verification failed: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise ProbeError(f"TLS handshake failed: {exc.reason or exc}") from None
        except ConnectionRefusedError:
            raise ProbeError(f"cannot connect to {target.host_header}: refused") from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ProbeError(f"cannot connect to {target.host_header}: {reason}") from None

    # -- credentials ------------------------------------------------------------------------

    async def mint_ticket(self) -> str:
        """Run ``--ticket-cmd`` and return the ticket it prints (its first line)."""
        command = self.options.credentials.ticket_cmd
        if command is None:
            raise ProbeError("no ticket command")
        proc = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 15.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ProbeError("--ticket-cmd did not finish within 15 s") from None
        if proc.returncode != 0:
            raise ProbeError(f"--ticket-cmd exited with status {proc.returncode}")
        ticket = out.decode("utf-8", "replace").strip().splitlines()
        if not ticket or not ticket[0].strip():
            raise ProbeError("--ticket-cmd printed nothing")
        return ticket[0].strip()

    # -- handshakes -------------------------------------------------------------------------

    async def handshake(
        self,
        label: str,
        *,
        origin: object = ORIGIN_DEFAULT,
        extra_origins: Sequence[str] = (),
        host: str | None = None,
        cookie: bool = True,
        token: bool = False,
        ticket: bool = False,
        query: Sequence[tuple[str, str]] = (),
        headers: Sequence[tuple[str, str]] = (),
        target: Target | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> tuple[wire.Handshake, wire.Connection | None]:
        """Send one opening handshake; return the response and, on 101, the open connection.

        ``origin`` is the trusted origin by default, a string, or None for no Origin header.
        Only the cookie is sent by default: that is what a cross-site page's handshake carries.
        """
        target = target or self.target
        creds = self.options.credentials
        resource = target.resource
        params = list(query)
        if ticket and creds.ticket_cmd:
            params.append((creds.ticket_param, await self.mint_ticket()))
        if params:
            resource += ("&" if "?" in resource else "?") + urlencode(params)
        fields = wire.upgrade_headers(host or target.host_header)
        if origin is ORIGIN_DEFAULT:
            fields.append(("Origin", self.options.origin))
        elif isinstance(origin, str):
            fields.append(("Origin", origin))
        fields += [("Origin", value) for value in extra_origins]
        if cookie and creds.cookie:
            fields.append(("Cookie", creds.cookie))
        if token and creds.token:
            fields.append(("Authorization", f"Bearer {creds.token}"))
        fields += list(headers)
        conn = await self.connect(target=target, tls=tls)
        await conn.send(wire.build_request(resource, fields))
        response = await conn.read_handshake(self.options.timeout)
        self.handshakes.append((label, response))
        if not response.accepted:
            await conn.close()
            return response, None
        return response, conn

    async def open_authenticated(self, label: str) -> tuple[wire.Connection, wire.Received]:
        """A connection as a legitimate client makes it: trusted origin, every credential.

        Returns the connection and what the server sent first (a welcome message, say).

        Raises:
            ProbeError: when the server refuses it (the probes that need it cannot run).
        """
        response, conn = await self.handshake(label, token=True, ticket=True)
        if conn is None:
            raise ProbeError(f"a legitimate handshake was refused ({response.describe()})")
        first = await conn.collect(0.3)
        if first.closed:
            await conn.close()
            raise ProbeError(f"the server closed a legitimate connection ({first.describe()})")
        return conn, first

    def saw_close(self, label: str, received: wire.Received) -> None:
        if received.close_code is not None:
            self.closes.append((label, received))
