"""Loopback targets for the `wsguard scan` integration tests.

Two kinds of target, both context managers that start a real process on 127.0.0.1 and always
stop it:

- ``naked_target(kind)``: a deliberately weak WebSocket echo server (``tests/support/targets/``;
  each script's docstring lists the weaknesses it is seeded with).
- ``wsguard_production(tmp_path)``: ``wsguard serve`` with ``examples/wsguard.toml`` read in
  place, changed only as far as running on loopback in a test requires (see its docstring).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from support.processes import (
    ProcessLog,
    ProcessStartError,
    free_port,
    listening_process,
    stop,
)

__all__ = [
    "EXAMPLE_CONFIG",
    "KINDS",
    "TRUSTED_ORIGIN",
    "Target",
    "WsguardTarget",
    "naked_target",
    "wsguard_production",
]

ROOT = Path(__file__).resolve().parents[2]
TARGETS = Path(__file__).resolve().parent / "targets"
EXAMPLE_CONFIG = ROOT / "examples" / "wsguard.toml"
TRUSTED_ORIGIN = "https://app.example.com"  # origins.allowed in the example config

KINDS = (
    "aiohttp_echo",
    "websockets_echo",
    "fastapi_echo",
    "substring_origin",
    "tls_selfsigned",
    "hostile",
)
_TLS_KINDS = frozenset({"tls_selfsigned"})
_TRIES = 3  # a port found free can be taken again before the server binds it
_IN_USE = "address already in use"


@dataclass
class Target:
    """A running target. ``cafile`` is the CA that signed a TLS target's certificate (for
    ``tls_selfsigned`` it is NOT meant to be given to the scanner: the failed verification is
    the seeded weakness); ``None`` for ``ws://`` targets. ``log`` holds the process's stderr
    once it has stopped."""

    url: str
    port: int
    cafile: Path | None
    log: ProcessLog


@dataclass
class WsguardTarget(Target):
    """A running ``wsguard serve``.

    Attributes:
        config: the configuration file it was started with (``examples/wsguard.toml``).
        overrides: every ``--set`` it was started with (loopback ones first, then the test's).
        env: the process environment: the secrets (``WSGUARD_TICKET_SECRET``,
            ``WSGUARD_API_KEY``) and ``WSGUARD_*`` overrides that let ``wsguard ticket mint -c
            examples/wsguard.toml`` load the example here.
        ticket_cmd: a shell command, complete with its environment, that prints a fresh
            one-time ticket for user ``scanner`` bound to ``https://app.example.com``.
        api_port: the internal HTTP API's port.
        log_path: the file the server's stderr (JSON audit log) goes to.
    """

    config: Path = EXAMPLE_CONFIG
    overrides: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    ticket_cmd: str = ""
    api_port: int = 0
    log_path: Path | None = None


@contextlib.contextmanager
def naked_target(kind: str, *, extra_args: Sequence[str] = ()) -> Iterator[Target]:
    """Start the weak target ``kind`` (one of ``KINDS``) on a free loopback port.

    ``extra_args`` go to its script (``("--compress",)`` for ``aiohttp_echo``). The url is
    ``ws://127.0.0.1:N/ws``, or ``wss://`` for ``tls_selfsigned`` (its certificate files live in
    a temporary directory for the duration of the block).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown target {kind!r}; known: {', '.join(KINDS)}")
    script = TARGETS / f"{kind}.py"
    tls = kind in _TLS_KINDS
    with tempfile.TemporaryDirectory(prefix=f"wsguard-{kind}-") as folder:
        args = list(extra_args)
        cafile: Path | None = None
        if tls:
            args += ["--cert-dir", folder]
            cafile = Path(folder) / "ca.pem"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        error: RuntimeError | None = None
        for _ in range(_TRIES):
            port = free_port()
            command = [sys.executable, str(script), "--port", str(port), *args]
            try:
                with listening_process(kind, command, port, env=env, cwd=ROOT) as log:
                    scheme = "wss" if tls else "ws"
                    yield Target(f"{scheme}://127.0.0.1:{port}/ws", port, cafile, log)
                    return
            except ProcessStartError as exc:
                if _IN_USE not in str(exc).lower():
                    raise
                error = exc
        raise RuntimeError(f"{kind}: no free port after {_TRIES} tries: {error}")


def _write_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A trustme CA and a certificate for 127.0.0.1: ``(cert, key, ca)`` files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    return cert_file, key_file, ca_file


def _env_name(key: str) -> str:
    return "WSGUARD_" + key.replace(".", "_").upper()


def _loopback_settings(
    port: int, api_port: int, cert: Path | None, key: Path | None
) -> dict[str, str]:
    """The only changes to examples/wsguard.toml, as ``key: TOML value`` text."""
    return {
        "server.host": "127.0.0.1",
        "server.port": str(port),
        # Empty means unset (no TLS) for these optional paths.
        "server.tls_cert": "" if cert is None else str(cert),
        "server.tls_key": "" if key is None else str(key),
        # An entry without a port matches only the scheme's default port (443 for wss://).
        "origins.allowed_hosts": f'["127.0.0.1:{port}"]',
        # The example's JWKS URL (auth.example.com) is unreachable from a test.
        "auth.methods": '["ticket"]',
        "api.port": str(api_port),
    }


@contextlib.contextmanager
def wsguard_production(
    tmp_path: Path, *, overrides: Sequence[str] = (), plaintext: bool = False
) -> Iterator[WsguardTarget]:
    """Run ``wsguard serve -c examples/wsguard.toml`` on loopback, as close to production as a
    test allows.

    The config file is used in place (its ``schema = "schemas/chat-message.json"`` is relative
    to it). The only ``--set`` overrides are: ``server.host=127.0.0.1``, free ``server.port``
    and ``api.port``, ``server.tls_cert``/``tls_key`` from a fresh trustme CA for 127.0.0.1
    (its ``ca.pem`` is ``cafile``), ``origins.allowed_hosts=["127.0.0.1:PORT"]`` and
    ``auth.methods=["ticket"]``. ``origins.allowed`` stays ``["https://app.example.com"]``, and
    every limit stays as in the example (``handshake_rate = 10``/s with ``handshake_burst = 20``
    per IP: a scanner that opens many sockets quickly will see 429s). ``overrides`` are appended
    as further ``--set`` options (they win). ``plaintext=True`` unsets the certificate: the url
    is ``ws://`` (plain ws:// from a loopback peer is accepted even without
    ``server.allow_plaintext``).

    The server's stderr goes to a file in ``tmp_path`` (a pipe nobody reads would fill up with
    audit lines and stall the server); ``log.stderr`` holds it once the block ends.
    """
    folder = tmp_path / "wsguard-production"
    cert, key, ca = _write_certificates(folder / "tls")
    secrets_env = {
        "WSGUARD_TICKET_SECRET": secrets.token_urlsafe(48),
        "WSGUARD_API_KEY": secrets.token_urlsafe(40),
    }
    last_error = ""
    for _ in range(_TRIES):
        port, api_port = free_port(), free_port()
        if port == api_port:
            continue
        loopback = _loopback_settings(
            port, api_port, None if plaintext else cert, None if plaintext else key
        )
        sets = tuple(f"{k}={v}" for k, v in loopback.items()) + tuple(overrides)
        # `ticket mint` has no --set: it reads the same changes from WSGUARD_* variables
        # (otherwise it fails on the example's /etc/wsguard/tls paths).
        config_env = {_env_name(k): v for k, v in loopback.items()}
        env = {**os.environ, **config_env, **secrets_env, "PYTHONUNBUFFERED": "1"}
        target = WsguardTarget(
            url=f"{'ws' if plaintext else 'wss'}://127.0.0.1:{port}/ws",
            port=port,
            cafile=None if plaintext else ca,
            log=ProcessLog(),
            config=EXAMPLE_CONFIG,
            overrides=sets,
            env=env,
            ticket_cmd=_ticket_command({**config_env, **secrets_env}),
            api_port=api_port,
            log_path=folder / f"serve-{port}.log",
        )
        command = [sys.executable, "-m", "wsguard.cli", "serve", "-c", str(EXAMPLE_CONFIG)]
        for item in sets:
            command += ["--set", item]
        started = False
        with _serve(command, env, target) as ready:
            if ready:
                started = True
                yield target
        if started:
            return
        last_error = target.log.stderr
        if _IN_USE not in last_error.lower():
            raise RuntimeError(f"wsguard serve did not start: {last_error[-2000:]}")
    raise RuntimeError(f"wsguard serve: no free ports after {_TRIES} tries: {last_error[-2000:]}")


def _ticket_command(env: Mapping[str, str]) -> str:
    assignments = [f"{name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    argv = [sys.executable, "-m", "wsguard.cli", "ticket", "mint", "scanner"]
    argv += ["--origin", TRUSTED_ORIGIN, "-c", str(EXAMPLE_CONFIG)]
    return " ".join(["env", *assignments, shlex.join(argv)])


@contextlib.contextmanager
def _serve(command: list[str], env: Mapping[str, str], target: WsguardTarget) -> Iterator[bool]:
    """Run ``command``; yield whether it printed its "listening" line (stderr to a file)."""
    assert target.log_path is not None
    with target.log_path.open("wb") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            command, cwd=ROOT, env=dict(env), stdout=subprocess.PIPE, stderr=log
        )
    assert proc.stdout is not None
    try:
        # `wsguard serve` prints "wsguard listening on port N" once it accepts, or exits.
        line = proc.stdout.readline().decode()
        yield line.startswith("wsguard listening on port ")
    finally:
        stop(proc, grace=15)
        proc.stdout.close()
        target.log.stderr = target.log_path.read_text(errors="replace")
