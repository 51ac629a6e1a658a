"""Server processes the integration tests start: a free port, and a process that is given a
bounded time to listen on it and is always stopped."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ProcessLog:
    """What the process wrote on stderr; filled in once it has stopped."""

    stderr: str = ""


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class ProcessStartError(RuntimeError):
    """The process exited, or did not listen in time, before the test began."""


@contextlib.contextmanager
def listening_process(
    name: str,
    command: Sequence[str],
    port: int,
    *,
    env: Mapping[str, str],
    cwd: Path,
    within: float = 20.0,
) -> Iterator[ProcessLog]:
    """Start ``command``, wait (up to ``within`` seconds) until 127.0.0.1:``port`` accepts a
    connection, and stop the process (SIGTERM, then SIGKILL) when the block ends.

    stderr goes to a temporary file, not a pipe: a pipe nobody reads until the end fills up
    (64 KiB) when the process logs a lot (a traceback per malformed request) and hangs it.

    Raises:
        ProcessStartError: with the tail of stderr, when the process exits or never listens.
    """
    log = ProcessLog()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            list(command), cwd=cwd, env=dict(env), stdout=subprocess.DEVNULL, stderr=stderr
        )

        def output() -> str:
            stderr.seek(0)
            return stderr.read().decode(errors="replace")

        try:
            deadline = time.monotonic() + within
            while True:
                if proc.poll() is not None:
                    raise ProcessStartError(f"{name} exited: {output()[-2000:]}")
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2),
                ):
                    break
                if time.monotonic() > deadline:
                    raise ProcessStartError(f"{name} did not listen on {port} within {within:g} s")
                time.sleep(0.1)
            yield log
        finally:
            stop(proc)
            log.stderr = output()
