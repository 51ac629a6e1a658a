"""``wsguard scan`` as a real process against real loopback servers.

Weak targets (tests/support/targets/: bare aiohttp, the websockets library's server, FastAPI
under uvicorn, an Origin check by substring, a self-signed TLS server, a hostile server) must
each yield exactly their seeded weaknesses; ``wsguard serve`` with the production example
config must yield none, and each insecure switch exactly its own finding.

The scans of one group run side by side (each is mostly waiting: the slowloris probe holds a
half-sent handshake for 12 s), so the whole module takes about two scans' time.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.sarif import sarif_validator
from support.scan_targets import TRUSTED_ORIGIN, naked_target, wsguard_production
from wsguard.scanner import CATALOGUE

pytestmark = pytest.mark.integration

ALL_IDS = {check.id for check in CATALOGUE}
WSGUARD = [sys.executable, "-m", "wsguard.cli"]


@dataclass
class Scan:
    returncode: int
    report: dict[str, Any]
    stdout: str
    stderr: str

    @property
    def found(self) -> set[str]:
        return {finding["id"] for finding in self.report["findings"]}


def run_scan(url: str, out: Path, *args: str, fmt: str = "json") -> Scan:
    proc = subprocess.run(
        [*WSGUARD, "scan", url, "--format", fmt, "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    report = json.loads(out.read_text()) if fmt == "json" and out.exists() else {}
    return Scan(proc.returncode, report, proc.stdout, proc.stderr)


def assert_every_check_decided_once(report: dict[str, Any]) -> None:
    found = [finding["id"] for finding in report["findings"]]
    decided = found + report["passed"] + list(report["skipped"])
    assert sorted(decided) == sorted(ALL_IDS)


# -- deliberately weak targets -------------------------------------------------------------

COMMON = {"origin-foreign", "origin-missing", "host-spoof", "auth-none", "input-reflected"}

NAKED: dict[str, tuple[tuple[str, ...], set[str]]] = {
    # aiohttp's defaults, compression included (compress=True is aiohttp's default).
    "aiohttp_echo": (("--compress",), COMMON | {
        "tls-plaintext", "limits-message-size", "limits-fragments", "limits-compression",
        "limits-ping-flood", "limits-handshake-timeout", "frame-unmasked",
        "disclosure-server-header",
    }),
    # max_size 1 MiB holds, open_timeout (10 s) closes the half handshake; the core's verbose
    # close reasons and deflate-by-default do not.
    "websockets_echo": ((), COMMON | {
        "tls-plaintext", "limits-fragments", "limits-compression", "limits-ping-flood",
        "disclosure-server-header", "disclosure-close-reason",
    }),
    # uvicorn: 16 MiB messages, deflate on, websockets' reasons; "Server: uvicorn" has no version.
    "fastapi_echo": ((), COMMON | {
        "tls-plaintext", "limits-message-size", "limits-fragments", "limits-compression",
        "limits-ping-flood", "limits-handshake-timeout", "disclosure-close-reason",
    }),
    # A foreign, null or missing Origin is refused: only the look-alikes get through.
    "substring_origin": ((), {
        "origin-lookalike", "origin-subdomain", "origin-scheme", "origin-port",
        "origin-multiple", "host-spoof", "auth-none", "input-reflected", "tls-plaintext",
        "limits-message-size", "limits-fragments", "limits-ping-flood",
        "limits-handshake-timeout", "frame-unmasked", "disclosure-server-header",
    }),
    # TLS whose CA the scanner is not given, and TLS 1.0/1.1 allowed; no plaintext port.
    "tls_selfsigned": ((), COMMON | {
        "tls-certificate", "tls-legacy", "limits-message-size", "limits-fragments",
        "limits-ping-flood", "limits-handshake-timeout", "frame-unmasked",
        "disclosure-server-header",
    }),
}  # fmt: skip


@pytest.fixture(scope="module")
def naked_scans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Scan]]:
    folder = tmp_path_factory.mktemp("naked")
    with contextlib.ExitStack() as stack:
        targets = {
            kind: stack.enter_context(naked_target(kind, extra_args=args))
            for kind, (args, _) in NAKED.items()
        }
        with ThreadPoolExecutor(len(targets)) as pool:
            futures = {
                kind: pool.submit(
                    run_scan, target.url, folder / f"{kind}.json", "--origin", TRUSTED_ORIGIN
                )
                for kind, target in targets.items()
            }
            yield {kind: future.result() for kind, future in futures.items()}


@pytest.mark.parametrize("kind", list(NAKED))
def test_each_seeded_weakness_is_found_and_nothing_else(naked_scans, kind):
    scan = naked_scans[kind]
    assert scan.returncode == 1, scan.stderr
    assert scan.found == NAKED[kind][1]
    assert_every_check_decided_once(scan.report)


def test_findings_carry_evidence_reference_and_fix(naked_scans):
    findings = {f["id"]: f for f in naked_scans["substring_origin"].report["findings"]}
    lookalike = findings["origin-lookalike"]
    assert lookalike["severity"] == "high"
    assert lookalike["cwe"] == 1385
    assert {e["sent"] for e in lookalike["evidence"]} >= {
        "Origin: https://app.example.com.attacker.wsguard-scan.test",
        "Origin: https://wsgscanapp.example.com",
    }
    assert all(e["received"] == "HTTP 101 Switching Protocols" for e in lookalike["evidence"])
    assert lookalike["config"].startswith("[origins]\nallowed = [")
    assert lookalike["references"][0]["url"].startswith("https://cheatsheetseries.owasp.org/")


def test_certificate_finding_names_the_verification_error(naked_scans):
    findings = {f["id"]: f for f in naked_scans["tls_selfsigned"].report["findings"]}
    assert findings["tls-certificate"]["summary"] == (
        "Certificate verification failed: unable to get local issuer certificate."
    )


def test_a_hostile_server_cannot_reach_the_terminal_raw(tmp_path):
    with naked_target("hostile") as target:
        scan = run_scan(target.url, tmp_path / "table.txt", "--timeout", "2", fmt="table")
    assert scan.returncode == 1
    printed = scan.stdout + (tmp_path / "table.txt").read_text()
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in printed
    assert "\\x1b[2J" in scan.stdout  # shown, escaped
    assert "[bold]rich[/bold]" in scan.stdout  # shown literally, not as rich markup
    assert "disclosure-close-reason" in scan.stdout


# -- wsguard's own server ----------------------------------------------------------------

SWITCHES: dict[str, tuple[Sequence[str], bool, set[str]]] = {
    "production": ((), False, set()),
    "allow_any_origin": (
        ("origins.allow_any_origin=true", "origins.allowed=[]"),
        False,
        {"origin-foreign"},
    ),
    "allow_null": (("origins.allow_null=true",), False, {"origin-null"}),
    "allow_missing": (("origins.allow_missing=true",), False, {"origin-missing"}),
    "wildcard_origin": (
        ('origins.allowed=["https://app.example.com","https://*.app.example.com"]',),
        False,
        {"origin-subdomain"},
    ),
    "compression": (("limits.compression=true",), False, {"limits-compression"}),
    "anonymous": (("auth.required=false",), False, {"auth-none"}),
    # Behind a proxy that terminates TLS (the scanner's address is the trusted proxy), plain
    # ws:// is refused unless the proxy says https, or allow_plaintext is on.
    "behind_proxy": (('server.trusted_proxies=["127.0.0.1"]',), True, set()),
    "allow_plaintext": (
        ('server.trusted_proxies=["127.0.0.1"]', "server.allow_plaintext=true"),
        True,
        {"tls-plaintext"},
    ),
}


@pytest.fixture(scope="module")
def wsguard_scans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Scan]]:
    folder = tmp_path_factory.mktemp("wsguard")
    with contextlib.ExitStack() as stack:
        targets = {
            name: stack.enter_context(
                wsguard_production(folder / name, overrides=overrides, plaintext=plaintext)
            )
            for name, (overrides, plaintext, _) in SWITCHES.items()
        }
        with ThreadPoolExecutor(len(targets)) as pool:
            futures = {}
            for name, target in targets.items():
                args = ["--origin", TRUSTED_ORIGIN, "--ticket-cmd", target.ticket_cmd]
                # Below the example's handshake_rate (10/s per address): a polite scan.
                args += ["--max-rate", "8", "--cookie", "session=scanner"]
                if target.cafile is not None:
                    args += ["--cacert", str(target.cafile)]
                futures[name] = pool.submit(run_scan, target.url, folder / f"{name}.json", *args)
            yield {name: future.result() for name, future in futures.items()}


def test_the_production_example_has_no_finding(wsguard_scans):
    scan = wsguard_scans["production"]
    assert scan.returncode == 0, scan.stderr
    assert scan.report["findings"] == []
    # Everything ran except the idle check, which needs --idle-wait.
    assert scan.report["skipped"] == {
        "limits-idle": "pass --idle-wait SECONDS to check that idle sockets are closed"
    }
    assert scan.report["inconclusive"] == []
    assert_every_check_decided_once(scan.report)


def test_a_scan_that_could_not_conclude_says_so(wsguard_scans):
    # Plain ws:// from the trusted proxy's address without X-Forwarded-Proto: every handshake
    # is refused (403), so nothing past the handshake can be judged.
    scan = wsguard_scans["behind_proxy"]
    assert scan.returncode == 0
    assert scan.report["passed"] == ["host-spoof", "host-rebinding", "tls-plaintext", "auth-none",
                                     "auth-query-token", "auth-cookie-only",
                                     "limits-handshake-timeout",
                                     "disclosure-server-header"]  # fmt: skip
    assert "frame-unmasked" in scan.report["inconclusive"]
    assert scan.report["skipped"]["frame-unmasked"] == (
        "a legitimate handshake was refused (HTTP 403 Forbidden)"
    )
    warning = scan.stderr.splitlines()[-1]
    assert warning.startswith(f"warning: {len(scan.report['inconclusive'])} check(s) could not")


def test_fail_on_inconclusive_turns_that_into_exit_1(tmp_path):
    with naked_target("aiohttp_echo") as target:
        # Origin acceptance cannot be observed when the trusted origin's handshake is refused;
        # a Host the server does not serve... aiohttp serves every Host, so refuse by path.
        url = target.url.replace("/ws", "/nothing-here")
        scan = run_scan(url, tmp_path / "r.json", "--checks", "origin", "--fail-on-inconclusive")
    assert scan.found == set()
    assert scan.report["inconclusive"] == [c.id for c in CATALOGUE if c.group == "origin"]
    assert scan.returncode == 1


@pytest.mark.parametrize("name", [n for n in SWITCHES if n != "production"])
def test_each_insecure_switch_gives_exactly_its_finding(wsguard_scans, name):
    scan = wsguard_scans[name]
    expected = SWITCHES[name][2]
    assert scan.found == expected, scan.stderr
    assert scan.returncode == (1 if expected else 0)
    assert_every_check_decided_once(scan.report)


def test_sarif_of_a_real_scan_is_valid(tmp_path):
    with naked_target("substring_origin") as target:
        out = tmp_path / "scan.sarif"
        scan = run_scan(
            target.url, out, "--origin", TRUSTED_ORIGIN, "--checks", "origin", fmt="sarif"
        )
    assert scan.returncode == 1
    log = json.loads(out.read_text())
    errors = [error.message for error in sarif_validator().iter_errors(log)]
    assert errors == []
    results = log["runs"][0]["results"]
    assert sorted(r["ruleId"] for r in results) == sorted(
        ["origin-lookalike", "origin-subdomain", "origin-scheme", "origin-port", "origin-multiple"]
    )
    assert {r["ruleId"]: r["level"] for r in results}["origin-lookalike"] == "error"


def test_checks_option_runs_only_the_named_groups(tmp_path):
    with naked_target("aiohttp_echo") as target:
        scan = run_scan(target.url, tmp_path / "r.json", "--checks", "host,tls")
    # Without the origin group, host-rebinding is probed on its own (not implied) and found.
    assert scan.found == {"host-spoof", "host-rebinding", "tls-plaintext"}
    skipped = scan.report["skipped"]
    assert skipped["origin-foreign"] == "not selected (--checks)"
    assert skipped["limits-handshake-timeout"] == "not selected (--checks)"
    assert scan.report["passed"] == []
    assert scan.report["requests"] <= 4


def test_fail_on_sets_the_exit_status(tmp_path):
    with naked_target("aiohttp_echo") as target:
        # frame-unmasked is medium, disclosure-server-header low: nothing is high.
        args = ("--checks", "framing,disclosure")
        high = run_scan(target.url, tmp_path / "a.json", *args, "--fail-on", "high")
        low = run_scan(target.url, tmp_path / "b.json", *args)
    assert high.found == low.found == {"frame-unmasked", "disclosure-server-header"}
    assert (high.returncode, low.returncode) == (0, 1)


def test_disclosure_alone_has_nothing_to_judge(tmp_path):
    with naked_target("aiohttp_echo") as target:
        scan = run_scan(target.url, tmp_path / "r.json", "--checks", "disclosure")
    assert scan.returncode == 0
    assert scan.report["passed"] == []
    assert scan.report["skipped"]["disclosure-server-header"] == (
        "no handshake was sent (select another group)"
    )


# -- refusals: one line on stderr, status 2, no traffic ----------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WSGUARD, "scan", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["ws://192.0.2.1/ws"],
            "error: URL: 192.0.2.1 is not a loopback address; the scanner sends hostile traffic,"
            " so scan only servers you are allowed to test and say so with --i-have-permission",
        ),
        (["http://127.0.0.1/ws"],
         "error: URL: the URL must start with ws:// or wss://, not 'http'"),
        (["ws://127.0.0.1/ws", "--checks", "origin,nope"], "error: --checks: unknown group 'nope'"
         " (choose from origin, host, tls, auth, limits, framing, disclosure, input)"),
        (["ws://127.0.0.1/ws", "--max-rate", "500"],
         "error: --max-rate: must be above 0 and at most 50 per second"),
    ],
)  # fmt: skip
def test_bad_invocations_are_refused_before_any_traffic(args, message):
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [message]
    assert result.stdout == ""


def test_a_port_with_nothing_listening_is_an_error():
    from support.processes import free_port

    port = free_port()
    result = cli(f"ws://127.0.0.1:{port}/ws")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: URL: cannot scan 127.0.0.1:{port}: cannot connect to 127.0.0.1:{port}: refused"
    ]
