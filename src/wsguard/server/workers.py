"""Pre-fork workers: ``server.workers`` processes share one port through SO_REUSEPORT.

The process that runs ``wsguard serve --workers N`` becomes a supervisor. It never serves a
connection and never creates an event loop; each worker runs the single-process path
(``Server`` plus the internal API when its key is set) and the kernel spreads new connections
across the workers' listening sockets. Shared state (channels, history, tickets, revocations)
lives in the Redis broker, which is why the configuration refuses ``memory://`` here.

Why *spawn* rather than fork: a spawned worker starts from a fresh interpreter and receives
only what it is handed, the pickled ``Settings`` (frozen dataclasses of plain values) and its
end of one pipe. A forked worker would inherit every descriptor of the parent: the port
reservations, and the pipes of its siblings, so no worker would see EOF when the supervisor
dies and a restarted worker would hold its predecessor's pipe; it would also inherit logging
locks and whatever imported libraries (uvloop, redis, aiohttp) set up at import time, and
forking a process that has threads is unsafe. Spawning costs the imports once per worker
(a fraction of a second, in parallel) at start-up and on a restart, which is cheap next to
debugging a state leak, and it behaves the same on macOS, whose default it already is.

Rules:

- Ports are fixed before any worker starts. ``server.port`` (and ``api.port`` when the API
  will run) are first bound *without* SO_REUSEPORT, which fails if anyone already listens
  there (with SO_REUSEPORT we would silently join another wsguard of the same user and take
  half its traffic), then bound again *with* SO_REUSEPORT and kept, bound but never listening,
  until the supervisor exits. A socket that does not listen gets no connections; it keeps the
  port ours while a worker restarts and turns ``port = 0`` into one port for every worker.
- ``wsguard listening on port P`` is printed once, by the supervisor, when all N workers have
  reported that they listen. Workers report over their pipe and never print it.
- The supervisor owns the stop signals. SIGTERM or SIGINT becomes one SIGTERM per worker;
  workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group, and a worker
  must not stop ahead of its supervisor). Workers get ``limits.close_timeout`` plus
  ``STOP_GRACE`` seconds to close their sockets, then SIGKILL. Exit status 0.
- A worker that fails to start stops the start-up: the others are stopped and a
  ``ConfigError`` (a port in use, a bad certificate) is raised as in one process (the CLI
  prints it and exits 2); any other failure exits 1. A broker that cannot be reached is not a
  start-up failure: the broker reconnects.
- A worker that dies later is logged with its exit status or signal and restarted, at most
  ``MAX_RESTARTS`` times in ``RESTART_WINDOW`` seconds across all workers; one more death in
  that window stops everything with exit status 1 (a crash loop must page someone, not spin).
- A worker whose supervisor is gone (its pipe reaches EOF) shuts down gracefully.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Final

from wsguard.exceptions import ConfigError
from wsguard.settings import Settings

__all__ = ["MAX_RESTARTS", "RESTART_WINDOW", "START_TIMEOUT", "STOP_GRACE", "supervise"]

log = logging.getLogger("wsguard.workers")

MAX_RESTARTS: Final = 5
RESTART_WINDOW: Final = 60.0
# Seconds for every worker to report that it listens (a certificate, JWKS fetch, bind).
START_TIMEOUT: Final = 60.0
# Seconds beyond limits.close_timeout before a worker that has not stopped is killed.
STOP_GRACE: Final = 5.0
_EXIT_FAILURE: Final = 1
_EXIT_CONFIG: Final = 2  # the CLI's status for a ConfigError

# Messages a worker sends on its pipe.
_READY: Final = "ready"  # ("ready", pid)
_CONFIG_ERROR: Final = "config_error"  # ("config_error", field, problem)
_ERROR: Final = "error"  # ("error", description)


def supervise(settings: Settings) -> int:
    """Run ``settings.server.workers`` worker processes until SIGTERM or SIGINT.

    Returns:
        0 after a signal and a graceful stop; 1 when a worker fails to start for a reason other
        than its configuration, or when workers keep dying (``MAX_RESTARTS``).

    Raises:
        ConfigError: a port cannot be reserved, or a worker failed to start because of its
            configuration (the worker's own error: ``server.port: cannot listen on ...``).
    """
    with contextlib.ExitStack() as reservations:
        settings = _fix_ports(settings, reservations)
        return _Supervisor(settings).run()


# ---------------------------------------------------------------------------------- ports


def _fix_ports(settings: Settings, stack: contextlib.ExitStack) -> Settings:
    """Reserve the public port (and the API's, when it will run); return settings naming them."""
    server = settings.server
    port = _reserve(server.host, server.port, "server.port", stack)
    settings = replace(settings, server=replace(server, port=port))
    if os.environ.get(settings.api.key_env):
        api = settings.api
        settings = replace(
            settings, api=replace(api, port=_reserve(api.host, api.port, "api.port", stack))
        )
    return settings


def _reserve(host: str, port: int, field: str, stack: contextlib.ExitStack) -> int:
    """Bind (never listen) SO_REUSEPORT sockets on every address of ``host``; return the port."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(field, f"cannot resolve {host}: {exc.strerror}") from None
    # The same addresses, in the same order, as the workers' asyncio.create_server.
    addresses = list(dict.fromkeys((info[0], info[4][0]) for info in infos))
    for family, address in addresses:
        try:
            with _socket(family) as probe:
                probe.bind((address, port))
                port = probe.getsockname()[1]
            reservation = _socket(family, reuse_port=True)
            stack.callback(reservation.close)
            reservation.bind((address, port))
        except OSError as exc:
            raise ConfigError(field, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return port


def _socket(family: int, *, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR as asyncio sets it: connections in TIME_WAIT do not block a restart.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio does
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


# ---------------------------------------------------------------------------------- supervisor


@dataclass(slots=True)
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    ready: bool = False
    error: str | None = None  # what it said before dying

    @property
    def pid(self) -> int:
        return self.process.pid or 0


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class _Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, _Worker] = {}
        self._restarts: deque[float] = deque()
        self._signalled: int | None = None
        self._announced = False

    def run(self) -> int:
        wakeup_r, wakeup_w = socket.socketpair()
        wakeup_r.setblocking(False)
        wakeup_w.setblocking(False)
        # The handlers only record the signal; the wake-up fd interrupts the wait below.
        previous_fd = signal.set_wakeup_fd(wakeup_w.fileno(), warn_on_full_buffer=False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        try:
            for index in range(self.settings.server.workers):
                self._start(index)
            return self._loop(wakeup_r)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            wakeup_r.close()
            wakeup_w.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signalled = signum

    def _start(self, index: int) -> None:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(index, self.settings, theirs),
            name=f"wsguard-worker-{index}",
            daemon=True,  # a supervisor that crashes still terminates its workers at exit
        )
        # SIGINT is blocked while spawning: the worker inherits the mask, so a Ctrl-C during
        # its imports cannot kill it with a traceback; it ignores SIGINT before unblocking.
        # Here the signal stays pending and is handled as soon as the mask is restored.
        masked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, masked)
            theirs.close()  # only the worker holds its end: EOF when it dies
        self._workers[index] = _Worker(index, process, ours)
        log.info("worker %d started (pid %d)", index, process.pid or 0)

    def _loop(self, wakeup: socket.socket) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while self._signalled is None:
            if not self._announced and all(w.ready for w in self._workers.values()):
                self._announced = True
                print(f"wsguard listening on port {self.settings.server.port}", flush=True)
                log.info(
                    "%d workers listening on port %d",
                    len(self._workers),
                    self.settings.server.port,
                )
            timeout = None
            if not self._announced:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    log.error("workers did not start within %.0f s", START_TIMEOUT)
                    return _EXIT_FAILURE
            ready = wait([wakeup, *self._waitables()], timeout)
            if wakeup in ready:
                with contextlib.suppress(BlockingIOError):
                    wakeup.recv(64)
            for worker in list(self._workers.values()):
                if worker.process.sentinel in ready or worker.conn in ready:
                    code = self._check(worker)
                    if code is not None:
                        return code
        log.info(
            "%s: stopping %d workers", signal.Signals(self._signalled).name, len(self._workers)
        )
        return 0

    def _waitables(self) -> Iterator[Connection | int]:
        for worker in self._workers.values():
            if not worker.conn.closed:
                yield worker.conn
            yield worker.process.sentinel

    def _check(self, worker: _Worker) -> int | None:
        """Read what ``worker`` said and whether it died; return an exit status to stop with."""
        self._receive(worker)
        if worker.process.is_alive():
            return None
        worker.process.join()
        why = _describe_exit(worker.process.exitcode)
        if worker.error:
            why += f" ({worker.error})"
        if not self._announced:
            log.error("worker %d (pid %d) %s during start-up", worker.index, worker.pid, why)
            return _EXIT_FAILURE
        now = time.monotonic()
        while self._restarts and self._restarts[0] <= now - RESTART_WINDOW:
            self._restarts.popleft()
        if len(self._restarts) >= MAX_RESTARTS:
            log.error(
                "worker %d (pid %d) %s; %d restarts in the last %.0f s already: stopping",
                worker.index,
                worker.pid,
                why,
                len(self._restarts),
                RESTART_WINDOW,
            )
            return _EXIT_FAILURE
        self._restarts.append(now)
        log.warning("worker %d (pid %d) %s: restarting it", worker.index, worker.pid, why)
        worker.conn.close()
        self._start(worker.index)
        return None

    def _receive(self, worker: _Worker) -> None:
        conn = worker.conn
        try:
            while not conn.closed and conn.poll():
                message = conn.recv()
                if message[0] == _READY:
                    worker.ready = True
                    log.info("worker %d (pid %d) is listening", worker.index, worker.pid)
                elif message[0] == _CONFIG_ERROR:
                    if not self._announced:
                        raise ConfigError(message[1], message[2])
                    worker.error = f"{message[1]}: {message[2]}"
                elif message[0] == _ERROR:
                    worker.error = str(message[1])
        except (EOFError, OSError):
            conn.close()

    def _stop_all(self) -> None:
        """SIGTERM every worker, wait ``limits.close_timeout + STOP_GRACE``, SIGKILL the rest."""
        workers = list(self._workers.values())
        for worker in workers:
            if worker.process.is_alive():
                worker.process.terminate()
        grace = self.settings.limits.close_timeout + STOP_GRACE
        deadline = time.monotonic() + grace
        alive = [w for w in workers if w.process.is_alive()]
        while alive and (left := deadline - time.monotonic()) > 0:
            wait([w.process.sentinel for w in alive], left)
            alive = [w for w in alive if w.process.is_alive()]
        for worker in alive:
            log.warning(
                "worker %d (pid %d) did not stop within %.0f s: killing it",
                worker.index,
                worker.pid,
                grace,
            )
            worker.process.kill()
        for worker in workers:
            worker.process.join(STOP_GRACE)
            worker.conn.close()
            code = worker.process.exitcode
            if code not in (0, None, -signal.SIGTERM, -signal.SIGKILL):
                log.warning("worker %d (pid %d) %s", worker.index, worker.pid, _describe_exit(code))
        self._workers.clear()


_STOP_SIGNALS: Final[Sequence[signal.Signals]] = (signal.SIGTERM, signal.SIGINT)


# ---------------------------------------------------------------------------------- worker


def _worker_main(index: int, settings: Settings, conn: Connection) -> None:
    """A worker process: the single-process server, reporting to its supervisor over ``conn``."""
    # SIGINT arrives blocked (see _Supervisor._start); the supervisor turns it into SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    from wsguard.server.lifecycle import _serve_one, configure_logging

    configure_logging(settings)

    def ready(port: int) -> None:
        conn.send((_READY, os.getpid()))

    try:
        _serve_one(settings, ready, stop_signals=(signal.SIGTERM,), stop_fd=conn.fileno())
    except ConfigError as exc:
        # The supervisor reports it: one "error: field: problem" line, as in one process.
        _tell(conn, (_CONFIG_ERROR, exc.field, exc.problem))
        sys.exit(_EXIT_CONFIG)
    except Exception as exc:
        log.exception("worker %d failed", index)
        _tell(conn, (_ERROR, type(exc).__name__))
        sys.exit(_EXIT_FAILURE)


def _tell(conn: Connection, message: tuple[object, ...]) -> None:
    with contextlib.suppress(OSError):  # the supervisor may be gone already
        conn.send(message)
