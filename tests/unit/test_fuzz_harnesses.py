"""The atheris harnesses under fuzzing/ keep working: each imports without atheris and holds
its invariant on every seed of its corpus and on a few hundred inputs mutated from them.

A failure here is either a harness broken by a change, or a real bug the mutations hit: run
the harness on the printed input (see fuzzing/README.md).
"""

from __future__ import annotations

import importlib
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

FUZZING = Path(__file__).resolve().parents[2] / "fuzzing"
HARNESSES = sorted(p.stem.removeprefix("fuzz_") for p in FUZZING.glob("fuzz_*.py"))
MUTATED = 300


@pytest.fixture
def harness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # As `python fuzzing/fuzz_x.py` has it: the harness's folder first on sys.path. atheris
    # is made unimportable, so a harness importing it outside __main__ fails on its first
    # import, which is this one (nothing else imports the harnesses).
    monkeypatch.syspath_prepend(str(FUZZING))
    monkeypatch.setitem(sys.modules, "atheris", None)
    return importlib.import_module(f"fuzz_{request.param}")


def seeds(name: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((FUZZING / "corpus" / name).iterdir())]


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One libFuzzer-like mutation: flip, insert, delete, duplicate, splice or truncate."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        at = rng.randint(0, len(buf))
        if kind == 0 and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            buf[at:at] = bytes([rng.choice((0, 10, 13, 32, 34, 44, 46, 58, 61, 123, 255))])
        elif kind == 2:
            del buf[at : at + rng.randint(1, 8)]
        elif kind == 3:
            buf[at:at] = buf[at : at + rng.randint(1, 16)]
        elif kind == 4:
            other = rng.choice(pool)
            cut = rng.randint(0, len(other))
            buf[at:] = other[cut:]
        elif kind == 5:
            del buf[at:]
        else:
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
    return bytes(buf)


def inputs(name: str) -> list[bytes]:
    pool = seeds(name)
    rng = random.Random(0)
    generated = [rng.randbytes(rng.randint(0, 64)) for _ in range(MUTATED // 10)]
    generated += [mutate(rng, rng.choice(pool), pool) for _ in range(MUTATED - len(generated))]
    return generated


def test_every_target_has_a_harness_and_seeds():
    assert HARNESSES == ["codec", "credentials", "envelope", "frames", "handshake"]
    for name in HARNESSES:
        assert len(seeds(name)) >= 5, name


@pytest.mark.parametrize("harness", HARNESSES, indirect=True)
def test_harness_holds_on_its_seeds(harness: ModuleType):
    name = harness.__name__.removeprefix("fuzz_")
    for index, data in enumerate(seeds(name)):
        try:
            harness.TestOneInput(data)
        except Exception as exc:
            pytest.fail(f"seed {index} of {name}: {type(exc).__name__}: {exc}; input {data!r}")


@pytest.mark.parametrize("harness", HARNESSES, indirect=True)
def test_harness_holds_on_mutated_inputs(harness: ModuleType):
    name = harness.__name__.removeprefix("fuzz_")
    for data in inputs(name):
        try:
            harness.TestOneInput(data)
        except Exception as exc:
            pytest.fail(f"{name}: {type(exc).__name__}: {exc}; input {data!r}")


@pytest.mark.parametrize("harness", ["codec"], indirect=True)
def test_a_broken_invariant_fails_the_harness(harness: ModuleType, monkeypatch: pytest.MonkeyPatch):
    # The harness must be able to fail: a codec that accepts duplicate keys is caught.
    monkeypatch.setattr(harness, "decode", lambda text, **_: {"a": 2})
    with pytest.raises(AssertionError):
        harness.TestOneInput(b'{"a":1,"a":2}')
