"""Metrics: exact values, read back by parsing the exposition as Prometheus would."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from wsguard.codes import CloseCode
from wsguard.metrics import FANOUT_BUCKETS, MAX_REASONS, Metrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: Metrics) -> tuple[dict[str, str], Samples]:
    """The type of every family and the value of every sample, keyed by name and labels."""
    body, _ = metrics.render()
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        types[family.name] = family.type
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return types, samples


def labelled(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def test_fresh_metrics_expose_every_family_with_zero_values() -> None:
    types, samples = scrape(Metrics())
    assert types == {
        "wsguard_connections": "gauge",
        "wsguard_messages_received": "counter",
        "wsguard_messages_sent": "counter",
        "wsguard_publications": "counter",
        "wsguard_rejections": "counter",
        "wsguard_closes": "counter",
        "wsguard_fanout_seconds": "histogram",
    }
    for name in (
        "wsguard_connections",
        "wsguard_messages_received_total",
        "wsguard_messages_sent_total",
        "wsguard_publications_total",
        "wsguard_fanout_seconds_count",
        "wsguard_fanout_seconds_sum",
    ):
        assert samples[name, ()] == 0
    assert labelled(samples, "wsguard_rejections_total") == {}
    assert labelled(samples, "wsguard_closes_total") == {}


def test_render_names_the_text_format_0_0_4() -> None:
    _, content_type = Metrics().render()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"


def test_message_and_publication_counters_count_exactly() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.message_received()
    metrics.messages_sent()
    metrics.messages_sent(250)
    metrics.publication()
    metrics.publication()
    _, samples = scrape(metrics)
    assert samples["wsguard_messages_received_total", ()] == 3
    assert samples["wsguard_messages_sent_total", ()] == 251
    assert samples["wsguard_publications_total", ()] == 2


def test_connections_gauge_follows_opens_and_closes() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.connection_opened()
    metrics.connection_closed(1000)
    _, samples = scrape(metrics)
    assert samples["wsguard_connections", ()] == 2


def test_closes_are_counted_by_code() -> None:
    metrics = Metrics()
    for code in (1000, 1000, 4408, 1009, 4509):
        metrics.connection_opened()
        metrics.connection_closed(code)
    _, samples = scrape(metrics)
    assert labelled(samples, "wsguard_closes_total") == {
        (("code", "1000"),): 2,
        (("code", "1009"),): 1,
        (("code", "4408"),): 1,
        (("code", "4509"),): 1,
    }


def test_close_without_a_close_frame_counts_as_1006() -> None:
    metrics = Metrics()
    metrics.connection_opened()
    metrics.connection_closed(None)
    _, samples = scrape(metrics)
    assert labelled(samples, "wsguard_closes_total") == {(("code", "1006"),): 1}


def test_close_codes_a_peer_may_choose_are_counted_as_other() -> None:
    # A peer's close frame may carry any of 3000-4999: one series each would be its choice.
    metrics = Metrics()
    for code in range(3000, 5000):
        metrics.connection_closed(code if code not in {int(c) for c in CloseCode} else 3000)
    _, samples = scrape(metrics)
    assert labelled(samples, "wsguard_closes_total") == {(("code", "other"),): 2000}


def test_rejections_are_counted_by_stage_and_reason() -> None:
    metrics = Metrics()
    metrics.rejected("handshake", "origin_not_allowed")
    metrics.rejected("handshake", "origin_not_allowed")
    metrics.rejected("handshake", "plaintext")
    metrics.rejected("message", "rate_limited")
    _, samples = scrape(metrics)
    assert labelled(samples, "wsguard_rejections_total") == {
        (("reason", "origin_not_allowed"), ("stage", "handshake")): 2,
        (("reason", "plaintext"), ("stage", "handshake")): 1,
        (("reason", "rate_limited"), ("stage", "message")): 1,
    }


@pytest.mark.parametrize(
    "reason",
    ["", "Bad_Json", "bad-json", "bad json", "x" * 41, 'a"}\nwsguard_evil 1', "é", "bad_json\n"],
    ids=["empty", "upper", "dash", "space", "41-chars", "injection", "non-ascii", "newline"],
)
def test_rejection_reason_outside_a_z_underscore_1_to_40_counts_as_other(reason: str) -> None:
    metrics = Metrics()
    metrics.rejected("message", reason)
    metrics.rejected("message", reason)
    _, samples = scrape(metrics)
    assert labelled(samples, "wsguard_rejections_total") == {
        (("reason", "other"), ("stage", "message")): 2
    }


def test_rejection_reason_of_exactly_40_characters_is_kept() -> None:
    metrics = Metrics()
    metrics.rejected("message", "x" * 40)
    _, samples = scrape(metrics)
    assert labelled(samples, "wsguard_rejections_total") == {
        (("reason", "x" * 40), ("stage", "message")): 1
    }


def test_reasons_beyond_the_cap_per_stage_count_as_other() -> None:
    metrics = Metrics()
    reasons = [f"r_{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(MAX_REASONS + 5)]
    for reason in reasons:
        metrics.rejected("message", reason)
    metrics.rejected("message", reasons[0])  # an already kept reason keeps its own series
    metrics.rejected("handshake", reasons[-1])  # the cap is per stage
    _, samples = scrape(metrics)
    series = labelled(samples, "wsguard_rejections_total")
    message = {dict(k)["reason"]: v for k, v in series.items() if dict(k)["stage"] == "message"}
    assert len(message) == MAX_REASONS + 1
    assert message["other"] == 5
    assert message[reasons[0]] == 2
    assert series[("reason", reasons[-1]), ("stage", "handshake")] == 1


def test_unknown_stage_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown stage 'upgrade'"):
        Metrics().rejected("upgrade", "bad_json")  # type: ignore[arg-type]


def test_fanout_histogram_buckets_are_cumulative_and_inclusive() -> None:
    metrics = Metrics()
    for seconds in (0.00001, 0.001, 0.0011, 0.3, 2.0):
        metrics.observe_fanout(seconds)
    _, samples = scrape(metrics)
    buckets = {
        dict(labels)["le"]: value
        for labels, value in labelled(samples, "wsguard_fanout_seconds_bucket").items()
    }
    assert len(buckets) == len(FANOUT_BUCKETS) + 1
    assert buckets["5e-05"] == 1
    assert buckets["0.0005"] == 1
    assert buckets["0.001"] == 2  # le: a value on the bound is inside the bucket
    assert buckets["0.0025"] == 3
    assert buckets["0.25"] == 3
    assert buckets["0.5"] == 4
    assert buckets["1.0"] == 4
    assert buckets["+Inf"] == 5
    assert samples["wsguard_fanout_seconds_count", ()] == 5
    assert samples["wsguard_fanout_seconds_sum", ()] == pytest.approx(2.30211)


def test_two_servers_metrics_are_independent_and_not_global() -> None:
    first, second = Metrics(), Metrics()
    first.message_received()
    _, samples = scrape(second)
    assert samples["wsguard_messages_received_total", ()] == 0
    assert first.registry is not second.registry
    assert REGISTRY.get_sample_value("wsguard_messages_received_total") is None
