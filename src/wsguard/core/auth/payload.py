"""The compact payload encoding tickets and session cookies share.

Performs no I/O; reads no clock. A payload is base64url without padding over compact JSON. On
the way in, the JSON is strict: ``NaN`` and ``Infinity`` (which ``json.loads`` accepts by
default) are refused, since a signed expiry of ``Infinity`` would never expire.
"""

from __future__ import annotations

import base64
import json
from typing import Any

__all__ = ["b64url_decode_json", "b64url_encode", "is_number"]


def b64url_encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def b64url_decode_json(payload: str) -> Any:
    """Decode base64url (padding optional) then strict JSON.

    Raises:
        ValueError: bad base64 (``binascii.Error`` is a ``ValueError``), bad UTF-8, bad JSON,
            ``NaN``/``Infinity``.
        RecursionError: absurdly deep JSON.
    """
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)


def is_number(value: object) -> bool:
    """An int or float, never a bool (``True`` is an int in Python, not a time in JSON)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
