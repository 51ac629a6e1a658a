"""The opening handshake request as plain values, and the RFC 6455 §4.2.1 request checks.

Performs no I/O; reads no clock. Any face (our listener, the ASGI guard, a unit test) builds an
``UpgradeRequest`` from what it parsed and hands it to the handshake pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["ClientCert", "Headers", "UpgradeRequest"]


class Headers:
    """An immutable, case-insensitive multi-dict of HTTP header fields.

    Repeated fields keep every value, in order, so that duplicates can be refused instead of
    silently merged (a classic smuggling and bypass vector).
    """

    __slots__ = ("_items", "_map")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: tuple[tuple[str, str], ...] = tuple(items)
        # Each name's values as a tuple built once: a repeated field is rare (and refused where
        # it matters), so only repeated names collect a list first (linear in the field count
        # however many repeats a peer sends).
        index: dict[str, tuple[str, ...]] = {}
        repeated: dict[str, list[str]] = {}
        for name, value in self._items:
            key = name.lower()
            first = index.get(key)
            if first is None:
                index[key] = (value,)
            elif key in repeated:
                repeated[key].append(value)
            else:
                repeated[key] = [*first, value]
        for key, values in repeated.items():
            index[key] = tuple(values)
        self._map = index

    @property
    def has_repeats(self) -> bool:
        """Whether some field name occurs more than once (case-insensitively)."""
        return len(self._map) != len(self._items)

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every value of ``name``, in the order received (empty when absent)."""
        return self._map.get(name.lower(), ())

    def get(self, name: str) -> str | None:
        """The first value of ``name``, or ``None``."""
        values = self._map.get(name.lower())
        return values[0] if values else None

    def count(self, name: str) -> int:
        return len(self._map.get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def items(self) -> tuple[tuple[str, str], ...]:
        """The raw fields, in the order received."""
        return self._items

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"


@dataclass(frozen=True, slots=True)
class ClientCert:
    """The verified TLS client certificate's identity (the listener only fills this in after
    the TLS layer verified the chain against ``server.tls_client_ca``)."""

    subject_cn: str | None = None
    san: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """An HTTP request that may be a WebSocket opening handshake.

    Attributes:
        method: the request method (``GET``).
        target: the request target as received (path and query).
        http_version: ``HTTP/1.1`` or ``HTTP/1.0``.
        headers: every header field.
        peer: the IP address of the TCP peer (a proxy, when behind one).
        is_tls: whether the connection to us is TLS.
        client_cert: the verified client certificate, if one was presented.
    """

    method: str
    target: str
    http_version: str
    headers: Headers
    peer: str
    is_tls: bool = False
    client_cert: ClientCert | None = None
    path: str = field(init=False)
    query: str = field(init=False)

    def __post_init__(self) -> None:
        path, _, query = self.target.partition("?")
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "query", query)
