"""Prometheus metrics of one server, served by the internal API's ``GET /metrics``.

Each ``Metrics`` owns its own ``CollectorRegistry``, never the process-global one: several
servers may run in one process (tests do), and an application embedding wsguard keeps its own
metrics apart from ours.

The hot path (one call per message received, one per fan-out) increments plain integers; the
values become metric families only when ``render`` is called. A ``prometheus_client`` counter
takes a lock on every increment (about 450 ns here, against about 70 ns for an integer), and
every call runs on the event loop thread anyway.

Label values are bounded. The ``reason`` of a rejection comes from wsguard's own fixed reason
codes and the ``code`` of a close from RFC 6455 and ``CloseCode``, never from peer text; still,
each series costs memory here and in Prometheus for as long as it exists, so a value that is not
one of ours (a future bug passing peer text, or a peer's own close code) is counted as
``"other"`` instead of becoming a new series: label cardinality must not be peer-controlled.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator
from typing import Final, Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from wsguard.codes import CloseCode

__all__ = ["CONTENT_TYPE", "FANOUT_BUCKETS", "MAX_REASONS", "Metrics"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text format version ``render`` writes.

Pinned rather than ``prometheus_client.CONTENT_TYPE_LATEST``, which names another version from
one release of the library to the next; the body ``generate_latest`` writes for our names (plain
``[a-z_]`` names, underscore escaping) is the 0.0.4 format.
"""

FANOUT_BUCKETS: Final = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
"""Upper bounds (seconds) of the fan-out histogram: a local fan-out takes microseconds to
milliseconds; beyond a second the event loop is badly behind."""

MAX_REASONS: Final = 100
"""Distinct rejection reasons kept per stage; later new reasons count as ``"other"``."""

OTHER: Final = "other"

_REASON: Final = re.compile(r"[a-z_]{1,40}")
# RFC 6455 §7.4.1 defines 1000-1015; the application codes are wsguard's own (DESIGN.md §6).
_CLOSE_LABELS: Final = {
    code: str(code) for code in (*range(1000, 1016), *(int(c) for c in CloseCode))
}
# No close frame received: RFC 6455 §7.1.5 calls the close code 1006 then.
_NO_CLOSE_FRAME: Final = "1006"
_STAGES: Final = frozenset({"handshake", "message"})
_BUCKET_LABELS: Final = (*(repr(bound) for bound in FANOUT_BUCKETS), "+Inf")


class Metrics:
    """The counters of one server, rendered in the Prometheus text format.

    Metric families:

    - ``wsguard_connections`` (gauge): open WebSocket connections.
    - ``wsguard_messages_received_total`` (counter): data frames from clients.
    - ``wsguard_messages_sent_total`` (counter): data frames to clients (replies and pushes).
    - ``wsguard_publications_total`` (counter): publications accepted.
    - ``wsguard_rejections_total{stage, reason}`` (counter): refused handshakes and messages.
    - ``wsguard_closes_total{code}`` (counter): connections closed, by close code.
    - ``wsguard_fanout_seconds`` (histogram): one publication delivered to every local
      subscriber.

    Attributes:
        registry: the registry holding these metrics only.
    """

    __slots__ = (
        "_buckets",
        "_closes",
        "_connections",
        "_fanout_sum",
        "_publications",
        "_received",
        "_rejections",
        "_sent",
        "registry",
    )

    def __init__(self) -> None:
        self._connections = 0
        self._received = 0
        self._sent = 0
        self._publications = 0
        self._rejections: dict[tuple[str, str], int] = {}
        self._closes: dict[str, int] = {}
        # Per bucket, not cumulative; the last one is +Inf.
        self._buckets = [0] * (len(FANOUT_BUCKETS) + 1)
        self._fanout_sum = 0.0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def connection_opened(self) -> None:
        """Count a connection that completed its handshake."""
        self._connections += 1

    def connection_closed(self, code: int | None) -> None:
        """Count an accepted connection that ended.

        Args:
            code: its close code; ``None`` when no close frame was received (counted as 1006).
        """
        self._connections -= 1
        label = _NO_CLOSE_FRAME if code is None else _CLOSE_LABELS.get(code, OTHER)
        self._closes[label] = self._closes.get(label, 0) + 1

    def message_received(self) -> None:
        """Count one data frame (message) from a client."""
        self._received += 1

    def messages_sent(self, n: int = 1) -> None:
        """Count ``n`` data frames (replies and pushes) sent to clients."""
        self._sent += n

    def publication(self) -> None:
        """Count one publication accepted by the broker."""
        self._publications += 1

    def rejected(self, stage: Literal["handshake", "message"], reason: str) -> None:
        """Count a refused handshake or message.

        Args:
            stage: where it was refused.
            reason: one of wsguard's reason codes (``docs/reference/codes.md``); anything
                else, or a reason beyond the first ``MAX_REASONS`` of a stage, counts as
                ``"other"``.

        Raises:
            ValueError: ``stage`` is neither ``"handshake"`` nor ``"message"``.
        """
        key = (stage, reason)
        if key in self._rejections:
            self._rejections[key] += 1
        else:
            self._new_rejection(stage, reason)

    def _new_rejection(self, stage: str, reason: str) -> None:
        if stage not in _STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        kept = sum(1 for s, _ in self._rejections if s == stage)
        if _REASON.fullmatch(reason) is None or kept >= MAX_REASONS:
            reason = OTHER
        key = (stage, reason)
        self._rejections[key] = self._rejections.get(key, 0) + 1

    def observe_fanout(self, seconds: float) -> None:
        """Record how long one publication took to reach every local subscriber."""
        self._buckets[bisect_left(FANOUT_BUCKETS, seconds)] += 1
        self._fanout_sum += seconds

    def render(self) -> tuple[bytes, str]:
        """Return the exposition body and its ``Content-Type``."""
        return generate_latest(self.registry), CONTENT_TYPE

    def _families(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "wsguard_connections", "Open WebSocket connections.", value=self._connections
        )
        yield CounterMetricFamily(
            "wsguard_messages_received", "Data frames received from clients.", self._received
        )
        yield CounterMetricFamily(
            "wsguard_messages_sent", "Data frames sent to clients (replies and pushes).", self._sent
        )
        yield CounterMetricFamily(
            "wsguard_publications", "Publications accepted.", self._publications
        )
        rejections = CounterMetricFamily(
            "wsguard_rejections",
            "Refused handshakes and messages, by stage and reason code.",
            labels=("stage", "reason"),
        )
        for (stage, reason), count in sorted(self._rejections.items()):
            rejections.add_metric((stage, reason), count)
        yield rejections
        closes = CounterMetricFamily(
            "wsguard_closes", "Connections closed, by close code.", labels=("code",)
        )
        for code, count in sorted(self._closes.items()):
            closes.add_metric((code,), count)
        yield closes
        cumulative, buckets = 0, []
        for label, count in zip(_BUCKET_LABELS, self._buckets, strict=True):
            cumulative += count
            buckets.append((label, cumulative))
        yield HistogramMetricFamily(
            "wsguard_fanout_seconds",
            "Time to deliver one publication to every local subscriber.",
            buckets=buckets,
            sum_value=self._fanout_sum,
        )


class _Collector(Collector):
    """Turns the integers of one ``Metrics`` into metric families at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics._families()
