"""The attack suite's servers: one ``wsguard serve`` per run (plain ``ws://`` on loopback),
one with TLS for the transport group. Each is checked once more when the run ends: alive, and
no traceback in its log, whatever the cases threw at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.attack import AttackTarget, serve

pytestmark = pytest.mark.integration


def _clean_exit(target: AttackTarget) -> None:
    assert target.alive(), "the server died during the attack suite"
    log = target.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttackTarget]:
    with serve(tmp_path_factory.mktemp("attack-plain")) as server:
        yield server
        _clean_exit(server)


@pytest.fixture(scope="session")
def tls_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttackTarget]:
    with serve(tmp_path_factory.mktemp("attack-tls"), tls=True) as server:
        yield server
        _clean_exit(server)
