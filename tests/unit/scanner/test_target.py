"""Scan targets: parsing ws:// and wss:// URLs, the Host and Origin they imply, and the loopback
rule that decides whether a scan needs ``--i-have-permission``."""

from __future__ import annotations

import re

import pytest

from wsguard.scanner.target import CREDENTIAL_PARAMS, Target, is_loopback, parse_target


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


# ---------------------------------------------------------------- parse_target


def test_ws_url_defaults_to_port_80():
    assert parse_target("ws://chat.example.test/ws") == Target(
        "ws://chat.example.test/ws", False, "chat.example.test", 80, "/ws"
    )


def test_wss_url_defaults_to_port_443():
    assert parse_target("wss://chat.example.test/ws") == Target(
        "wss://chat.example.test/ws", True, "chat.example.test", 443, "/ws"
    )


def test_explicit_port_is_kept():
    target = parse_target("ws://127.0.0.1:8765/ws")
    assert (target.host, target.port) == ("127.0.0.1", 8765)


def test_resource_keeps_the_query():
    assert parse_target("wss://h.test/socket?room=1&x=").resource == "/socket?room=1&x="


def test_empty_path_becomes_slash():
    assert parse_target("ws://h.test").resource == "/"


def test_surrounding_whitespace_is_stripped():
    assert parse_target("  ws://h.test/ws \n").url == "ws://h.test/ws"


def test_ipv6_host_is_stored_without_brackets():
    target = parse_target("ws://[::1]:9000/ws")
    assert (target.host, target.port) == ("::1", 9000)


def test_http_scheme_is_refused():
    with pytest.raises(
        ValueError, match=exactly("the URL must start with ws:// or wss://, not 'http'")
    ):
        parse_target("http://h.test/ws")


def test_missing_scheme_names_the_url():
    with pytest.raises(
        ValueError, match=exactly("the URL must start with ws:// or wss://, not 'h.test/ws'")
    ):
        parse_target("h.test/ws")


def test_user_info_is_refused():
    with pytest.raises(
        ValueError, match=exactly("the URL must not carry user:password (use --token or --cookie)")
    ):
        parse_target("wss://alice:secret@h.test/ws")


def test_user_without_password_is_refused():
    with pytest.raises(ValueError, match="user:password"):
        parse_target("wss://alice@h.test/ws")


def test_fragment_is_refused():
    with pytest.raises(ValueError, match=exactly("WebSocket URLs have no #fragment (RFC 6455 §3)")):
        parse_target("wss://h.test/ws#top")


@pytest.mark.parametrize("url", ["ws:///ws", "ws://:8080/ws"])
def test_missing_host_is_refused(url: str):
    with pytest.raises(ValueError, match=exactly("the URL has no host")):
        parse_target(url)


@pytest.mark.parametrize("url", ["ws://h.test:99999/", "ws://h.test:http/"])
def test_bad_port_is_refused(url: str):
    with pytest.raises(
        ValueError, match=exactly("the URL's port must be a number from 1 to 65535")
    ):
        parse_target(url)


def test_port_zero_is_refused():
    with pytest.raises(ValueError, match=exactly("the URL's port must be from 1 to 65535")):
        parse_target("ws://h.test:0/")


# ---------------------------------------------------------------- Target


def test_host_header_omits_the_default_ws_port():
    assert parse_target("ws://h.test:80/").host_header == "h.test"


def test_host_header_omits_the_default_wss_port():
    assert parse_target("wss://h.test:443/").host_header == "h.test"


def test_host_header_keeps_a_non_default_port():
    assert parse_target("wss://h.test:80/").host_header == "h.test:80"


def test_host_header_brackets_ipv6():
    assert parse_target("ws://[::1]:9000/").host_header == "[::1]:9000"


def test_host_header_brackets_ipv6_on_the_default_port():
    assert parse_target("wss://[2001:db8::1]/").host_header == "[2001:db8::1]"


def test_default_origin_of_wss_is_https():
    assert parse_target("wss://h.test/ws").default_origin == "https://h.test"


def test_default_origin_of_ws_is_http_with_port():
    assert parse_target("ws://127.0.0.1:8765/ws").default_origin == "http://127.0.0.1:8765"


def test_with_scheme_switches_to_ws_and_keeps_the_rest():
    target = parse_target("wss://h.test:8443/ws?a=1")
    assert target.with_scheme(False) == Target("ws://h.test:8443/ws?a=1", False, "h.test", 8443,
                                               "/ws?a=1")  # fmt: skip


def test_with_scheme_keeps_the_port_even_if_it_was_the_default():
    plain = parse_target("wss://h.test/ws").with_scheme(False)
    assert (plain.url, plain.port, plain.host_header) == ("ws://h.test/ws", 443, "h.test:443")


def test_query_params_keep_order_duplicates_and_blanks():
    target = parse_target("ws://h.test/ws?token=a&x=&token=b&q=%20")
    assert target.query_params() == [("token", "a"), ("x", ""), ("token", "b"), ("q", " ")]


def test_query_params_empty_without_query():
    assert parse_target("ws://h.test/ws").query_params() == []


def test_redacted_replaces_credential_values():
    target = parse_target("wss://h.test/ws?room=1&token=abc&Access_Token=x")
    assert target.redacted() == "wss://h.test/ws?room=1&token=REDACTED&Access_Token=REDACTED"


def test_redacted_hides_a_ticket_too():
    assert parse_target("ws://h.test/ws?ticket=t1").redacted() == "ws://h.test/ws?ticket=REDACTED"


def test_redacted_without_query_is_the_url():
    assert parse_target("ws://h.test:81/ws").redacted() == "ws://h.test:81/ws"


def test_redacted_keeps_harmless_params():
    assert parse_target("ws://h.test/ws?room=a").redacted() == "ws://h.test/ws?room=a"


# ---------------------------------------------------------------- is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.8.9.10"])
def test_loopback_hosts(host: str):
    assert is_loopback(host) is True


@pytest.mark.parametrize("host", ["10.0.0.1", "192.0.2.1", "::", "::ffff:10.0.0.1"])
def test_non_loopback_hosts(host: str):
    assert is_loopback(host) is False


def test_unresolvable_name_is_not_loopback():
    assert is_loopback("nothing.invalid") is False


def test_empty_host_is_not_loopback():
    assert is_loopback("") is False


# ---------------------------------------------------------------- CREDENTIAL_PARAMS


def test_ticket_is_not_a_credential_param():
    assert "ticket" not in CREDENTIAL_PARAMS


@pytest.mark.parametrize("name", ["token", "access_token", "jwt", "api_key", "password", "sid"])
def test_long_lived_credentials_are_credential_params(name: str):
    assert name in CREDENTIAL_PARAMS


def test_credential_params_are_lower_case():
    assert all(name == name.lower() for name in CREDENTIAL_PARAMS)
