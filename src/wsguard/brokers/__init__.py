"""Brokers: where state shared between connections (and nodes) lives."""

from __future__ import annotations

import time
from collections.abc import Callable

from wsguard.brokers.base import Broker, TicketStore
from wsguard.exceptions import ConfigError
from wsguard.settings import BrokerConfig

__all__ = ["open_broker"]


def open_broker(
    config: BrokerConfig,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    clock: Callable[[], float] = time.time,
) -> tuple[Broker, TicketStore]:
    """The broker ``broker.url`` names, and the ticket store that goes with it.

    Raises:
        ConfigError: ``broker.url`` is redis:// but the Redis extra is not installed.
    """
    if config.url.startswith("memory:"):
        from wsguard.brokers.memory import MemoryBroker, MemoryTicketStore

        return MemoryBroker(monotonic), MemoryTicketStore(clock)
    try:
        from wsguard.brokers.redis import RedisBroker, RedisTicketStore
    except ImportError:
        raise ConfigError(
            "broker.url", "the Redis broker needs its extra: pip install 'wsguard[redis]'"
        ) from None
    broker = RedisBroker.from_url(
        config.url, prefix=config.prefix, presence_ttl=config.presence_ttl, clock=clock
    )
    return broker, RedisTicketStore(broker)
