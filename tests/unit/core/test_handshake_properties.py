"""Properties of the whole handshake decision (``HandshakePipeline.decide``, the call the
listener and the ASGI guard make), over header lists drawn from a grammar of realistic and
hostile values: duplicate fields, odd Origins, hosts with ports, userinfo, IDNA and IPv6, case
variants, whitespace and control characters.

- every request gets an ``Accept`` or a refusal whose status and reason code
  docs/reference/codes.md documents (never ``internal_error``: that means a check raised);
- an ``Accept`` implies exactly one Origin that, serialized, is in the allow-list, a Host in
  the allow-list, a key that is base64 of 16 bytes and version 13 (judged by matchers written
  independently of core/host.py and core/origin.py);
- metamorphic: the case of header names, and the order of fields, do not change the decision;
  an unrelated extra field never turns a refusal into an acceptance.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from http import HTTPStatus
from pathlib import Path
from typing import Any

from handshake_factory import KEY, settings
from hypothesis import event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from wsguard.core.decisions import ANONYMOUS, Accept, Reject
from wsguard.core.handshake import HandshakePipeline
from wsguard.core.upgrade import Headers, UpgradeRequest

CODES_MD = Path(__file__).resolve().parents[3] / "docs" / "reference" / "codes.md"
STATUSES = {400, 401, 403, 404, 426, 429, 431, 503}


def documented_handshake_codes() -> dict[str, set[int]]:
    """reason code -> statuses, from the handshake table of docs/reference/codes.md."""
    text = CODES_MD.read_text(encoding="utf-8")
    section = text.split("## Handshake", 1)[1].split("\n## ", 1)[0]
    codes: dict[str, set[int]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            continue
        statuses = {int(s) for s in re.findall(r"\b\d{3}\b", cells[1])}
        for reason in re.findall(r"`([a-z_]+)`", cells[2]):
            codes.setdefault(reason, set()).update(statuses)
    return codes


DOCUMENTED = documented_handshake_codes()

ALLOWED_HOSTS = ("app.example.com", "*.example.com:8443", "127.0.0.1:8080", "[::1]:8080")
ALLOWED_ORIGINS = ("https://app.example.com", "https://*.example.com:8443", "http://127.0.0.1:8080")
TRUSTED_PROXY = "10.0.0.1"
# (peer, is_tls, the schemes the request may end up with)
CONTEXTS = [
    ("127.0.0.1", False, ("http",)),
    ("203.0.113.7", True, ("https",)),
    ("203.0.113.7", False, ("http",)),
    (TRUSTED_PROXY, False, ("http", "https")),
]


def pipeline(required: bool) -> HandshakePipeline:
    """A fresh pipeline (no caps or rate state carried between decisions)."""
    return HandshakePipeline(
        settings(
            server={"trusted_proxies": (TRUSTED_PROXY,)},
            origins={"allowed_hosts": ALLOWED_HOSTS, "allowed": ALLOWED_ORIGINS},
            auth={"required": required, "methods": ("ticket", "jwt")},
        ),
        loopback_bound=False,
    )


# ---------------------------------------------------------------- the grammar

LABELS = ["app", "a", "b", "example", "com", "evil", "test", "xn--bcher-kva", "bücher", "-x", ""]
HOSTS = [
    "app.example.com", "APP.Example.COM.", "app.example.com:443", "app.example.com:80",
    "a.b.example.com:8443", "example.com:8443", "evilexample.com:8443", "127.0.0.1:8080",
    "[::1]:8080", "[0:0::1]:8080", "[::1%eth0]:8080", "[::ffff:127.0.0.1]:8080",
    "user@app.example.com", "app.example.com:", "app.example.com:08443", "app.example.com:65536",
    "xn--bcher-kva.example.com:8443", "bücher.example.com:8443", "2130706433:8080",
    "127.1:8080", "0x7f.0.0.1:8080", " app.example.com", "app.example.com\t",
    "app.example.com\x00", "app.example.com/ws", "app.example.com.evil.test", "",
]  # fmt: skip
ORIGINS = [
    "https://app.example.com", "HTTPS://APP.Example.COM:443", "https://app.example.com:443",
    "https://app.example.com/", "https://app.example.com.", "http://app.example.com",
    "https://a.example.com:8443", "https://x.y.example.com:8443", "https://example.com:8443",
    "https://evil.test", "https://app.example.com.evil.test", "https://app.example.com@evil.test",
    "https://evil.test#app.example.com", "null", "NULL", "", "http://127.0.0.1:8080",
    "http://127.0.0.1:80", "http://[::1]:8080", "https://xn--bcher-kva.example.com:8443",
    "https://bücher.example.com:8443", "https://app.example.com\x00", " https://app.example.com",
    "ws://app.example.com", "file://", "https://*.example.com:8443", "https://app.example.com:0",
]  # fmt: skip
PORTS = ["", ":443", ":80", ":8443", ":8080", ":0", ":", ":99999"]

hosts = st.sampled_from(HOSTS) | st.builds(
    "{}{}".format,
    st.lists(st.sampled_from(LABELS), min_size=1, max_size=4).map(".".join),
    st.sampled_from(PORTS),
)
origins = st.sampled_from(ORIGINS) | st.builds(
    "{}://{}".format, st.sampled_from(["https", "http", "HTTPS", "ftp"]), hosts
)
keys = st.sampled_from(
    [KEY, "AAAAAAAAAAAAAAAAAAAAAA==", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZR==",
     "dGhlIHNhbXBsZSBub25jZQ==\x00", "", "x" * 24, base64.b64encode(b"x" * 17).decode()]
)  # fmt: skip
# Whitespace, control characters, separators, non-ASCII look-alikes (the Kelvin sign folds to k).
noise = st.text(st.sampled_from(list(" \t\x00\x0b\x7f,;:=@/.[]%#?*aZ9éü\u212a\u2028")), max_size=12)
ws_values = {
    "Host": hosts,
    "Origin": origins,
    "Upgrade": st.sampled_from(["websocket", "WebSocket", "h2c, websocket", "websocket2", ""]),
    "Connection": st.sampled_from(["Upgrade", "keep-alive, Upgrade", "upgrade", "close", ""]),
    "Sec-WebSocket-Key": keys,
    "Sec-WebSocket-Version": st.sampled_from(["13", "8", " 13", "13, 8", ""]),
    "X-Forwarded-Proto": st.sampled_from(["https", "http", "https, http", "HTTPS"]),
    "X-Forwarded-For": st.sampled_from(["198.51.100.2", "10.0.0.1", "x", "1.2.3.4, 10.0.0.1"]),
    "Content-Length": st.sampled_from(["0", "5"]),
    "Transfer-Encoding": st.just("chunked"),
}
BASE = ["Host", "Origin", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version"]
VALID = {
    "Host": "app.example.com",
    "Origin": "https://app.example.com",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
}
# Fields no stage reads: adding one must never help a request through.
UNRELATED = [
    "User-Agent", "Accept-Language", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Referer",
    "X-Requested-With", "Pragma", "Cache-Control", "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Protocol", "X-Origin", "X-Host", "Forwarded", "X-Real-IP",
]  # fmt: skip


# How often a field keeps its valid value: the Host and Origin grammars are the point, the
# rest mostly stays valid so that most requests reach the host and origin stages.
KEEP_VALID = {"Host": 4, "Origin": 4}


@st.composite
def field_value(draw: st.DrawFn, name: str) -> str:
    """The valid value (often), else a grammar value, else noise."""
    choice = draw(st.integers(0, 9))
    if name in VALID and choice < KEEP_VALID.get(name, 8):
        return VALID[name]
    if choice == 9:
        return draw(noise)
    return draw(ws_values[name])


@st.composite
def header_lists(draw: st.DrawFn) -> list[tuple[str, str]]:
    fields = [(name, draw(field_value(name))) for name in BASE if draw(st.integers(0, 19)) != 0]
    extra = draw(st.lists(st.sampled_from([*ws_values, *UNRELATED]), max_size=3))
    for name in extra:
        value = draw(field_value(name)) if name in ws_values else draw(noise)
        fields.append((name, value))
    return draw(st.permutations(fields))


@st.composite
def requests(draw: st.DrawFn) -> tuple[UpgradeRequest, tuple[str, ...]]:
    peer, is_tls, schemes = draw(st.sampled_from(CONTEXTS))
    request = UpgradeRequest(
        method=draw(st.sampled_from(["GET"] * 12 + ["POST", "get"])),
        target=draw(st.sampled_from(["/ws"] * 12 + ["/ws?x=1", "/WS", "/ws/", "/"])),
        http_version=draw(st.sampled_from(["HTTP/1.1"] * 12 + ["HTTP/1.0", "HTTP/2"])),
        headers=Headers(draw(header_lists())),
        peer=peer,
        is_tls=is_tls,
    )
    return request, schemes


@st.composite
def host_origin_requests(draw: st.DrawFn) -> tuple[UpgradeRequest, tuple[str, ...]]:
    """A well-formed handshake but for its Host and Origin fields: the allow-list stages."""
    peer, is_tls, schemes = draw(st.sampled_from(CONTEXTS))
    fields = [(name, value) for name, value in VALID.items() if name not in ("Host", "Origin")]
    for name, values in (("Host", hosts), ("Origin", origins)):
        count = draw(st.sampled_from([1, 1, 1, 1, 0, 2]))
        fields += [(name, draw(st.just(VALID[name]) | values)) for _ in range(count)]
    if peer == TRUSTED_PROXY and draw(st.booleans()):
        fields.append(("X-Forwarded-Proto", draw(ws_values["X-Forwarded-Proto"])))
    items = draw(st.permutations(fields))
    return UpgradeRequest("GET", "/ws", "HTTP/1.1", Headers(items), peer, is_tls), schemes


def with_headers(request: UpgradeRequest, items: list[tuple[str, str]]) -> UpgradeRequest:
    return UpgradeRequest(
        request.method, request.target, request.http_version, Headers(items), request.peer,
        request.is_tls,
    )  # fmt: skip


# ---------------------------------------------------------------- independent oracles

_DEFAULT = {"http": 80, "https": 443}
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"


def _authority(text: str) -> tuple[str, int | None] | None:
    """host, port of an authority in the plain form a browser sends (lowercase, one trailing
    dot dropped, IPv6 compressed), else None."""
    match = re.fullmatch(
        rf"((?:{_LABEL}\.)*{_LABEL}\.?|127\.0\.0\.1|\[([0-9a-f:]+)\])(?::([0-9]{{1,5}}))?",
        text.lower(),
        re.ASCII,
    )
    if match is None:
        return None
    host = match.group(1).removesuffix(".")
    if match.group(2) is not None:
        try:
            host = f"[{ipaddress.IPv6Address(match.group(2)).compressed}]"
        except ValueError:
            return None
    return host, None if match.group(3) is None else int(match.group(3))


def host_allowed(value: str, schemes: tuple[str, ...]) -> bool:
    parsed = _authority(value)
    if parsed is None:
        return False
    host, port = parsed
    for scheme in schemes:
        effective = _DEFAULT[scheme] if port is None else port
        if host == "app.example.com" and effective == _DEFAULT[scheme]:
            return True
        if re.fullmatch(rf"(?:{_LABEL}\.)+example\.com", host) and effective == 8443:
            return True
        if host in ("127.0.0.1", "[::1]") and effective == 8080:
            return True
    return False


def origin_serialized(value: str) -> str | None:
    """The serialization of an allowed origin, else None."""
    match = re.fullmatch(r"(https?)://(.*)", value, re.ASCII | re.IGNORECASE | re.DOTALL)
    if match is None:
        return None
    scheme = match.group(1).lower()
    parsed = _authority(match.group(2))
    if parsed is None:
        return None
    host, port = parsed
    if port == _DEFAULT[scheme]:
        port = None
    origin = f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"
    if origin in ("https://app.example.com", "http://127.0.0.1:8080"):
        return origin
    if re.fullmatch(rf"https://(?:{_LABEL}\.)+example\.com:8443", origin):
        return origin
    return None


def check_decision(decision: Accept | Reject, request: UpgradeRequest, schemes: tuple[str, ...]):
    if isinstance(decision, Reject):
        assert decision.audit_reason != "internal_error", "a stage raised on peer input"
        assert decision.status in STATUSES, decision
        assert decision.status in DOCUMENTED.get(decision.audit_reason, set()), decision
        assert decision.public_reason == HTTPStatus(decision.status).phrase
        return
    headers = request.headers
    assert (request.method, request.path, request.http_version) == ("GET", "/ws", "HTTP/1.1")
    [origin] = headers.get_all("Origin")
    assert origin_serialized(origin) is not None, origin
    assert decision.origin == origin_serialized(origin)
    [host] = headers.get_all("Host")
    assert host_allowed(host, schemes), host
    [key] = headers.get_all("Sec-WebSocket-Key")
    assert re.fullmatch(r"[A-Za-z0-9+/]{22}==", key), key
    assert len(base64.b64decode(key)) == 16
    assert headers.get_all("Sec-WebSocket-Version") == ("13",)
    assert "transfer-encoding" not in headers


# ---------------------------------------------------------------- properties


@given(requests(), st.booleans())
def test_every_decision_is_documented_and_every_accept_meets_the_policy(
    drawn: tuple[UpgradeRequest, tuple[str, ...]], required: bool
):
    request, schemes = drawn
    decision = pipeline(required).decide(request, 0.0)
    event("accept" if isinstance(decision, Accept) else decision.audit_reason)
    check_decision(decision, request, schemes)


@hypothesis_settings(max_examples=300)
@given(host_origin_requests())
def test_only_allowed_hosts_and_origins_pass(drawn: tuple[UpgradeRequest, tuple[str, ...]]):
    request, schemes = drawn
    decision = pipeline(False).decide(request, 0.0)
    event("accept" if isinstance(decision, Accept) else decision.audit_reason)
    check_decision(decision, request, schemes)


def recase(name: str, flips: list[bool]) -> str:
    return "".join(
        c.swapcase() if f else c for c, f in zip(name, flips + [False] * len(name), strict=False)
    )


@given(requests(), st.lists(st.booleans(), max_size=24), st.booleans())
def test_header_name_case_does_not_change_the_decision(
    drawn: tuple[UpgradeRequest, tuple[str, ...]], flips: list[bool], required: bool
):
    request, _ = drawn
    recased = [(recase(name, flips), value) for name, value in request.headers.items()]
    assert pipeline(required).decide(request, 0.0) == pipeline(required).decide(
        with_headers(request, recased), 0.0
    )


@given(requests(), st.randoms(use_true_random=False))
def test_field_order_does_not_change_the_decision_without_a_proxy(
    drawn: tuple[UpgradeRequest, tuple[str, ...]], rng: Any
):
    request, _ = drawn
    if request.peer == TRUSTED_PROXY:
        return  # X-Forwarded-For is an ordered list, from a proxy only
    items = list(request.headers.items())
    rng.shuffle(items)
    assert pipeline(False).decide(request, 0.0) == pipeline(False).decide(
        with_headers(request, items), 0.0
    )


@given(
    requests(),
    st.lists(st.tuples(st.sampled_from(UNRELATED), noise | st.sampled_from(ORIGINS)), min_size=1),
)
def test_an_unrelated_field_never_turns_a_refusal_into_an_acceptance(
    drawn: tuple[UpgradeRequest, tuple[str, ...]], extra: list[tuple[str, str]]
):
    request, _ = drawn
    before = pipeline(False).decide(request, 0.0)
    after = pipeline(False).decide(with_headers(request, [*request.headers.items(), *extra]), 0.0)
    assert isinstance(after, Reject) == isinstance(before, Reject)
    if isinstance(before, Accept):
        assert after == before


def test_the_valid_request_is_accepted_so_the_properties_are_not_vacuous():
    request = UpgradeRequest(
        "GET", "/ws", "HTTP/1.1", Headers(list(VALID.items())), "203.0.113.7", True
    )
    decision = pipeline(False).decide(request, 0.0)
    assert isinstance(decision, Accept)
    assert decision.principal == ANONYMOUS
    check_decision(decision, request, ("https",))


def test_the_documented_codes_were_read():
    assert DOCUMENTED["origin_not_allowed"] == {403}
    assert DOCUMENTED["bad_version"] == {426}
    assert DOCUMENTED["connection_cap"] == {503}
