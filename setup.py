"""Build hook for the optional compiled build (metadata lives in pyproject.toml).

By default wsguard builds as pure Python. With ``WSGUARD_COMPILE=1`` the modules every message
and publication goes through are compiled to C extensions with mypyc (part of mypy), which
type-checks them against the installed dependencies, so those come first:

    pip install . mypy 'setuptools>=77' wheel
    WSGUARD_COMPILE=1 pip install --no-build-isolation --no-deps --force-reinstall .

What it changes and what it measured: docs/performance.md, "Making your deployment faster" and
"2026-12-03 (afternoon)".
"""

import os

from setuptools import setup

# The per-message and per-publication path. The other modules stay interpreted: they run once
# per connection or less, and some use what mypyc does not compile faithfully (dataclasses
# with ClassVar fields, mypyc/mypyc#1122, in core/envelope.py).
COMPILED_MODULES = [
    "src/wsguard/core/authz.py",
    "src/wsguard/core/codec.py",
    "src/wsguard/core/limits.py",
    "src/wsguard/core/pipeline.py",
    "src/wsguard/core/schema.py",
    "src/wsguard/server/frames.py",
    "src/wsguard/server/hub.py",
    "src/wsguard/server/listener.py",
    "src/wsguard/server/rpc.py",
    "src/wsguard/server/session.py",
]


def ext_modules() -> list[object]:
    flag = os.environ.get("WSGUARD_COMPILE", "0")
    if flag == "0":
        return []
    if flag != "1":
        raise SystemExit(f"WSGUARD_COMPILE must be 0 or 1, not {flag!r}")
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit(
            "WSGUARD_COMPILE=1 needs mypyc (part of mypy) where the package is built: "
            "pip install . mypy 'setuptools>=77' wheel, then "
            "WSGUARD_COMPILE=1 pip install --no-build-isolation --no-deps --force-reinstall ."
        ) from None
    # The modules they import are type-checked too, but their errors are not reported: the
    # optional extras (redis, msgspec, pydantic) need not be installed to build.
    return list(mypycify(["--follow-imports=silent", *COMPILED_MODULES], opt_level="3"))


setup(ext_modules=ext_modules())
