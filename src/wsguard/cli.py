"""The ``wsguard`` command line: check and show configuration, run the server.

Every expected failure (a bad config, a certificate that will not load, a port in use) is one
line on stderr, ``error: <field>: <problem>``, and exit status 2; never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from wsguard import __version__
from wsguard.config import insecure_switches, load_settings, render_settings
from wsguard.exceptions import ConfigError, WsGuardError

__all__ = ["cli", "main"]

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

_FILE = click.Path(dir_okay=False, path_type=Path)
_set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one setting, e.g. --set limits.max_message_bytes=1048576 (repeatable).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="wsguard", message="%(prog)s %(version)s")
def cli() -> None:
    """wsguard: a secure-by-default WebSocket server."""


@cli.group()
def config() -> None:
    """Check or print a configuration file."""


@config.command("check")
@click.argument("file", type=_FILE)
@_set_option
def config_check(file: Path, overrides: tuple[str, ...]) -> int:
    """Validate FILE (plus environment and --set overrides) and list insecure switches."""
    settings = load_settings(file, overrides=overrides)
    click.echo(f"{file}: OK")
    for warning in insecure_switches(settings):
        click.echo(f"warning: {warning}")
    return 0


@config.command("show")
@click.argument("file", type=_FILE)
@_set_option
def config_show(file: Path, overrides: tuple[str, ...]) -> int:
    """Print the effective configuration as TOML; secrets show only their variable's name."""
    settings = load_settings(file, overrides=overrides)
    click.echo(render_settings(settings), nl=False)
    return 0


@cli.command()
@click.option("-c", "--config", "config_file", type=_FILE, help="TOML configuration file.")
@_set_option
@click.option("--host", help="Bind address (same as --set server.host=...).")
@click.option("--port", type=int, help="Port, 0 for any free one (same as --set server.port=...).")
@click.option(
    "--workers",
    type=int,
    metavar="N",
    help="Processes sharing the port; more than 1 needs broker.url = redis://... "
    "(same as --set server.workers=...).",
)
def serve(
    config_file: Path | None,
    overrides: tuple[str, ...],
    host: str | None,
    port: int | None,
    workers: int | None,
) -> int:
    """Run the server until SIGTERM or SIGINT. Without -c: defaults plus environment."""
    extra = list(overrides)
    if host is not None:
        extra.append(f"server.host={host}")
    if port is not None:
        extra.append(f"server.port={port}")
    if workers is not None:
        extra.append(f"server.workers={workers}")
    # --host, --port and --workers are plain overrides, so every rule (public bind needs TLS,
    # several workers need Redis...) applies.
    settings = load_settings(config_file, overrides=extra)
    from wsguard.server.lifecycle import serve as run_server

    return run_server(settings)


@cli.command()
@click.option(
    "--port",
    type=int,
    default=8765,
    show_default=True,
    help="Port of the demo server; the attacker's page uses the next one.",
)
def demo(port: int) -> int:
    """Run the demo: a live chat and ticker feed behind ticket sign-in, on 127.0.0.1, and a
    foreign page whose hijack attempts fail. Prints both URLs; opens nothing."""
    from wsguard.demo import run_demo

    return run_demo(port)


@cli.command()
@click.argument("url")
@click.option("--origin", help="The page origin your clients use (default: the URL's own).")
@click.option(
    "--token",
    envvar="WSGUARD_SCAN_TOKEN",
    help="Bearer token sent as Authorization (or set WSGUARD_SCAN_TOKEN).",
)
@click.option(
    "--ticket-cmd",
    metavar="CMD",
    help="Shell command printing a fresh single-use ticket; run once per connection.",
)
@click.option(
    "--ticket-param", default="ticket", show_default=True, help="Query parameter for tickets."
)
@click.option(
    "--cookie",
    envvar="WSGUARD_SCAN_COOKIE",
    help="Cookie header value a logged-in browser sends (or set WSGUARD_SCAN_COOKIE).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "sarif", "html"]),
    default="table",
    show_default=True,
)
@click.option("--out", type=_FILE, help="Write the report to this file.")
@click.option(
    "--checks",
    multiple=True,
    metavar="GROUPS",
    help="Only these groups, comma-separated: origin, host, tls, auth, limits, framing, "
    "input, disclosure (repeatable).",
)
@click.option(
    "--max-rate",
    type=float,
    default=10.0,
    show_default=True,
    help="New connections per second, at most 50.",
)
@click.option(
    "--fail-on",
    default="low",
    show_default=True,
    type=click.Choice(["low", "medium", "high", "critical"]),
    help="Exit 1 when a finding is at least this severe.",
)
@click.option(
    "--fail-on-inconclusive",
    is_flag=True,
    help="Exit 1 also when a check could not conclude (a legitimate handshake was refused...).",
)
@click.option(
    "--cacert",
    type=click.Path(path_type=Path),
    help="CA bundle that signs the server's certificate.",
)
@click.option(
    "--timeout", type=float, default=5.0, show_default=True, help="Seconds per probe step."
)
@click.option(
    "--idle-wait",
    type=float,
    default=0.0,
    show_default=True,
    help="Hold a silent connection this long to check the idle timeout (0: skip).",
)
@click.option(
    "--slowloris-wait",
    type=float,
    default=12.0,
    show_default=True,
    help="How long a half-sent handshake is held open before the server is judged to have "
    "no handshake timeout.",
)
@click.option(
    "--i-have-permission",
    "permission",
    is_flag=True,
    help="Allow a target that is not on this machine's loopback interface.",
)
def scan(
    url: str,
    origin: str | None,
    token: str | None,
    ticket_cmd: str | None,
    ticket_param: str,
    cookie: str | None,
    fmt: str,
    out: Path | None,
    checks: tuple[str, ...],
    max_rate: float,
    fail_on: str,
    fail_on_inconclusive: bool,
    cacert: Path | None,
    timeout: float,
    idle_wait: float,
    slowloris_wait: float,
    permission: bool,
) -> int:
    """Audit the WebSocket endpoint at URL (ws:// or wss://) for the weaknesses wsguard
    prevents. Exit status: 0 clean, 1 findings at or above --fail-on, 2 error."""
    from wsguard.scanner.command import scan_command

    return scan_command(
        url,
        origin=origin,
        token=token,
        ticket_cmd=ticket_cmd,
        ticket_param=ticket_param,
        cookie=cookie,
        fmt=fmt,
        out=out,
        checks=checks,
        max_rate=max_rate,
        fail_on=fail_on,
        cafile=cacert,
        timeout=timeout,
        idle_wait=idle_wait,
        permission=permission,
        slowloris_wait=slowloris_wait,
        fail_on_inconclusive=fail_on_inconclusive,
    )


@cli.group()
def ticket() -> None:
    """One-time tickets for browser clients."""


@ticket.command("mint")
@click.argument("user")
@click.option("--origin", required=True, help="The page origin that will connect.")
@click.option("--ttl", type=float, default=None, help="Seconds (default auth.ticket.ttl).")
@click.option("--role", "roles", multiple=True, help="A role to grant (repeatable).")
@click.option("--channel", "channels", multiple=True, help="A channel to grant (repeatable).")
@click.option("-c", "--config", "config_file", type=_FILE, help="TOML configuration file.")
def ticket_mint(
    user: str,
    origin: str,
    ttl: float | None,
    roles: tuple[str, ...],
    channels: tuple[str, ...],
    config_file: Path | None,
) -> int:
    """Print a ticket for USER, signed with the secret in auth.ticket.secret_env."""
    import os

    from wsguard.tickets import mint, ticket_secret

    settings = load_settings(config_file)
    config = settings.auth.ticket
    try:
        value = mint(
            user,
            origin,
            ttl=config.ttl if ttl is None else ttl,
            roles=roles,
            channels=channels,
            secret=ticket_secret(config, os.environ),
        )
    except ValueError as exc:
        raise ConfigError("ticket", str(exc)) from None
    click.echo(value)
    return 0


@cli.group()
def users() -> None:
    """Manage the HTTP Basic users file (auth.basic.users_file)."""


@users.command("add")
@click.argument("file", type=_FILE)
@click.argument("user")
@click.option("--role", "roles", multiple=True, metavar="ROLE", help="Grant ROLE (repeatable).")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts and CI).",
)
def users_add(file: Path, user: str, roles: tuple[str, ...], password_stdin: bool) -> int:
    """Add USER to FILE with an argon2id password hash, or replace their entry.

    Creates FILE (mode 0600) when missing; other users are kept. Prompts for the password
    unless --password-stdin is given; never prints the password or its hash.
    """
    from wsguard.users import add_user, check_password

    password: str
    if password_stdin:
        # One line, without its line ending: "echo $PASSWORD | wsguard users add ..." works.
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    check_password(password)
    add_user(file, user, password, roles)
    click.echo(f"added {user} to {file}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status (the ``wsguard`` console script).

    Any ``WsGuardError`` becomes one line on stderr and status 2; Ctrl-C is status 130.
    """
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="wsguard",
            standalone_mode=False,
        )
    except WsGuardError as exc:
        click.echo("error: " + " ".join(str(exc).splitlines()), err=True)
        return EXIT_CONFIG
    except click.ClickException as exc:  # usage errors: click's own message, status 2
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
