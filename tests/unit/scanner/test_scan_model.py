"""Scan values: severities, findings, the scan result's ordering, and :func:`printable`, which
keeps hostile remote text from reaching a terminal raw."""

from __future__ import annotations

import re

import pytest

from wsguard.scanner.checks import by_id
from wsguard.scanner.model import Finding, ScanResult, Severity, printable

# ---------------------------------------------------------------- Severity


@pytest.mark.parametrize("text", ["high", "HIGH", "High", "  high\n"])
def test_parse_is_case_insensitive(text: str):
    assert Severity.parse(text) is Severity.HIGH


def test_parse_unknown_lists_the_choices():
    message = "unknown severity 'severe' (choose from low, medium, high, critical)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Severity.parse("severe")


def test_severities_are_ordered():
    assert Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL


def test_label_is_lower_case_name():
    assert [s.label for s in Severity] == ["low", "medium", "high", "critical"]


# ---------------------------------------------------------------- Finding


def test_level_defaults_to_the_check_severity():
    assert Finding(by_id("origin-foreign"), "x").level is Severity.HIGH


def test_level_override_wins():
    finding = Finding(by_id("origin-foreign"), "x", severity=Severity.CRITICAL)
    assert finding.level is Severity.CRITICAL


def test_level_override_can_lower():
    assert Finding(by_id("origin-foreign"), "x", severity=Severity.LOW).level is Severity.LOW


# ---------------------------------------------------------------- ScanResult

LOW = Finding(by_id("limits-fragments"), "low")
MEDIUM = Finding(by_id("origin-missing"), "medium")
HIGH_A = Finding(by_id("origin-foreign"), "high a")
HIGH_B = Finding(by_id("tls-plaintext"), "high b")


def test_sorted_findings_most_severe_first_ties_stable():
    result = ScanResult("ws://h.test/", "2026-01-01T00:00:00Z", findings=[LOW, HIGH_A, MEDIUM,
                                                                         HIGH_B])  # fmt: skip
    assert result.sorted_findings() == [HIGH_A, HIGH_B, MEDIUM, LOW]


def test_sorted_findings_uses_the_override():
    raised = Finding(by_id("limits-fragments"), "raised", severity=Severity.CRITICAL)
    result = ScanResult("ws://h.test/", "t", findings=[HIGH_A, raised])
    assert result.sorted_findings() == [raised, HIGH_A]


def test_sorted_findings_does_not_mutate():
    result = ScanResult("ws://h.test/", "t", findings=[LOW, HIGH_A])
    result.sorted_findings()
    assert result.findings == [LOW, HIGH_A]


def test_worst_is_the_highest_level():
    assert ScanResult("ws://h.test/", "t", findings=[LOW, MEDIUM]).worst() is Severity.MEDIUM


def test_worst_is_none_without_findings():
    assert ScanResult("ws://h.test/", "t").worst() is None


def test_result_defaults():
    result = ScanResult("ws://h.test/", "t")
    assert (result.duration, result.findings, result.passed, result.skipped, result.requests,
            result.version) == (0.0, [], [], {}, 0, "")  # fmt: skip


# ---------------------------------------------------------------- printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        pytest.param("\x1b[31mred", "\\x1b[31mred", id="ESC"),
        pytest.param("a\x07b", "a\\x07b", id="BEL"),
        pytest.param("a\r\nb", "a\\x0d\\x0ab", id="CRLF"),
        pytest.param("a\x00b", "a\\x00b", id="NUL"),
        pytest.param("a\tb", "a\\x09b", id="TAB"),
        pytest.param("a\x7fb", "a\\x7fb", id="DEL"),
        pytest.param("a\x9b31m", "a\\x9b31m", id="C1-CSI"),
        pytest.param("a\x80b\x9fc", "a\\x80b\\x9fc", id="C1-range"),
        pytest.param("\u202eevil", "\\u202eevil", id="RLO"),
        pytest.param("\u202aa", "\\u202aa", id="LRE"),
        pytest.param("\u2066x\u2069", "\\u2066x\\u2069", id="isolates"),
        pytest.param("a\u200bb", "a\\u200bb", id="ZWSP"),
        pytest.param("a\u200fb", "a\\u200fb", id="RLM"),
        pytest.param("a\u2028b\u2029", "a\\u2028b\\u2029", id="line-separators"),
    ],
)
def test_printable_escapes(raw: str, shown: str):
    assert printable(raw) == shown


@pytest.mark.parametrize("text", ["café", "中文", "naïve — “quoted” ✓", "plain ascii 123 !~"])
def test_printable_keeps_normal_text(text: str):
    assert printable(text) == text


def test_printable_keeps_a_backslash_as_is():
    assert printable("a\\x1b") == "a\\x1b"


def test_printable_at_the_limit_is_not_cut():
    assert printable("a" * 400) == "a" * 400


def test_printable_cuts_past_the_limit_with_a_marker():
    assert printable("a" * 401) == "a" * 400 + "… (1 more characters)"


def test_printable_custom_limit():
    assert printable("abcdefghij", limit=4) == "abcd… (6 more characters)"


def test_printable_escapes_after_cutting():
    assert printable("\x1b" * 5, limit=2) == "\\x1b\\x1b… (3 more characters)"
