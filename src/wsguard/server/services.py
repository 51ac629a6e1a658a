"""What the sessions, the internal API and the Python API share: channel rules, schemas, the
broker and hub, rpc methods, metrics and the per-user rate budgets.

``Services.publish`` is the one path every publication takes, whoever publishes it (a client,
the internal API, an rpc handler, ``Server.publish``): inbound schema, output schema (checked
once per publication), output encoding (once, before fan-out), then the broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from wsguard.brokers.base import Broker, Publication
from wsguard.codes import ReplyCode
from wsguard.core.channels import ChannelRules, validate_channel_name
from wsguard.core.encoding import html_escape
from wsguard.core.pipeline import UserRates
from wsguard.core.schema import Schema
from wsguard.exceptions import ReplyError
from wsguard.metrics import Metrics
from wsguard.schemas import compile_channel_schemas
from wsguard.server.hub import Hub
from wsguard.server.rpc import RpcRegistry
from wsguard.settings import ChannelConfig, Settings

__all__ = ["Services"]

log = logging.getLogger("wsguard.server")


class Services:
    """The server-wide parts of the message pipeline.

    Args:
        settings: the server's settings; channel schema files are read here, once.
        broker: the broker (``MemoryBroker`` unless given).
        metrics: the server's metrics.
        monotonic: the clock of rate limits and violation windows.
    """

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        metrics: Metrics,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.rules = ChannelRules(settings.channels)
        self.broker = broker
        self.metrics = metrics
        self.hub = Hub(broker, metrics)
        self.rpc = RpcRegistry()
        self.user_rates = UserRates(settings.limits)
        self.monotonic = monotonic
        self._tasks: set[asyncio.Task[Any]] = set()
        # Raises ConfigError (naming channels[N].schema) for a file that does not compile.
        compiled = compile_channel_schemas(settings)
        self._schemas: dict[ChannelConfig, tuple[Schema | None, Schema | None]] = {
            rule: compiled[index] for index, rule in enumerate(settings.channels)
        }

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, keeping a reference; failures are logged."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, ConnectionError):
            log.warning("background task skipped: %s", error)
        elif error is not None:
            log.error("background task failed", exc_info=error)

    def rule(self, channel: str) -> ChannelConfig:
        """The rule of a channel from a trusted publisher (the API, Python code).

        Raises:
            ReplyError: 400 ``bad_channel`` or 404 ``unknown_channel``.
        """
        problem = validate_channel_name(channel)
        if problem is not None:
            raise ReplyError(ReplyCode.BAD_REQUEST, "bad_channel", f"channel: {problem}")
        rule = self.rules.match(channel)
        if rule is None:
            raise ReplyError(ReplyCode.NOT_FOUND, "unknown_channel", "no channel rule matches")
        return rule

    async def publish(
        self, rule: ChannelConfig, channel: str, data: Any, *, trusted: bool = False
    ) -> Publication:
        """Check, encode and publish ``data`` on ``channel`` (whose rule is ``rule``).

        ``trusted`` publishers (the internal API, Python code) get 422 for data their output
        schema refuses, since they chose that data; for a client whose data passed the inbound
        schema it is the server's contract that failed: 500.

        Raises:
            ReplyError: 422 ``invalid_data`` (inbound schema, or nested deeper than the
                encoder goes), 500 (422 when trusted) ``bad_output`` (output schema), 503
                ``unavailable`` (broker).
        """
        inbound, outbound = self._schemas[rule]
        if inbound is not None:
            violation = inbound.check(data, "data")
            if violation is not None:
                raise ReplyError(violation.code, violation.reason, violation.message)
        if outbound is not None:
            violation = outbound.check(data, "data")
            if violation is not None:
                log.warning("publication on %s refused by its output schema", channel)
                code = ReplyCode.UNPROCESSABLE if trusted else ReplyCode.INTERNAL_ERROR
                raise ReplyError(code, "bad_output", violation.message)
        if rule.encode == "html":
            try:
                data = html_escape(data)
            except ValueError:
                # Only Python publishers can get here: decoded messages are shallower.
                raise ReplyError(
                    ReplyCode.UNPROCESSABLE, "invalid_data", "data: nested too deeply"
                ) from None
        payload = orjson.dumps(data)
        try:
            publication = await self.broker.publish(
                channel, payload, history_size=rule.history_size, history_ttl=rule.history_ttl
            )
        except (ConnectionError, OSError, TimeoutError) as exc:
            # One line per refusal: an outage refuses every publication, and a traceback each
            # (the same one) would bury the log.
            log.warning("broker unavailable; publication on %s refused: %r", channel, exc)
            raise ReplyError(
                ReplyCode.UNAVAILABLE, "unavailable", "the broker is unavailable"
            ) from None
        self.metrics.publication()
        return publication

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
