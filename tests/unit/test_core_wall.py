"""The sans-I/O wall: nothing under ``wsguard.core`` may do I/O, read the clock or the env.

Parses every module's source with ``ast`` (importing it would prove nothing: a function-level
``import socket`` only runs when called).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wsguard.core

CORE = Path(wsguard.core.__file__).parent
# Top-level packages whose import alone breaks the wall: event loops, network clients,
# sockets, the environment and filesystem, the clock, randomness, TLS, processes.
FORBIDDEN = frozenset(
    {
        "aiohttp",
        "asyncio",
        "http.client",
        "logging.handlers",
        "os",
        "random",
        "redis",
        "secrets",
        "selectors",
        "socket",
        "ssl",
        "subprocess",
        "threading",
        "time",
        "urllib.request",
        "uvloop",
        "websockets",
    }
)


def _forbidden(module: str) -> str | None:
    for banned in FORBIDDEN:
        if module == banned or module.startswith(banned + "."):
            return banned
    return None


def violations(source: str, filename: str = "<src>") -> list[str]:
    """Every wall violation in ``source``, as ``file:line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            found.append(f"{filename}:{node.lineno}: reads the environment (.{node.attr})")
        elif isinstance(node, ast.Name) and node.id == "__import__":
            found.append(f"{filename}:{node.lineno}: dynamic import via __import__")
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "importlib.import_module":
            found.append(f"{filename}:{node.lineno}: dynamic import via importlib")
        for module in modules:
            banned = _forbidden(module)
            if banned is not None:
                found.append(f"{filename}:{node.lineno}: imports {module} ({banned})")
    return found


CORE_MODULES = sorted(CORE.rglob("*.py"))


def test_the_wall_finds_the_core_modules():
    names = {path.name for path in CORE_MODULES}
    assert {"handshake.py", "host.py", "origin.py", "transport.py", "limits.py"} <= names


@pytest.mark.parametrize("path", CORE_MODULES, ids=[str(p.relative_to(CORE)) for p in CORE_MODULES])
def test_core_module_does_no_io_and_reads_no_clock_or_env(path: Path):
    assert violations(path.read_text(encoding="utf-8"), str(path.relative_to(CORE))) == []


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("import asyncio", id="asyncio"),
        pytest.param("import os.path", id="os-submodule"),
        pytest.param("from os import environ", id="from-os"),
        pytest.param("import time as clock", id="aliased"),
        pytest.param("from websockets.server import ServerProtocol", id="websockets"),
        pytest.param("import aiohttp", id="aiohttp"),
        pytest.param("import redis.asyncio", id="redis"),
        pytest.param("import socket", id="socket"),
        pytest.param("import random", id="random"),
        pytest.param("import ssl", id="ssl"),
        pytest.param("from logging import handlers", id="logging-handlers"),
        pytest.param("def f():\n    import socket\n", id="function-level"),
        pytest.param("import sys\nx = sys.modules['os'].environ['HOME']", id="environ-attr"),
        pytest.param("mod = __import__('socket')", id="dunder-import"),
        pytest.param("import importlib\nimportlib.import_module('time')", id="importlib"),
    ],
)
def test_wall_catches_forbidden_source(source: str):
    assert violations(source) != []


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("import ipaddress, re, base64, binascii", id="stdlib-pure"),
        pytest.param("from dataclasses import dataclass", id="dataclasses"),
        pytest.param("from http import HTTPStatus", id="http-status"),
        pytest.param("from .decisions import Reject", id="relative"),
        pytest.param("import timeit_like_name", id="prefix-is-not-module"),
    ],
)
def test_wall_allows_pure_imports(source: str):
    assert violations(source) == []
