"""Run a scan: the probe groups in order, each bounded, with progress reported as they finish.

The slow probe (an unfinished handshake held up to ``slow_wait`` seconds) runs alongside the
others so a whole scan takes about that long. A group that cannot conclude (the target refused a
legitimate connection, the budget ran out) leaves its undecided checks skipped with the reason;
it never stops the other groups.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Awaitable, Callable
from typing import Final

from wsguard import __version__
from wsguard.scanner import frames, probes
from wsguard.scanner.checks import CATALOGUE, GROUPS
from wsguard.scanner.model import ScanResult
from wsguard.scanner.session import ProbeError, ScanSession, client_tls_context
from wsguard.scanner.target import ScanOptions

__all__ = ["STEPS", "ScanError", "run_scan"]

Progress = Callable[[str], None]


class ScanError(Exception):
    """The target cannot be scanned at all (nothing listens, TLS never completes...)."""


# (group, description, probe): the order matters; TLS first so an unverifiable certificate
# switches the rest of the scan to unverified connections.
STEPS: Final[tuple[tuple[str, str, Callable[[ScanSession], Awaitable[None]]], ...]] = (
    ("tls", "transport and TLS", probes.probe_tls),
    ("origin", "Origin (cross-site hijacking)", probes.probe_origin),
    ("host", "Host (DNS rebinding)", probes.probe_host),
    ("auth", "authentication", probes.probe_auth),
    ("limits", "size, fragment, compression and ping limits", frames.probe_limits),
    ("framing", "RFC 6455 framing rules", frames.probe_framing),
    ("input", "reflected input", frames.probe_input),
)


def _selected(options: ScanOptions, group: str) -> bool:
    return not options.groups or group in options.groups


async def _reachable(s: ScanSession) -> None:
    # Unverified: a certificate problem is the TLS probe's finding, not a reason to stop.
    try:
        conn = await s.connect(tls=client_tls_context(None, verify=False))
    except ProbeError as exc:
        raise ScanError(str(exc)) from None
    await conn.close()


SLOW_CHECK: Final = "limits-handshake-timeout"  # decided by the probe running alongside


async def _slow(s: ScanSession) -> None:
    try:
        await frames.probe_slow_handshake(s)
    except ProbeError as exc:
        s.verdicts.skip(SLOW_CHECK, str(exc), inconclusive=True)


def _skip_rest(
    s: ScanSession, group: str, reason: str, *, slow: bool = False, inconclusive: bool = True
) -> None:
    for check in CATALOGUE:
        if check.group == group and (slow or check.id != SLOW_CHECK):
            s.verdicts.skip(check.id, reason, inconclusive=inconclusive)


async def _guarded(
    s: ScanSession, group: str, step: Callable[[ScanSession], Awaitable[None]]
) -> None:
    try:
        await step(s)
    except ProbeError as exc:
        _skip_rest(s, group, str(exc))
    # Whatever a step left undecided (it returned early) is reported, not silently dropped.
    _skip_rest(s, group, "not concluded")


async def run_scan(options: ScanOptions, progress: Progress | None = None) -> ScanResult:
    """Scan ``options.target`` and return every verdict.

    Raises:
        ScanError: when the target cannot be reached at all.
    """
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    clock = time.monotonic()
    s = ScanSession(options)
    report = progress or (lambda _: None)
    await _reachable(s)
    slow: asyncio.Task[None] | None = None
    if _selected(options, "limits"):
        slow = asyncio.create_task(_slow(s))
    for group, description, step in STEPS:
        if not _selected(options, group):
            continue
        await _guarded(s, group, step)
        report(description)
    if slow is not None:
        await slow
        report("handshake timeout")
    if _selected(options, "disclosure"):
        frames.probe_disclosure(s)
        report("disclosure")
    for group in GROUPS:
        if not _selected(options, group):
            _skip_rest(s, group, "not selected (--checks)", slow=True, inconclusive=False)
    order = {check.id: index for index, check in enumerate(CATALOGUE)}
    s.verdicts.findings.sort(key=lambda f: order[f.check.id])
    s.verdicts.passed.sort(key=order.__getitem__)
    return ScanResult(
        target=options.target.redacted(),
        started=started,
        duration=round(time.monotonic() - clock, 2),
        findings=s.verdicts.findings,
        passed=s.verdicts.passed,
        skipped=dict(sorted(s.verdicts.skipped.items(), key=lambda kv: order[kv[0]])),
        requests=s.requests,
        inconclusive=sorted(s.verdicts.inconclusive, key=order.__getitem__),
        version=__version__,
    )


def step_count(options: ScanOptions) -> int:
    """How many progress ticks :func:`run_scan` reports for ``options``."""
    count = sum(1 for group, _, _ in STEPS if _selected(options, group))
    count += _selected(options, "limits") + _selected(options, "disclosure")
    return count
