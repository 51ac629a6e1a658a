"""The client's reconnect policy: full-jitter exponential backoff from a seeded generator, which
close codes and handshake statuses reconnect, and the reconnect loop driven without sockets or
sleeping (a fake dialer and an injected sleep)."""

from __future__ import annotations

import random
from typing import Any

import pytest

import wsguard.client
from wsguard.client import Client, ClientError, backoff_delay, close_action, handshake_action
from wsguard.client.dial import Retry


def test_public_names_are_curated():
    assert wsguard.client.__all__ == [
        "ApiClient",
        "Client",
        "ClientError",
        "CredentialProvider",
        "History",
        "Message",
        "Position",
        "State",
        "Subscription",
        "backoff_delay",
        "close_action",
        "handshake_action",
    ]


# --- backoff_delay -------------------------------------------------------------------------


def test_delays_are_a_uniform_draw_below_the_exponential_ceiling():
    rng, replay = random.Random(42), random.Random(42)
    delays = [backoff_delay(n, base=0.5, cap=30.0, rng=rng) for n in range(8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert delays == [replay.random() * ceiling for ceiling in ceilings]


def test_the_same_seed_gives_the_same_delays_and_another_seed_others():
    def run(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [backoff_delay(n, base=1.0, cap=8.0, rng=rng) for n in range(5)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_the_cap_bounds_every_delay_even_after_thousands_of_attempts():
    rng = random.Random(3)
    for attempt in (10, 64, 65, 1100, 10**6):
        assert 0.0 <= backoff_delay(attempt, base=0.5, cap=30.0, rng=rng) < 30.0


def test_full_jitter_spreads_delays_over_the_whole_range():
    # A herd of 1000 clients on their first reconnect: no lock-step, no floor.
    rng = random.Random(5)
    delays = [backoff_delay(0, base=1.0, cap=30.0, rng=rng) for _ in range(1000)]
    assert min(delays) < 0.01
    assert max(delays) > 0.99
    buckets = [0] * 10
    for delay in delays:
        buckets[int(delay * 10)] += 1
    assert all(60 < count < 140 for count in buckets), buckets


def test_a_zero_base_reconnects_at_once():
    assert backoff_delay(3, base=0.0, cap=30.0, rng=random.Random(0)) == 0.0


@pytest.mark.parametrize(
    ("attempt", "base", "cap"), [(-1, 0.5, 30.0), (0, -0.5, 30.0), (0, 0.5, -1.0)]
)
def test_negative_arguments_are_refused(attempt: int, base: float, cap: float):
    with pytest.raises(ValueError, match=">= 0"):
        backoff_delay(attempt, base=base, cap=cap, rng=random.Random(0))


# --- which closes and statuses reconnect ---------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 1006, 1011, 1012, 1013, 4000, 4503, 4509, 4510, 4599])
def test_transient_close_codes_reconnect(code: int):
    assert close_action(code) == "reconnect"


@pytest.mark.parametrize("code", [1002, 1007, 1008, 1009, 4400, 4401, 4403, 4408, 4499])
def test_terminal_and_client_bug_close_codes_stop(code: int):
    assert close_action(code) == "stop"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_busy_or_failing_servers_are_retried(status: int):
    assert handshake_action(status) == "reconnect"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 414, 426, 431])
def test_refused_credentials_origins_and_requests_stop(status: int):
    assert handshake_action(status) == "stop"


# --- the reconnect loop, without sockets or sleeping -----------------------------------------


class RefusingDialer:
    """Stands in for the network: every attempt fails the way a refused connection does."""

    def __init__(self, error: ClientError) -> None:
        self.error = error
        self.attempts = 0

    async def dial(self, http: Any) -> Any:
        self.attempts += 1
        raise Retry(self.error)


async def test_failed_attempts_sleep_the_backoff_delays_then_give_up_after_max_retries():
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    client = Client(
        "ws://127.0.0.1:1/ws", max_retries=5, rng=random.Random(9), sleep=sleep, backoff_cap=4.0
    )
    dialer = RefusingDialer(ClientError(503, "handshake_refused", "HTTP 503"))
    client._dialer = dialer  # type: ignore[assignment]
    states: list[str] = []
    client.on_state(states.append)
    with pytest.raises(ClientError) as info:
        await client.connect()
    assert (info.value.code, info.value.reason) == (503, "retries_exhausted")
    assert dialer.attempts == 6  # the first attempt and five retries
    replay = random.Random(9)
    assert slept == [backoff_delay(n, base=0.5, cap=4.0, rng=replay) for n in range(5)]
    assert states == ["closed"]  # never open: "connecting" until the end


async def test_max_retries_zero_means_a_single_attempt():
    async def sleep(delay: float) -> None:
        raise AssertionError("no retry, no sleep")

    client = Client("ws://127.0.0.1:1/ws", max_retries=0, sleep=sleep)
    client._dialer = RefusingDialer(ClientError(0, "unreachable"))  # type: ignore[assignment]
    with pytest.raises(ClientError, match="retries_exhausted"):
        await client.connect()


def test_a_ticket_and_a_token_provider_together_are_refused():
    async def provider() -> str:
        return "x"

    with pytest.raises(ValueError, match="not both"):
        Client("ws://127.0.0.1:1/ws", ticket=provider, token=provider)
