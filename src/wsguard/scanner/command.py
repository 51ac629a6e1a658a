"""``wsguard scan``: options in, a report and an exit status out.

Exit status: 0 when no finding is at or above ``--fail-on``, 1 when one is (or, with
``--fail-on-inconclusive``, when a check could not conclude), 2 for a usage error, a refused
target (not loopback, no ``--i-have-permission``) or a target that cannot be reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from wsguard.exceptions import ConfigError
from wsguard.scanner.checks import CATALOGUE, GROUPS
from wsguard.scanner.model import Severity
from wsguard.scanner.report import write_report
from wsguard.scanner.runner import ScanError, run_scan, step_count
from wsguard.scanner.target import Credentials, ScanOptions, is_loopback, parse_target

__all__ = ["EXIT_CLEAN", "EXIT_FINDINGS", "parse_groups", "scan_command"]

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
MAX_RATE = 50.0  # connections per second; above this the scanner would be a load generator


def parse_groups(values: Sequence[str]) -> frozenset[str]:
    """``--checks origin,tls --checks auth`` → the groups; ``ConfigError`` names a bad one."""
    groups = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(groups - set(GROUPS))
    if unknown:
        raise ConfigError(
            "--checks", f"unknown group {unknown[0]!r} (choose from {', '.join(GROUPS)})"
        )
    return frozenset(groups)


def scan_command(
    url: str,
    *,
    origin: str | None,
    token: str | None,
    ticket_cmd: str | None,
    ticket_param: str,
    cookie: str | None,
    fmt: str,
    out: Path | None,
    checks: Sequence[str],
    max_rate: float,
    fail_on: str,
    cafile: Path | None,
    timeout: float,
    idle_wait: float,
    permission: bool,
    slowloris_wait: float = 12.0,
    fail_on_inconclusive: bool = False,
    console: Console | None = None,
) -> int:
    """Validate the options, run the scan and write the report; return the exit status.

    Raises:
        ConfigError: naming the option that is wrong, or why the target is refused.
    """
    try:
        target = parse_target(url)
    except ValueError as exc:
        raise ConfigError("URL", str(exc)) from None
    try:
        threshold = Severity.parse(fail_on)
    except ValueError as exc:
        raise ConfigError("--fail-on", str(exc)) from None
    if not 0 < max_rate <= MAX_RATE:
        raise ConfigError("--max-rate", f"must be above 0 and at most {MAX_RATE:g} per second")
    if not 0 < timeout <= 60:
        raise ConfigError("--timeout", "must be above 0 and at most 60 seconds")
    if not 0 <= idle_wait <= 600:
        raise ConfigError("--idle-wait", "must be from 0 to 600 seconds")
    if not 1 <= slowloris_wait <= 120:
        raise ConfigError("--slowloris-wait", "must be from 1 to 120 seconds")
    if cafile is not None and not cafile.is_file():
        raise ConfigError("--cacert", f"{cafile} is not a file")
    if not permission and not is_loopback(target.host):
        raise ConfigError(
            "URL",
            f"{target.host} is not a loopback address; the scanner sends hostile traffic, so scan"
            " only servers you are allowed to test and say so with --i-have-permission",
        )
    options = ScanOptions(
        target=target,
        origin=origin or target.default_origin,
        credentials=Credentials(token, ticket_cmd, ticket_param, cookie),
        groups=parse_groups(checks),
        max_rate=max_rate,
        timeout=timeout,
        cafile=str(cafile) if cafile else None,
        idle_wait=idle_wait,
        slow_wait=slowloris_wait,
    )
    console = console or Console()
    errors = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]scanning"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    )
    with progress:
        task = progress.add_task("connecting", total=step_count(options))

        def advance(done: str) -> None:
            progress.update(task, advance=1, description=done)

        try:
            result = asyncio.run(run_scan(options, advance))
        except ScanError as exc:
            raise ConfigError("URL", f"cannot scan {target.host_header}: {exc}") from None
    write_report(result, fmt, CATALOGUE, out, console)
    if out is not None and fmt != "table":
        errors.print(f"wrote {fmt} report to {out}", highlight=False, markup=False, soft_wrap=True)
    if result.inconclusive:
        errors.print(
            f"warning: {len(result.inconclusive)} check(s) could not conclude"
            f" ({', '.join(result.inconclusive)}); the report's skipped list says why",
            highlight=False,
            markup=False,
            soft_wrap=True,  # one line, however long: scripts grep for it
        )
    worst = result.worst()
    if worst is not None and worst >= threshold:
        return EXIT_FINDINGS
    return EXIT_FINDINGS if fail_on_inconclusive and result.inconclusive else EXIT_CLEAN
