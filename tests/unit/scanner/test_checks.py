"""The check catalogue: stable kebab-case ids grouped by probe family, each with a reason, a
remedy, the wsguard configuration that prevents it, and https references."""

from __future__ import annotations

import re

import pytest

from wsguard.scanner.checks import CATALOGUE, GROUPS, by_id
from wsguard.scanner.model import Severity

PREFIX = {
    "origin": "origin-",
    "host": "host-",
    "tls": "tls-",
    "auth": "auth-",
    "limits": "limits-",
    "framing": "frame-",
    "disclosure": "disclosure-",
    "input": "input-",
}
IDS = [check.id for check in CATALOGUE]


def test_ids_are_unique():
    assert len(IDS) == len(set(IDS))


@pytest.mark.parametrize("check_id", IDS)
def test_id_is_kebab_case(check_id: str):
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", check_id)


@pytest.mark.parametrize("check", CATALOGUE, ids=IDS)
def test_id_starts_with_its_group_prefix(check):
    assert check.id.startswith(PREFIX[check.group])


def test_framing_group_uses_the_frame_prefix():
    assert {c.id.split("-")[0] for c in CATALOGUE if c.group == "framing"} == {"frame"}


@pytest.mark.parametrize("check", CATALOGUE, ids=IDS)
def test_every_check_has_https_references(check):
    assert len(check.references) >= 1
    assert all(ref.url.startswith("https://") and ref.label for ref in check.references)


@pytest.mark.parametrize("check", CATALOGUE, ids=IDS)
def test_every_check_explains_itself(check):
    assert check.title.strip()
    assert check.why.strip()
    assert check.remedy.strip()
    assert check.config.strip()


@pytest.mark.parametrize("check", CATALOGUE, ids=IDS)
def test_cwe_matches_a_cwe_reference(check):
    if check.cwe is not None:
        assert f"https://cwe.mitre.org/data/definitions/{check.cwe}.html" in {
            ref.url for ref in check.references
        }


def test_groups_in_catalogue_order():
    assert GROUPS == ("origin", "host", "tls", "auth", "limits", "framing", "disclosure", "input")


def test_every_group_has_a_prefix():
    assert set(GROUPS) == set(PREFIX)


def test_by_id_returns_the_entry():
    assert by_id("origin-foreign") is CATALOGUE[0]


def test_by_id_unknown_raises_key_error():
    with pytest.raises(KeyError):
        by_id("origin-nonexistent")


@pytest.mark.parametrize(
    ("check_id", "severity"),
    [
        ("origin-foreign", Severity.HIGH),
        ("origin-null", Severity.HIGH),
        ("origin-missing", Severity.MEDIUM),
        ("tls-plaintext", Severity.HIGH),
        ("limits-fragments", Severity.LOW),
        ("limits-compression-bomb", Severity.HIGH),
        ("frame-length", Severity.MEDIUM),
        ("disclosure-close-reason", Severity.LOW),
    ],
)
def test_severity(check_id: str, severity: Severity):
    assert by_id(check_id).severity is severity


def test_origin_foreign_is_cwe_1385():
    assert by_id("origin-foreign").cwe == 1385


def test_catalogue_size():
    assert len(CATALOGUE) == 31
