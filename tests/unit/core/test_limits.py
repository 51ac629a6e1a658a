"""Token buckets, the keyed handshake limiter and connection caps, on a fake clock."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsguard.core.decisions import Reject
from wsguard.core.limits import ConnectionCaps, KeyedRateLimiter, TokenBucket, client_key

# ---------------------------------------------------------------- TokenBucket


def test_bucket_starts_full_and_allows_burst_then_refuses():
    bucket = TokenBucket(rate=1.0, burst=3)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]


def test_bucket_refills_at_rate():
    bucket = TokenBucket(rate=2.0, burst=2)
    assert bucket.take(0.0)
    assert bucket.take(0.0)
    assert not bucket.take(0.0)
    assert not bucket.take(0.4)  # 0.8 tokens
    assert bucket.take(0.5)  # 1.0 token
    assert not bucket.take(0.5)


def test_bucket_never_refills_beyond_burst():
    bucket = TokenBucket(rate=10.0, burst=2)
    bucket.take(0.0)
    assert [bucket.take(1000.0) for _ in range(3)] == [True, True, False]


def test_bucket_clock_stepping_back_mints_no_tokens():
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.5)  # refill is measured from 10.0, not from 5.0
    assert bucket.take(11.0)


@pytest.mark.parametrize(
    ("cost", "expected"), [pytest.param(2.0, True, id="fits"), pytest.param(3.5, False, id="big")]
)
def test_bucket_take_costs_several_tokens(cost: float, expected: bool):
    assert TokenBucket(rate=1.0, burst=3).take(0.0, cost) is expected


def test_refused_take_keeps_the_tokens():
    bucket = TokenBucket(rate=1.0, burst=3)
    assert not bucket.take(0.0, cost=4.0)
    assert bucket.take(0.0, cost=3.0)


@pytest.mark.parametrize(
    ("now", "expected"),
    [pytest.param(1.9, False, id="refilling"), pytest.param(2.0, True, id="full")],
)
def test_bucket_is_full_once_refilled(now: float, expected: bool):
    bucket = TokenBucket(rate=1.0, burst=2)
    bucket.take(0.0, cost=2.0)
    assert bucket.is_full(now) is expected


# ---------------------------------------------------------------- KeyedRateLimiter


def test_limiter_keeps_one_bucket_per_key():
    limiter = KeyedRateLimiter(rate=0.001, burst=2)
    assert [limiter.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("b", 0.0)


def test_limiter_refills_with_time():
    limiter = KeyedRateLimiter(rate=1.0, burst=1)
    assert limiter.allow("a", 0.0)
    assert not limiter.allow("a", 0.5)
    assert limiter.allow("a", 1.5)


def test_limiter_over_max_keys_drops_full_buckets_first():
    limiter = KeyedRateLimiter(rate=1.0, burst=1, max_keys=3)
    limiter.allow("old-full", 0.0)  # refilled (full again) by t=10
    limiter.allow("busy-1", 10.0)
    limiter.allow("busy-2", 10.0)
    limiter.allow("new", 10.0)  # 4 > 3: "old-full" carries no information and goes
    assert len(limiter) == 3
    assert not limiter.allow("busy-1", 10.0)  # still remembered as empty
    assert not limiter.allow("busy-2", 10.0)


def test_limiter_over_max_keys_drops_least_recently_used_when_none_is_full():
    limiter = KeyedRateLimiter(rate=0.001, burst=1, max_keys=10)
    for i in range(10):
        limiter.allow(f"k{i}", 0.0)
    limiter.allow("k0", 0.0)  # k0 becomes the most recent; k1 is now the oldest
    limiter.allow("new", 0.0)
    assert len(limiter) == 10
    assert not limiter.allow("k0", 0.0)  # kept: still empty
    assert not limiter.allow("k3", 0.0)
    assert limiter.allow("k1", 0.0)  # dropped: a fresh bucket


def test_limiter_never_drops_the_key_it_is_answering():
    limiter = KeyedRateLimiter(rate=0.001, burst=1, max_keys=1)
    assert limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)
    assert len(limiter) == 1
    assert not limiter.allow("b", 0.0)


def test_limiter_sweeps_full_buckets_only_every_tenth_of_max_keys():
    limiter = KeyedRateLimiter(rate=1.0, burst=1, max_keys=20)  # sweep every 2 new keys
    for i in range(20):
        limiter.allow(f"idle-{i}", 0.0)  # empty now, full again from t=1
    limiter.allow("new-0", 10.0)  # first overflow sweeps: every full bucket goes
    assert len(limiter) == 1
    for i in range(19):
        limiter.allow(f"busy-{i}", 20.0)  # empty until t=21
    limiter.allow("new-1", 20.0)  # overflow, sweep due: only "new-0" is full and goes
    assert len(limiter) == 20
    assert not limiter.allow("busy-0", 20.0)  # the oldest busy bucket was kept
    limiter.allow("new-2", 30.0)  # overflow, no sweep due: only the oldest goes, though
    assert len(limiter) == 20  # every bucket is full by now


def test_limiter_memory_stays_bounded_under_a_flood_of_keys():
    limiter = KeyedRateLimiter(rate=0.001, burst=5, max_keys=100)
    for i in range(10_000):
        limiter.allow(f"198.51.{i // 256}.{i % 256}", float(i) / 1000)
    assert len(limiter) <= 100


def test_limiter_refuses_zero_max_keys():
    with pytest.raises(ValueError, match="max_keys"):
        KeyedRateLimiter(rate=1.0, burst=1, max_keys=0)


# ---------------------------------------------------------------- client_key


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        pytest.param("203.0.113.9", "203.0.113.9", id="ipv4-itself"),
        pytest.param("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64", id="ipv6-slash-64"),
        pytest.param("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64", id="same-64-same-key"),
        pytest.param("::1", "::/64", id="ipv6-loopback"),
        pytest.param("::ffff:203.0.113.9", "::ffff:203.0.113.9", id="v4-mapped-not-grouped"),
        pytest.param("2001:db8:1:2::203.0.113.9", "2001:db8:1:2::/64", id="dotted-ipv6-grouped"),
        pytest.param("unix-socket", "unix-socket", id="not-an-ip"),
    ],
)
def test_client_key_groups_ipv6_by_slash_64(ip: str, key: str):
    assert client_key(ip) == key


def parsed_key(ip: str) -> str:
    """client_key without its shortcut: every string through ipaddress."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((int(address), 64), strict=False))
    return ip


@given(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(str),
        st.ip_addresses(v=6).map(lambda a: a.exploded),
        st.text(alphabet="0123456789.:abcdefABCDEF%x ", max_size=45),
        st.tuples(st.ip_addresses(v=6), st.ip_addresses(v=4)).map(
            lambda pair: f"{pair[0].exploded[:30]}{pair[1]}"
        ),
        st.text(max_size=20),
    )
)
def test_client_key_shortcut_answers_as_the_parse(ip: str):
    assert client_key(ip) == parsed_key(ip)


# ---------------------------------------------------------------- ConnectionCaps

IP_CAP = Reject(429, "Too Many Requests", "ip_connection_cap")
TOTAL_CAP = Reject(503, "Service Unavailable", "connection_cap")
USER_CAP = Reject(429, "Too Many Requests", "user_connection_cap")


def test_caps_allow_until_per_ip_cap_then_429():
    caps = ConnectionCaps(max_total=10, max_per_ip=2, max_per_user=10)
    for _ in range(2):
        assert caps.check_ip("a") is None
        caps.acquire("a", None)
    assert caps.check_ip("a") == IP_CAP
    assert caps.check_ip("b") is None


def test_caps_total_cap_answers_503():
    caps = ConnectionCaps(max_total=2, max_per_ip=5, max_per_user=5)
    caps.acquire("a", None)
    caps.acquire("b", None)
    assert caps.check_ip("c") == TOTAL_CAP


def test_caps_per_ip_is_checked_before_total():
    caps = ConnectionCaps(max_total=1, max_per_ip=1, max_per_user=5)
    caps.acquire("a", None)
    assert caps.check_ip("a") == IP_CAP


def test_caps_per_user_cap_answers_429():
    caps = ConnectionCaps(max_total=10, max_per_ip=10, max_per_user=1)
    assert caps.check_user("alice") is None
    caps.acquire("a", "alice")
    assert caps.check_user("alice") == USER_CAP
    assert caps.check_user("bob") is None


def test_caps_release_frees_the_slot_and_forgets_empty_entries():
    caps = ConnectionCaps(max_total=10, max_per_ip=1, max_per_user=1)
    caps.acquire("a", "alice")
    caps.acquire("b", None)
    caps.release("a", "alice")
    assert (caps.total, caps.per_ip("a"), caps.per_user("alice")) == (1, 0, 0)
    assert caps.check_ip("a") is None
    assert caps.check_user("alice") is None
    assert caps._per_ip == {"b": 1}
    assert caps._per_user == {}


def test_caps_counts_several_connections_per_key():
    caps = ConnectionCaps(max_total=10, max_per_ip=5, max_per_user=5)
    for _ in range(3):
        caps.acquire("a", "alice")
    caps.release("a", "alice")
    assert (caps.total, caps.per_ip("a"), caps.per_user("alice")) == (2, 2, 2)


@pytest.mark.parametrize(
    ("ip", "user"),
    [
        pytest.param("a", "alice", id="twice"),
        pytest.param("z", None, id="unknown-ip"),
        pytest.param("z", "nobody", id="unknown-user"),
    ],
)
def test_caps_release_never_goes_negative(ip: str, user: str | None):
    caps = ConnectionCaps(max_total=10, max_per_ip=5, max_per_user=5)
    caps.acquire("a", "alice")
    caps.release("a", "alice")
    caps.release(ip, user)
    assert (caps.total, caps.per_ip(ip), caps.per_user(user or "alice")) == (0, 0, 0)


# ---------------------------------------------------------------- the inlined arithmetic

# TokenBucket.take and KeyedRateLimiter.allow carry the refill arithmetic inlined, for speed.
# They must stay exactly the straightforward model below: same answers, same tokens left.


class ModelBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens = rate, burst, burst
        self.updated: float | None = None

    def take(self, now: float, cost: float = 1.0) -> bool:
        if self.updated is None or now > self.updated:
            if self.updated is not None:
                self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


_steps = st.lists(
    st.tuples(
        st.floats(min_value=-2.0, max_value=5.0, allow_nan=False),  # the clock may step back
        st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5, 64.0]),
        st.sampled_from(["a", "b", "c", "d"]),
    ),
    max_size=60,
)


@given(st.sampled_from([0.5, 1.0, 3.0, 1e6]), st.sampled_from([1.0, 3, 4.5, 1_000_000]), _steps)
def test_bucket_take_matches_the_model(
    rate: float, burst: float, steps: list[tuple[float, float, str]]
) -> None:
    bucket, model = TokenBucket(rate, burst), ModelBucket(rate, burst)
    now = 100.0
    for dt, cost, _ in steps:
        now += dt
        assert bucket.take(now, cost) == model.take(now, cost)
        assert bucket._tokens == model.tokens
        assert bucket._updated == model.updated


@given(st.sampled_from([1, 2, 3, 10]), _steps)
def test_limiter_allow_matches_one_model_bucket_per_key(
    max_keys: int, steps: list[tuple[float, float, str]]
) -> None:
    limiter = KeyedRateLimiter(2.0, 3, max_keys=max_keys)
    models: dict[str, ModelBucket] = {}
    now = 100.0
    for dt, cost, key in steps:
        now += dt
        model = models.get(key) if key in limiter._buckets else None
        if model is None:  # new, or evicted: a fresh full bucket either way
            model = models[key] = ModelBucket(2.0, 3)
        assert limiter.allow(key, now, cost) == model.take(now, cost)
        assert limiter._buckets[key]._tokens == model.tokens
        assert len(limiter) <= max_keys


def test_the_eviction_sweep_changes_no_bucket_it_keeps():
    # Found by hypothesis (test_limiter_allow_matches_one_model_bucket_per_key): is_full()
    # used to refill the buckets it was asked about, so a bucket the sweep kept was credited up
    # to the sweep's time and a later take with an earlier clock reading got more than it had.
    limiter = KeyedRateLimiter(2.0, 3, max_keys=2)
    assert limiter.allow("b", 100.0, 0.5)
    assert limiter.allow("c", 99.5, 0.0)
    assert limiter.allow("b", 99.0, 1.0)  # the clock stepped back: no refill; b holds 1.5
    assert limiter.allow("a", 100.5, 0.0)  # a third key: the sweep drops c (full), keeps b
    assert list(limiter._buckets) == ["b", "a"]
    assert limiter._buckets["b"]._tokens == 1.5
    assert not limiter.allow("b", 99.5, 2.0)
