"""`wsguard serve --workers N`: real processes sharing one port, real clients, real Redis.

Which worker serves a connection is read from the kernel: the established sockets on the
server's port that each worker process holds (``/proc/<pid>/fd`` against ``/proc/net/tcp``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from support.redisdb import REDIS_URL, drop_prefix, unique_prefix

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux /proc"),
]

API_KEY = "k" * 40
CLIENTS = 30
BOUND = 30.0  # seconds any single wait in these tests may take


def config_text(broker_url: str, prefix: str | None) -> str:
    broker = f'[broker]\nurl = "{broker_url}"\n'
    if prefix is not None:
        broker += f'prefix = "{prefix}"\n'
    return f"""
[server]
host = "127.0.0.1"
port = 0

[auth]
required = false   # anonymous mode, explicitly

[api]
port = 0

[log]
format = "json"

[[channels]]
pattern = "news:live"
subscribe = ["anonymous"]

{broker}"""


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = unique_prefix()
    yield prefix
    asyncio.run(drop_prefix(prefix))


@pytest.fixture
def redis_config(tmp_path: Path, redis_prefix: str) -> Path:
    path = tmp_path / "wsguard.toml"
    path.write_text(config_text(REDIS_URL, redis_prefix))
    return path


# ------------------------------------------------------------------ the process and its workers


@dataclass
class Supervisor:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def workers(self) -> set[int]:
        """The pids of the live worker processes (multiprocessing also runs a resource tracker)."""
        pids = set()
        for pid in children(self.proc.pid):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
                if b"spawn_main" in cmdline and state != "Z":
                    pids.add(pid)
        return pids

    def wait_workers(self, count: int, *, other_than: frozenset[int] = frozenset()) -> set[int]:
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            pids = self.workers()
            if len(pids) == count and not pids & other_than and self.listening(pids) == pids:
                return pids
            time.sleep(0.05)
        raise AssertionError(f"no {count} listening workers besides {other_than}: {pids}")

    def listening(self, pids: set[int]) -> set[int]:
        """Which of ``pids`` hold a listening socket on the port."""
        inodes = tcp_inodes(self.port, state="0A")
        return {pid for pid in pids if socket_inodes(pid) & inodes}

    def api_port(self) -> int:
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            found = re.search(r"internal API on http://127\.0\.0\.1:(\d+)", self.log())
            if found:
                return int(found.group(1))
            time.sleep(0.05)
        raise AssertionError("no internal API port in the log")


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                if int(fields[1]) == pid:
                    found.add(int(entry.name))
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def tcp_inodes(port: int, *, state: str) -> set[int]:
    """Inodes of the TCP sockets with local port ``port`` in ``state`` (01 established, 0A
    listen)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                    inodes.add(int(fields[9]))
    return inodes


def connections_per_worker(supervisor: Supervisor) -> dict[int, int]:
    established = tcp_inodes(supervisor.port, state="01")
    return {pid: len(socket_inodes(pid) & established) for pid in supervisor.workers()}


def serve_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "wsguard.cli", "serve", "-c", str(config), *args]


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no line on stdout within {timeout} s"
    return proc.stdout.readline().decode()


@contextlib.contextmanager
def wsguard_workers(
    config: Path, workers: int, *args: str, env: dict[str, str] | None = None
) -> Iterator[Supervisor]:
    log_path = config.with_suffix(".log")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            serve_command(config, "--workers", str(workers), *args),
            stdout=subprocess.PIPE,
            stderr=log_file,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    supervisor = None
    try:
        line = read_line(proc, BOUND)
        assert line.startswith("wsguard listening on port "), (line, log_path.read_text())
        supervisor = Supervisor(proc, int(line.rsplit(" ", 1)[1]), log_path)
        yield supervisor
    finally:
        pids = supervisor.workers() if supervisor is not None else set()
        if proc.poll() is None:
            proc.kill()
        proc.wait(BOUND)
        for pid in pids:  # a supervisor killed by the test above leaves its workers behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert proc.stdout is not None
        proc.stdout.close()


# ------------------------------------------------------------------ clients


async def open_clients(port: int, count: int) -> list[ClientConnection]:
    async def one() -> ClientConnection:
        ws = await connect(f"ws://127.0.0.1:{port}/ws", origin=f"http://127.0.0.1:{port}")
        welcome = orjson.loads(await ws.recv())
        assert welcome["push"] == "welcome", welcome
        return ws

    return list(await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), BOUND))


async def ping(ws: ClientConnection, request_id: int = 1) -> object:
    await ws.send(orjson.dumps({"id": request_id, "op": "ping"}).decode())
    return orjson.loads(await asyncio.wait_for(ws.recv(), BOUND))


async def close_all(clients: list[ClientConnection]) -> None:
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    code = proc.wait(timeout)
    return code, time.monotonic() - started


# ------------------------------------------------------------------ tests


def test_two_workers_on_the_memory_broker_are_refused_before_binding(tmp_path: Path):
    config = tmp_path / "memory.toml"
    config.write_text(config_text("memory://", None))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        serve_command(config, "--workers", "2", "--port", str(port)),
        capture_output=True,
        timeout=BOUND,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == b""
    err = result.stderr.decode().strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert err.startswith(
        "error: server.workers: more than one worker needs a shared broker: set broker.url to "
        "redis://..."
    )
    # Nothing listens on the port it was given: neither the process nor a stray worker.
    with socket.socket() as client, pytest.raises(ConnectionRefusedError):
        client.connect(("127.0.0.1", port))


@pytest.mark.redis
def test_a_port_in_use_is_refused_by_the_supervisor_with_one_line(redis_config: Path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = subprocess.run(
            serve_command(redis_config, "--workers", "2", "--port", str(port)),
            capture_output=True,
            timeout=BOUND,
            check=False,
        )
    assert result.returncode == 2
    assert result.stdout == b""
    err = result.stderr.decode().strip().splitlines()
    assert err[-1].startswith(f"error: server.port: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in result.stderr.decode()


@pytest.mark.redis
def test_three_workers_share_the_port_and_stop_on_sigterm(redis_config: Path):
    with wsguard_workers(redis_config, 3) as supervisor:
        pids = supervisor.wait_workers(3)

        async def scenario() -> tuple[dict[int, int], list[int]]:
            clients = await open_clients(supervisor.port, CLIENTS)
            replies = await asyncio.gather(*(ping(ws) for ws in clients))
            assert replies == [{"id": 1, "ok": True, "result": {}}] * CLIENTS
            spread = connections_per_worker(supervisor)
            supervisor.proc.send_signal(signal.SIGTERM)
            codes = []
            for ws in clients:
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), BOUND)
                assert info.value.rcvd is not None
                codes.append(info.value.rcvd.code)
            return spread, codes

        spread, codes = asyncio.run(scenario())
        code, took = wait_exit(supervisor.proc, BOUND)
        assert supervisor.proc.stdout is not None
        rest = supervisor.proc.stdout.read().decode()

    assert set(spread) == pids
    assert sum(spread.values()) == CLIENTS
    assert len([n for n in spread.values() if n > 0]) >= 2, spread
    assert codes == [1001] * CLIENTS
    assert code == 0
    assert took < 5.0 + 5.0  # limits.close_timeout + the supervisor's grace
    assert rest == ""  # the one "listening" line was the only output
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    log = supervisor.log()
    assert log.count('"listening on ws://127.0.0.1:') == 3
    assert "SIGTERM: stopping 3 workers" in log


@pytest.mark.redis
def test_sigint_stops_the_workers_through_the_supervisor(redis_config: Path):
    with wsguard_workers(redis_config, 2) as supervisor:
        pids = supervisor.wait_workers(2)
        # A terminal's Ctrl-C reaches the whole group: workers ignore it, the supervisor
        # forwards SIGTERM, and everyone exits cleanly.
        for pid in (supervisor.proc.pid, *pids):
            os.kill(pid, signal.SIGINT)
        code, _ = wait_exit(supervisor.proc, BOUND)
    assert code == 0
    log = supervisor.log()
    assert "SIGINT: stopping 2 workers" in log
    assert "Traceback" not in log
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


@pytest.mark.redis
def test_a_killed_worker_is_restarted_and_the_port_keeps_serving(redis_config: Path):
    with wsguard_workers(redis_config, 3) as supervisor:
        before = supervisor.wait_workers(3)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        after = supervisor.wait_workers(3, other_than=frozenset({victim}))
        (newcomer,) = after - before

        async def scenario() -> dict[int, int]:
            clients = await open_clients(supervisor.port, CLIENTS)
            replies = await asyncio.gather(*(ping(ws, 7) for ws in clients))
            assert replies == [{"id": 7, "ok": True, "result": {}}] * CLIENTS
            spread = connections_per_worker(supervisor)
            await close_all(clients)
            return spread

        spread = asyncio.run(scenario())
        assert supervisor.proc.poll() is None
        supervisor.proc.send_signal(signal.SIGTERM)
        code, _ = wait_exit(supervisor.proc, BOUND)

    assert code == 0
    assert set(spread) == after
    assert sum(spread.values()) == CLIENTS
    assert spread[newcomer] > 0, spread  # the replacement accepts connections on the port
    log = supervisor.log()
    assert f"(pid {victim}) was killed by SIGKILL: restarting it" in log


@pytest.mark.redis
@pytest.mark.slow
def test_a_crash_loop_stops_the_supervisor_with_status_1(redis_config: Path):
    with wsguard_workers(redis_config, 2) as supervisor:
        pids = supervisor.wait_workers(2)
        for _ in range(5):  # five restarts a minute are allowed
            victim = min(pids)
            os.kill(victim, signal.SIGKILL)
            pids = supervisor.wait_workers(2, other_than=frozenset({victim}))
        os.kill(min(pids), signal.SIGKILL)  # the sixth death within the minute
        code, _ = wait_exit(supervisor.proc, BOUND)
    assert code == 1
    log = supervisor.log()
    assert log.count("was killed by SIGKILL: restarting it") == 5
    assert "5 restarts in the last 60 s already: stopping" in log
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


@pytest.mark.redis
def test_an_api_publication_reaches_subscribers_on_every_worker(redis_config: Path):
    env = {"WSGUARD_API_KEY": API_KEY}
    with wsguard_workers(redis_config, 3, env=env) as supervisor:
        supervisor.wait_workers(3)
        api_port = supervisor.api_port()

        async def scenario() -> tuple[dict[int, int], list[dict[str, object]]]:
            clients = await open_clients(supervisor.port, CLIENTS)
            for ws in clients:
                await ws.send(
                    orjson.dumps({"id": 2, "op": "subscribe", "channel": "news:live"}).decode()
                )
            replies = [orjson.loads(await asyncio.wait_for(ws.recv(), BOUND)) for ws in clients]
            assert all(r["id"] == 2 and r["ok"] for r in replies), replies
            spread = connections_per_worker(supervisor)
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{api_port}/api/publish"
                body = {"channel": "news:live", "data": {"text": "to everyone"}}
                async with http.post(url, json=body, headers=headers) as response:
                    assert response.status == 200, await response.text()
            pushes = [orjson.loads(await asyncio.wait_for(ws.recv(), BOUND)) for ws in clients]
            await close_all(clients)
            return spread, pushes

        spread, pushes = asyncio.run(scenario())
        supervisor.proc.send_signal(signal.SIGTERM)
        assert wait_exit(supervisor.proc, BOUND)[0] == 0

    assert len([n for n in spread.values() if n > 0]) >= 2, spread
    assert [(p["push"], p["channel"], p["data"]) for p in pushes] == [
        ("message", "news:live", {"text": "to everyone"})
    ] * CLIENTS
    # The API port is shared too: every worker bound it with SO_REUSEPORT.
    assert supervisor.log().count("internal API listening on http://127.0.0.1:") == 3


@pytest.mark.redis
def test_workers_shut_down_gracefully_when_the_supervisor_is_killed(redis_config: Path):
    with wsguard_workers(redis_config, 2) as supervisor:
        pids = supervisor.wait_workers(2)
        supervisor.proc.kill()
        supervisor.proc.wait(BOUND)
        deadline = time.monotonic() + BOUND
        while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    log = supervisor.log()
    assert log.count("the supervisor is gone: shutting down") == 2
    with socket.socket() as client, pytest.raises(ConnectionRefusedError):
        client.connect(("127.0.0.1", supervisor.port))


TICKET_CONFIG = """
[server]
host = "127.0.0.1"
port = 0

[auth]
methods = ["ticket"]

[api]
port = 0

[broker]
url = "{url}"
prefix = "{prefix}"
"""


@pytest.mark.redis
def test_an_api_revocation_closes_the_users_sockets_on_every_worker(
    tmp_path: Path, redis_prefix: str
):
    config = tmp_path / "tickets.toml"
    config.write_text(TICKET_CONFIG.format(url=REDIS_URL, prefix=redis_prefix))
    env = {"WSGUARD_API_KEY": API_KEY, "WSGUARD_TICKET_SECRET": "s" * 40}
    with wsguard_workers(config, 3, env=env) as supervisor:
        supervisor.wait_workers(3)
        api = f"http://127.0.0.1:{supervisor.api_port()}"
        origin = f"http://127.0.0.1:{supervisor.port}"

        async def scenario() -> tuple[dict[int, int], list[int], object]:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with aiohttp.ClientSession(headers=headers) as http:

                async def ticket() -> str:
                    body = {"user": "alice", "origin": origin}
                    async with http.post(f"{api}/api/tickets", json=body) as response:
                        assert response.status == 200, await response.text()
                        return str((await response.json())["result"]["ticket"])

                async def one() -> ClientConnection:
                    # Each ticket is minted by whichever worker takes the API request and
                    # consumed by whichever worker takes the WebSocket.
                    url = f"ws://127.0.0.1:{supervisor.port}/ws?ticket={await ticket()}"
                    ws = await connect(url, origin=origin)
                    welcome = orjson.loads(await asyncio.wait_for(ws.recv(), BOUND))
                    assert (welcome["push"], welcome["user"]) == ("welcome", "alice")
                    return ws

                clients = await asyncio.gather(*(one() for _ in range(CLIENTS)))
                spread = connections_per_worker(supervisor)
                async with http.post(f"{api}/api/revoke", json={"user": "alice"}) as response:
                    assert response.status == 200, await response.text()
                    result = (await response.json())["result"]
            codes = []
            for ws in clients:
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), BOUND)
                assert info.value.rcvd is not None
                codes.append(info.value.rcvd.code)
            return spread, codes, result

        spread, codes, result = asyncio.run(scenario())
        supervisor.proc.send_signal(signal.SIGTERM)
        assert wait_exit(supervisor.proc, BOUND)[0] == 0

    assert len([n for n in spread.values() if n > 0]) >= 2, spread
    assert codes == [4403] * CLIENTS
    assert isinstance(result, dict)
    assert 0 < result["closed"] <= CLIENTS  # the sockets of the worker that answered


@pytest.mark.redis
def test_a_worker_that_fails_to_start_stops_the_others_with_its_error(redis_config: Path):
    # Every worker refuses the short API key when it starts its internal API.
    result = subprocess.run(
        serve_command(redis_config, "--workers", "3"),
        capture_output=True,
        timeout=BOUND,
        check=False,
        env={**os.environ, "WSGUARD_API_KEY": "too-short"},
    )
    assert result.returncode == 2
    assert result.stdout == b""
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: api.key_env: ")
    pids = [int(pid) for pid in re.findall(r"worker \d started \(pid (\d+)\)", err)]
    assert len(pids) == 3
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
