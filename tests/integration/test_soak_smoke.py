"""The soak's short mode (`bench/soak.py`, docs/soak.md) as a test: 150 connections for 30
seconds through a worker kill and a Redis restart, then its JSON report is read back.

The soak starts its own redis-server on a free port and `wsguard serve --workers 2`, and stops
both by PID; its clients bind source addresses in 127.0.0.0/8 (Linux).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOUND = 120.0  # the run takes ~45 s on two cores

pytestmark = [
    pytest.mark.integration,
    pytest.mark.redis,
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="Linux loopback /8"),
    pytest.mark.timeout(BOUND + 30),  # the first test runs the soak (the module fixture)
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("soak")
    command = [
        sys.executable,
        str(ROOT / "bench" / "soak.py"),
        *("--minutes", "0.5", "--connections", "150", "--out", str(out)),
    ]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, timeout=BOUND, check=False, text=True
    )
    reports = sorted(out.glob("soak-*.json"))
    details = result.stderr[-3000:] + "".join(p.read_text() for p in out.glob("soak-*.md"))
    assert result.returncode == 0, details
    assert len(reports) == 1, details
    return dict(json.loads(reports[0].read_text()))


def test_the_short_soak_passes_every_check(report: dict):
    assert report["ok"] is True
    assert all(report["checks"].values()), report["checks"]


def test_every_legitimate_subscriber_has_every_accepted_seq(report: dict):
    subscribers = report["subscribers"]
    assert report["publications"]["accepted"] > 0
    assert report["publications"]["gave_up"] == []
    assert len(subscribers["missing_per_subscriber"]) == report["setup"]["legitimate"]
    assert set(subscribers["missing_per_subscriber"]) == {0}
    assert subscribers["anomalies"]["silent offset gaps"] == 0
    assert subscribers["anomalies"]["unannounced epochs"] == 0


def test_the_killed_worker_was_restarted_and_redis_came_back(report: dict):
    timing = report["timing"]
    assert timing["killed_pid"] is not None
    assert timing["replacement_pid"] not in (None, timing["killed_pid"])
    assert [d["pid"] for d in report["worker_deaths"]] == [timing["killed_pid"]]
    assert timing["redis_up_at_s"] > timing["redis_stopped_at_s"]
    # The Redis restart lost the streams: every subscriber learnt it (4510, then a
    # `complete: false` recovery), and still has every seq (checked above).
    assert "4510" in report["subscribers"]["closes_by_phase"]["redis_restart"]


def test_every_hostile_outcome_is_the_documented_one(report: dict):
    hostile = report["hostile"]
    assert hostile["unexpected"] == 0, hostile["unexpected_samples"]
    for attack, outcomes in hostile["outcomes"].items():
        assert outcomes.get("expected", 0) > 0, (attack, outcomes)
        assert not any(k.startswith("unexpected") for k in outcomes), (attack, outcomes)
