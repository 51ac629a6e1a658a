"""JSON Schema checks: the first error's path and keyword, never the value; nothing fetched."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from wsguard.codes import ReplyCode
from wsguard.core.codec import Violation
from wsguard.core.schema import INVALID_DATA, MAX_PATH_SEGMENTS, REASONS, Schema


def invalid(message: str) -> Violation:
    return Violation(ReplyCode.UNPROCESSABLE, "invalid_data", message)


CHAT = Schema.compile(
    {
        "type": "object",
        "properties": {
            "text": {"type": "string", "maxLength": 10},
            "items": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        },
        "required": ["text"],
        "additionalProperties": False,
    }
)


def test_reasons_are_documented():
    assert REASONS == {INVALID_DATA} == {"invalid_data"}


def test_valid_value_passes():
    assert CHAT.check({"text": "hi", "items": [0, 1, 2]}) is None


def test_error_names_the_array_index_and_keyword():
    assert CHAT.check({"text": "hi", "items": [5, 4, -1]}) == invalid(
        "data.items[2]: does not match the schema (minimum)"
    )


def test_error_names_the_top_level_keyword():
    assert CHAT.check({"items": []}) == invalid("data: does not match the schema (required)")


def test_error_at_a_key_uses_the_dotted_path():
    assert CHAT.check({"text": 5}) == invalid("data.text: does not match the schema (type)")


def test_path_prefix_is_the_given_name():
    assert CHAT.check({"text": 5}, "result") == invalid(
        "result.text: does not match the schema (type)"
    )


def test_value_is_never_reflected():
    payload = "<img src=x onerror=alert(1)>"
    violation = CHAT.check({"text": payload})
    assert violation == invalid("data.text: does not match the schema (maxLength)")


def test_unsafe_key_is_shown_as_a_placeholder():
    schema = Schema.compile({"additionalProperties": {"type": "integer"}})
    assert schema.check({"<script>": "x"}) == invalid("data[?]: does not match the schema (type)")


def test_long_key_is_shown_as_a_placeholder():
    schema = Schema.compile({"additionalProperties": {"type": "integer"}})
    assert schema.check({"a" * 64: 1, "b" * 65: "x"}) == invalid(
        "data[?]: does not match the schema (type)"
    )


def test_key_of_64_safe_characters_is_shown():
    schema = Schema.compile({"additionalProperties": {"type": "integer"}})
    key = "A_z9" * 16
    assert schema.check({key: "x"}) == invalid(f"data.{key}: does not match the schema (type)")


def test_deep_path_keeps_only_the_deepest_segments():
    value: Any = "leaf"
    for _ in range(100):
        value = [value]
    schema = Schema.compile(
        {"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"}
    )
    expected = "data[...]" + "[0]" * MAX_PATH_SEGMENTS
    assert schema.check(value) == invalid(f"{expected}: does not match the schema (type)")


def test_false_schema_names_false():
    schema = Schema.compile({"properties": {"admin": False}})
    assert schema.check({"admin": 1}) == invalid("data.admin: does not match the schema (false)")


def test_keyword_comes_from_a_ref_target():
    schema = Schema.compile(
        {"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"}}}
    )
    assert schema.check({"a": "s"}) == invalid("data.a: does not match the schema (type)")


def test_value_that_is_not_json_is_refused():
    assert Schema.compile({}).check({1: "a"}) == invalid("data: is not JSON data")


def test_default_draft_is_2020_12():
    # prefixItems exists only in 2020-12; older drafts ignore it.
    schema = Schema.compile({"prefixItems": [{"type": "integer"}]})
    assert schema.check(["x"]) == invalid("data[0]: does not match the schema (type)")


def test_explicit_draft_7_is_honoured():
    schema = Schema.compile(
        {"$schema": "http://json-schema.org/draft-07/schema#", "prefixItems": [{"type": "integer"}]}
    )
    assert schema.check(["x"]) is None


def test_depth_1000_is_checked():
    value: Any = 1
    for _ in range(999):
        value = [value]
    schema = Schema.compile(
        {"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"}
    )
    expected = "data[...]" + "[0]" * MAX_PATH_SEGMENTS
    assert schema.check(value) == invalid(f"{expected}: does not match the schema (type)")


# ---------------------------------------------------------------- compile errors


def compile_error(document: Any) -> str:
    with pytest.raises(ValueError, match=r".") as info:
        Schema.compile(document)
    return str(info.value)


def test_invalid_schema_is_refused_with_its_location():
    assert compile_error({"properties": {"a": {"type": "strin"}}}) == (
        'invalid JSON Schema at /properties/a/type: "strin" is not valid under any of the'
        " schemas listed in the 'anyOf' keyword"
    )


def test_invalid_schema_at_the_top_level():
    assert compile_error({"minimum": "x"}).startswith("invalid JSON Schema at /minimum: ")


def test_invalid_schema_at_the_root_says_so():
    # Draft 4's meta-schema makes exclusiveMaximum depend on maximum, at the schema's root.
    document = {"$schema": "http://json-schema.org/draft-04/schema#", "exclusiveMaximum": True}
    assert compile_error(document) == (
        'invalid JSON Schema at the top level: "maximum" is a required property'
    )


def test_schema_must_be_an_object():
    assert compile_error([]) == "a JSON Schema must be a JSON object, got list"


def test_backtracking_pattern_is_refused():
    assert compile_error({"pattern": "^(?=a)a$"}) == (
        'invalid JSON Schema at /pattern: "^(?=a)a$" is not a "regex" (patterns run on a'
        " linear-time engine, against ReDoS: look-around and back-references are not supported)"
    )


def test_pattern_properties_use_the_linear_engine_too():
    assert compile_error({"patternProperties": {r"(a)\1": {}}}).startswith(
        "invalid JSON Schema at /patternProperties/(a)\\1: "
    )


def test_catastrophic_pattern_runs_in_linear_time():
    schema = Schema.compile({"pattern": "^(a+)+$"})
    assert schema.check("a" * 5000 + "!") == invalid("data: does not match the schema (pattern)")


def test_unknown_meta_schema_is_refused():
    assert compile_error({"$schema": "https://example.test/meta"}).startswith(
        "unresolvable reference: Unknown meta-schema"
    )


def test_relative_ref_without_a_base_is_refused():
    assert compile_error({"$ref": "other.json"}).startswith("unresolvable reference: ")


@pytest.fixture
def schema_server() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on loopback that serves a schema and records every request."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = b'{"type": "integer"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_schema_server_records_requests(schema_server):
    # Proves the recorder works, so "no request" below means something.
    url, requests = schema_server
    with urllib.request.urlopen(f"{url}/int.json", timeout=5) as response:  # noqa: S310
        assert response.status == 200
    assert requests == ["/int.json"]


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(lambda url: {"$ref": f"{url}/int.json"}, id="ref"),
        pytest.param(lambda url: {"properties": {"a": {"$ref": f"{url}/int.json#"}}}, id="nested"),
        pytest.param(lambda url: {"$id": f"{url}/root.json", "$ref": "int.json"}, id="via-id"),
        pytest.param(lambda url: {"$dynamicRef": f"{url}/int.json#meta"}, id="dynamic"),
    ],
)
def test_remote_ref_is_refused_and_never_fetched(schema_server, document):
    url, requests = schema_server
    message = compile_error(document(url))
    assert message.startswith("unresolvable reference: ")
    assert message.endswith(
        "(wsguard fetches no schema over the network or from files: keep definitions in the"
        ' document, under "$defs", and use a standard "$schema" draft)'
    )
    assert requests == []


def test_file_ref_is_refused(tmp_path):
    target = tmp_path / "int.json"
    target.write_text('{"type": "integer"}')
    assert compile_error({"$ref": target.as_uri()}).startswith("unresolvable reference: ")


def test_local_refs_resolve():
    schema = Schema.compile(
        {
            "$id": "https://example.test/root.json",
            "$defs": {"n": {"$id": "n.json", "type": "integer"}},
            "properties": {"a": {"$ref": "n.json"}, "b": {"$ref": "#/$defs/n"}},
        }
    )
    assert schema.check({"a": 1, "b": 2}) is None
    assert schema.check({"a": 1, "b": "x"}) == invalid("data.b: does not match the schema (type)")
