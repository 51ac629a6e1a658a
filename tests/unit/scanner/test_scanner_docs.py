"""docs/reference/scanner.md stays in step with the code: every catalogue check and every
``wsguard scan`` option is documented, and the page names no check that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from wsguard.cli import scan
from wsguard.scanner.checks import CATALOGUE

REFERENCE = Path(__file__).resolve().parents[3] / "docs" / "reference" / "scanner.md"
CHECK_ID = re.compile(r"`((?:origin|host|tls|auth|limits|frame|disclosure|input)-[a-z0-9-]+)`")
IDS = [check.id for check in CATALOGUE]


def _text() -> str:
    return REFERENCE.read_text(encoding="utf-8")


def _option_names() -> list[str]:
    names = []
    for param in scan.params:
        if isinstance(param, click.Option):
            names += [opt for opt in param.opts if opt.startswith("--")]
        else:
            names.append((param.name or "").upper())
    return names


@pytest.mark.parametrize("check_id", IDS)
def test_every_check_is_documented(check_id: str):
    assert f"`{check_id}`" in _text()


def test_no_stale_check_ids():
    mentioned = set(CHECK_ID.findall(_text()))
    assert mentioned, "the pattern found no check ids at all"
    assert sorted(mentioned - set(IDS)) == []


@pytest.mark.parametrize("option", _option_names())
def test_every_option_is_documented(option: str):
    assert re.search(rf"`{re.escape(option)}(?![\w-])", _text()), option
