"""The handshake stages remember what they parsed (allowed Host and Origin values, the TCP
peer's address) and the Headers index is built in one pass: a long-lived policy answers every
request exactly as a fresh one does, in any order, and a peer cannot make it remember refusals
or grow without bound."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsguard.core import host as host_module
from wsguard.core import origin as origin_module
from wsguard.core import transport as transport_module
from wsguard.core.host import HostPolicy, Scheme
from wsguard.core.origin import OriginPolicy
from wsguard.core.transport import TransportPolicy
from wsguard.core.upgrade import Headers, UpgradeRequest
from wsguard.settings import OriginsConfig, ServerConfig

HOST_LISTS: list[tuple[tuple[str, ...], bool]] = [
    (("example.com", "*.example.com:8443", "127.0.0.1:9141", "[::1]"), False),
    ((), True),
    ((), False),
]
HOST_VALUES = [
    "example.com", "EXAMPLE.com.", "example.com:80", "example.com:443", "example.com:8443",
    "a.example.com:8443", "A.B.example.com:8443", "a.example.com", "evilexample.com:8443",
    "127.0.0.1:9141", "127.0.0.1", "127.1:9141", "localhost", "localhost:1", "[::1]",
    "[0:0::1]:80", "", "exa mple.com", "user@example.com", "example.com:0", "é.example.com",
]  # fmt: skip
SCHEMES: list[Scheme] = ["http", "https"]


@given(st.lists(st.tuples(st.sampled_from(HOST_VALUES), st.sampled_from(SCHEMES)), max_size=40))
def test_a_long_lived_host_policy_answers_as_a_fresh_one(requests: list[tuple[str, Scheme]]):
    for allowed, loopback in HOST_LISTS:
        policy = HostPolicy(allowed, loopback)
        for value, scheme in requests:
            fresh = HostPolicy(allowed, loopback).check((value,), scheme)
            assert policy.check((value,), scheme) == fresh
            assert policy.check((value,), scheme) == fresh


ORIGIN_CONFIGS = [
    OriginsConfig(allowed=("https://app.example.com", "http://127.0.0.1:9141")),
    OriginsConfig(allowed=("https://*.example.com",)),
    OriginsConfig(),
    OriginsConfig(allow_any_origin=True, allow_null=True, allow_missing=True),
]
ORIGIN_VALUES = [
    "https://app.example.com", "HTTPS://App.Example.COM.:443", "https://app.example.com:443",
    "http://app.example.com", "https://a.b.example.com", "https://evilexample.com",
    "http://127.0.0.1:9141", "http://127.0.0.1:9142", "https://example.com", "null",
    "https://app.example.com/", "https://user@app.example.com", "ftp://app.example.com", "",
]  # fmt: skip
REQUEST_HOSTS: list[tuple[Scheme, str, int | None]] = [
    ("https", "app.example.com", None),
    ("https", "app.example.com", 443),
    ("http", "127.0.0.1", 9141),
    ("http", "app.example.com", None),
]


@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(ORIGIN_VALUES), max_size=2),
            st.sampled_from(REQUEST_HOSTS),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_a_long_lived_origin_policy_answers_as_a_fresh_one(requests: list[Any]):
    for config in ORIGIN_CONFIGS:
        policy = OriginPolicy(config)
        for values, (scheme, host, port), credentials in requests:
            args: dict[str, Any] = {
                "scheme": scheme, "host": host, "port": port, "credentials": credentials,
            }  # fmt: skip
            fresh = OriginPolicy(config).check(tuple(values), **args)
            assert policy.check(tuple(values), **args) == fresh
            assert policy.check(tuple(values), **args) == fresh


def test_refused_values_are_never_remembered():
    hosts = HostPolicy(("example.com",), False)
    origins = OriginPolicy(OriginsConfig(allowed=("https://app.example.com",)))
    for n in range(50):
        hosts.check((f"h{n}.test",), "https")
        origins.check(
            (f"https://o{n}.test",), scheme="https", host="a", port=None, credentials=False
        )
    assert hosts._allowed == {}
    assert origins._allowed == {}


@pytest.mark.parametrize("size", [1, 3])
def test_what_is_remembered_stays_bounded(monkeypatch: pytest.MonkeyPatch, size: int):
    monkeypatch.setattr(host_module, "_REMEMBERED", size)
    monkeypatch.setattr(origin_module, "_REMEMBERED", size)
    hosts = HostPolicy(("*.example.com",), False)
    origins = OriginPolicy(OriginsConfig(allowed=("https://*.example.com",)))
    for n in range(20):
        assert not hasattr(hosts.check((f"h{n}.example.com",), "https"), "status")
        origin = f"https://o{n}.example.com"
        result = origins.check((origin,), scheme="https", host="a", port=None, credentials=False)
        assert result == origin
        assert len(hosts._allowed) <= size
        assert len(origins._allowed) <= size


PEERS = ["127.0.0.1", "::ffff:127.0.0.1", "10.0.0.7", "2001:db8::1", "not-an-ip", "::1"]


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("proxies", [(), ("10.0.0.0/8",), ("127.0.0.1", "::1")])
def test_remembered_peer_parses_resolve_as_fresh_ones(peer: str, proxies: tuple[str, ...]):
    policy = TransportPolicy(ServerConfig(trusted_proxies=proxies))
    headers = Headers([("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-Proto", "https")])
    request = UpgradeRequest("GET", "/ws", "HTTP/1.1", headers, peer)
    transport_module._peer.cache_clear()
    first = (policy.resolve(request), policy.check(request, "http"))
    assert transport_module._peer.cache_info().currsize == 1
    again = (policy.resolve(request), policy.check(request, "http"))
    assert first == again
    assert transport_module._peer.cache_info().hits >= 2
    address = transport_module._address(peer)
    assert transport_module._peer(peer) == (address, peer if address is None else str(address))


@pytest.mark.parametrize(
    ("items", "repeats"),
    [
        ([], False),
        ([("Host", "a"), ("Origin", "b")], False),
        ([("Host", "a"), ("host", "b")], True),
        ([("X-A", "1"), ("Cookie", "c"), ("x-a", "2"), ("X-A", "3")], True),
        ([("Host", "h"), *((("X-B", "x-b")[n % 2], str(n)) for n in range(200))], True),
    ],
)
def test_headers_index_keeps_every_value_in_order(items: list[tuple[str, str]], repeats: bool):
    headers = Headers(items)
    assert headers.has_repeats is repeats
    assert headers.items() == tuple(items)
    for name, _ in items:
        expected = tuple(v for n, v in items if n.lower() == name.lower())
        assert headers.get_all(name) == expected
        assert headers.get_all(name.upper()) == expected
        assert headers.count(name) == len(expected)
        assert headers.get(name) == expected[0]
        assert name.swapcase() in headers
    assert headers.get_all("absent") == ()
    assert headers.get("absent") is None
