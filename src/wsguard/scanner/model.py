"""What a scan produces: checks (the catalogue), findings (what failed) and the scan result.

Plain frozen values with no I/O, shared by the probes, the report writers and the CLI. Remote data
(headers, close reasons, reply text) is stored as received, decoded with ``backslashreplace``;
every writer escapes it for its own medium (:func:`printable` for terminals, HTML escaping for the
HTML report), so nothing a hostile server sends reaches a terminal or a page raw.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "Check",
    "Evidence",
    "Finding",
    "Reference",
    "ScanResult",
    "Severity",
    "printable",
]


class Severity(enum.IntEnum):
    """How bad a finding is; ``--fail-on`` compares against this order."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``"high"`` → ``Severity.HIGH``; raises ``ValueError`` naming the choices."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (choose from {choices})") from None


@dataclass(frozen=True, slots=True)
class Reference:
    """A document that explains the weakness: OWASP cheat sheet, WSTG, CWE or RFC section."""

    label: str
    url: str


@dataclass(frozen=True, slots=True)
class Check:
    """One entry of the catalogue: a weakness the scanner looks for.

    Attributes:
        id: stable identifier, e.g. ``"origin-foreign"`` (SARIF ``ruleId``).
        group: the probe family that runs it (``origin``, ``host``, ``tls``, ``auth``,
            ``limits``, ``framing``, ``input``, ``disclosure``); ``--checks`` selects groups.
        title: one line, what is wrong when the check fails.
        severity: default severity of a finding.
        why: what an attacker gains.
        remedy: how to fix it in any server.
        config: the wsguard configuration that prevents it (TOML lines).
        references: where the rule comes from.
        cwe: the CWE number, when one fits.
    """

    id: str
    group: str
    title: str
    severity: Severity
    why: str
    remedy: str
    config: str
    references: tuple[Reference, ...] = ()
    cwe: int | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    """One observation backing a finding: what was sent and what came back.

    ``sent`` and ``received`` are as exchanged (decoded text, possibly hostile): escape on output.
    """

    label: str
    sent: str = ""
    received: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    """A check that failed against the target."""

    check: Check
    summary: str
    evidence: tuple[Evidence, ...] = ()
    severity: Severity | None = None  # overrides check.severity when set

    @property
    def level(self) -> Severity:
        return self.severity if self.severity is not None else self.check.severity


@dataclass(slots=True)
class ScanResult:
    """Everything a report needs.

    Attributes:
        target: the URL scanned (as given, credentials removed).
        started: ISO 8601 UTC time the scan began.
        duration: seconds the scan took.
        findings: failed checks, most severe first once :meth:`sorted_findings` is used.
        passed: ids of checks that ran and found nothing.
        skipped: check id → why it did not run or could not conclude.
        inconclusive: ids of skipped checks that should have run but could not conclude (the
            target refused a legitimate connection, the budget ran out...).
        requests: connections opened against the target.
        version: the wsguard version that ran the scan.
    """

    target: str
    started: str
    duration: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    version: str = ""
    inconclusive: list[str] = field(default_factory=list)

    def sorted_findings(self) -> list[Finding]:
        """Most severe first; ties keep catalogue order."""
        return sorted(self.findings, key=lambda f: -f.level)

    def worst(self) -> Severity | None:
        return max((f.level for f in self.findings), default=None)


_CONTROL: Final = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]"
)


def printable(text: str, limit: int = 400) -> str:
    """Make remote text safe for a terminal: control, bidi and zero-width characters become
    ``\\xNN``/``\\uNNNN`` escapes (no ANSI sequence or fake line reaches the screen), and the
    text is cut at ``limit`` characters with a marker.
    """

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    if len(text) > limit:
        text = text[:limit] + f"… ({len(text) - limit} more characters)"
    return _CONTROL.sub(escape, text)
