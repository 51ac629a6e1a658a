"""``wsguard scan``: audit any WebSocket endpoint for the weaknesses wsguard prevents.

Layers: ``target`` (what to scan, the loopback rule), ``wire`` (raw handshakes and frames),
``session`` (pacing, budget, verdicts), ``probes`` and ``frames`` (the checks' traffic),
``checks`` (the catalogue), ``report`` (table, JSON, SARIF, HTML) and ``runner``.
"""

from wsguard.scanner.checks import CATALOGUE, GROUPS
from wsguard.scanner.model import Check, Evidence, Finding, Reference, ScanResult, Severity
from wsguard.scanner.runner import ScanError, run_scan
from wsguard.scanner.target import Credentials, ScanOptions, Target, is_loopback, parse_target

__all__ = [
    "CATALOGUE",
    "GROUPS",
    "Check",
    "Credentials",
    "Evidence",
    "Finding",
    "Reference",
    "ScanError",
    "ScanOptions",
    "ScanResult",
    "Severity",
    "Target",
    "is_loopback",
    "parse_target",
    "run_scan",
]
