"""`wsguard serve` as a real process: start-up, audit log on stderr, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.integration

CONFIG = """
[server]
host = "127.0.0.1"
port = 0

[auth]
required = false   # anonymous mode, explicitly

[log]
format = "json"
"""


@contextlib.contextmanager
def wsguard_serve(config: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsguard.cli", "serve", "-c", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("wsguard listening on port "), line
        yield proc, int(line.rsplit(" ", 1)[1])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "wsguard.toml"
    path.write_text(CONFIG)
    return path


def test_sigterm_closes_open_sockets_with_1001_and_exits_0(config_file: Path):
    with wsguard_serve(config_file) as (proc, port):

        async def scenario() -> int | None:
            origin = f"http://127.0.0.1:{port}"
            async with connect(f"ws://127.0.0.1:{port}/ws", origin=origin) as ws:
                await ws.recv()
                proc.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 10)
                assert info.value.rcvd is not None
                return info.value.rcvd.code

        assert asyncio.run(scenario()) == 1001
        assert proc.wait(10) == 0


def test_audit_log_never_contains_query_strings_cookies_or_tokens(config_file: Path):
    secrets = ["TICKETSECRET123", "COOKIESECRET456", "BEARERSECRET789"]
    with wsguard_serve(config_file) as (proc, port):

        async def scenario() -> None:
            origin = f"http://127.0.0.1:{port}"
            url = f"ws://127.0.0.1:{port}/ws?ticket={secrets[0]}"
            headers = {"Cookie": f"session={secrets[1]}", "Authorization": f"Bearer {secrets[2]}"}
            async with connect(url, origin=origin, additional_headers=headers) as ws:
                await ws.recv()
            with contextlib.suppress(Exception):
                async with connect(url, origin="http://evil.test", additional_headers=headers):
                    pass

        asyncio.run(scenario())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        log = proc.stderr.read().decode()
    events = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    kinds = [e.get("event") for e in events]
    assert "handshake_accepted" in kinds
    assert "handshake_rejected" in kinds
    rejected = next(e for e in events if e.get("event") == "handshake_rejected")
    assert rejected["reason"] == "origin_not_allowed"
    assert rejected["path"] == "/ws"
    for secret in secrets:
        assert secret not in log


def test_plain_public_bind_is_refused_with_one_line(tmp_path: Path):
    config = tmp_path / "public.toml"
    config.write_text('[server]\nhost = "0.0.0.0"\n[origins]\nallowed_hosts = ["example.com"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "wsguard.cli", "serve", "-c", str(config)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    err = result.stderr.decode().strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert err.startswith("error: server.tls_cert:")
