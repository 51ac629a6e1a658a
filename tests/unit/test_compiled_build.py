"""The compiled build (setup.py, ``WSGUARD_COMPILE=1``): the modules compiled are exactly those
setup.py lists, and none otherwise, so an extension left in a source tree never shadows the
source it was built from. ``scripts/check`` runs the suite's engine tests a second time against
the compiled build with ``WSGUARD_EXPECT_COMPILED=1``."""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

import wsguard

ROOT = Path(__file__).resolve().parents[2]
EXPECT_COMPILED = os.environ.get("WSGUARD_EXPECT_COMPILED") == "1"


def _listed() -> list[str]:
    """setup.py's COMPILED_MODULES, read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "COMPILED_MODULES"
        ):
            paths: list[str] = ast.literal_eval(node.value)
            return paths
    raise AssertionError("setup.py has no COMPILED_MODULES")


def _module(path: str) -> str:
    return path.removeprefix("src/").removesuffix(".py").replace("/", ".")


def test_every_listed_module_is_a_source_file():
    paths = _listed()
    assert paths, "nothing to compile"
    for path in paths:
        assert path.startswith("src/wsguard/"), path
        assert path.endswith(".py"), path
        assert (ROOT / path).is_file(), path


def test_the_compiled_modules_are_exactly_the_listed_ones_or_none():
    package = Path(wsguard.__file__).parent
    extensions = {
        "wsguard." + ".".join(p.relative_to(package).parts).split(".cpython-")[0].split(".abi3")[0]
        for p in package.rglob("*.so")
    }
    listed = {_module(path) for path in _listed()}
    assert extensions == (listed if EXPECT_COMPILED else set())
    for name in listed:
        loaded_from = importlib.import_module(name).__file__ or ""
        assert loaded_from.endswith(".so") == EXPECT_COMPILED, (name, loaded_from)
