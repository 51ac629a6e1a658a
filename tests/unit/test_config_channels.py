"""Loading, validating and rendering ``[[channels]]`` rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsguard.codes import ReplyCode
from wsguard.config import load_settings, render_settings
from wsguard.core.codec import Violation
from wsguard.exceptions import ConfigError
from wsguard.schemas import compile_channel_schemas, load_schema
from wsguard.settings import ChannelConfig, Settings


def load_text(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "wsguard.toml"
    path.write_text(text)
    return load_settings(path, env={})


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return str(info.value)


def channels(*tables: str) -> str:
    return "".join(f"[[channels]]\n{table}\n" for table in tables)


OK = 'pattern = "chat:*"\n'


# ---------------------------------------------------------------- loading


def test_no_channels_by_default(tmp_path: Path):
    assert load_text(tmp_path, "").channels == ()


def test_channels_load_in_file_order_with_every_field(tmp_path: Path):
    schema = tmp_path / "in.json"
    schema.write_text("{}")
    out = tmp_path / "out.json"
    out.write_text("{}")
    settings = load_text(
        tmp_path,
        channels(
            'pattern = "user:admin"\nsubscribe = ["role:admin"]',
            'pattern = "user:*"\nsubscribe = ["owner", "role:admin"]\npublish = ["owner"]\n'
            'history = ["owner"]\npresence = ["authenticated"]\n'
            f'schema = "{schema}"\noutput_schema = "{out}"\nencode = "html"\n'
            "history_size = 100\nhistory_ttl = 60",
            'pattern = "room:*"\nsubscribe = ["claim", "anonymous"]',
        ),
    )
    assert settings.channels == (
        ChannelConfig(pattern="user:admin", subscribe=("role:admin",)),
        ChannelConfig(
            pattern="user:*",
            subscribe=("owner", "role:admin"),
            publish=("owner",),
            history=("owner",),
            presence=("authenticated",),
            schema=str(schema),
            output_schema=str(out),
            encode="html",
            history_size=100,
            history_ttl=60.0,
        ),
        ChannelConfig(pattern="room:*", subscribe=("claim", "anonymous")),
    )
    assert isinstance(settings.channels[1].history_ttl, float)


def test_channels_as_inline_array_load(tmp_path: Path):
    settings = load_text(tmp_path, 'channels = [{pattern = "a:b", publish = ["anonymous"]}]\n')
    assert settings.channels == (ChannelConfig(pattern="a:b", publish=("anonymous",)),)


def test_history_size_bounds_are_inclusive(tmp_path: Path):
    text = channels('pattern = "a:*"\nhistory_size = 0', 'pattern = "b:*"\nhistory_size = 10000')
    assert [c.history_size for c in load_text(tmp_path, text).channels] == [0, 10000]


# ---------------------------------------------------------------- errors, exact messages


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[channels]\npattern = "a:b"\n',
            'channels: must be an array of tables ([[channels]]), got {pattern = "a:b"}',
        ),
        (
            'channels = "a:b"\n',
            'channels: must be an array of tables ([[channels]]), got "a:b"',
        ),
        ('channels = ["a:b"]\n', 'channels[0]: must be a table ([[channels]]), got "a:b"'),
        (
            channels(OK, 'subscribe = ["anonymous"]'),
            "channels[1].pattern: is required in every [[channels]] table",
        ),
        (
            channels(OK + 'publsh = ["owner"]'),
            'channels[0].publsh: unknown key (did you mean "publish"?)',
        ),
        (
            channels(OK + "zzz = 1"),
            "channels[0].zzz: unknown key; known: pattern, subscribe, publish, history,"
            " presence, schema, output_schema, encode, history_size, history_ttl",
        ),
        (
            channels(OK + '"subscribe.x" = 1'),
            'channels[0].subscribe.x: unknown key (did you mean "subscribe"?)',
        ),
        (channels("pattern = 5"), "channels[0].pattern: must be a string, got 5"),
        (
            channels(OK + 'subscribe = "owner"'),
            'channels[0].subscribe: must be a list of strings, got "owner"',
        ),
        (
            channels(OK + 'encode = "json"'),
            'channels[0].encode: must be one of "none", "html", got "json"',
        ),
        (
            channels(OK + "history_size = 10001"),
            "channels[0].history_size: must be an integer between 0 and 10000, got 10001",
        ),
        (
            channels(OK + "history_size = -1"),
            "channels[0].history_size: must be an integer between 0 and 10000, got -1",
        ),
        (
            channels(OK + "history_size = 1\nhistory_ttl = -1"),
            "channels[0].history_ttl: must be a number >= 0, got -1",
        ),
        (
            channels(OK + "history_ttl = 30"),
            "channels[0].history_ttl: has no effect with history_size = 0 (no history kept)",
        ),
        (
            channels(OK, 'pattern = "*:x"'),
            'channels[1].pattern: the namespace cannot be a wildcard, got "*:x"',
        ),
        (
            channels('pattern = "user:al*"'),
            'channels[0].pattern: "*" must be a whole segment (user:*, chat:*:messages),'
            ' got "user:al*"',
        ),
        (
            channels('pattern = "lobby"'),
            'channels[0].pattern: not a valid channel pattern (must be "namespace:rest"),'
            ' got "lobby"',
        ),
        (
            channels('pattern = "user:*"', 'pattern = "user:admin"'),
            'channels[1].pattern: "user:admin" is never used: channels[0] ("user:*") comes'
            " first and matches every channel it matches (the first matching rule wins);"
            " move this rule above it",
        ),
        (
            channels('pattern = "a:b"', 'pattern = "a:b"'),
            'channels[1].pattern: "a:b" is never used: channels[0] ("a:b") comes first and'
            " matches every channel it matches (the first matching rule wins);"
            " move this rule above it",
        ),
        (
            channels(OK, 'pattern = "a:b"', 'pattern = "x:*"\npublish = ["owner", "admins"]'),
            'channels[2].publish[1]: unknown grant "admins" (did you mean "role:admins"?)',
        ),
        (
            channels(OK + 'subscribe = ["authenticted"]'),
            'channels[0].subscribe[0]: unknown grant "authenticted"'
            ' (did you mean "authenticated"?)',
        ),
        (
            channels(OK + 'history = ["Anonymous"]'),
            'channels[0].history[0]: unknown grant "Anonymous" (did you mean "anonymous"?)',
        ),
        (
            channels(OK + 'presence = ["Role:ops"]'),
            'channels[0].presence[0]: unknown grant "Role:ops" (did you mean "role:ops"?)',
        ),
        (
            channels(OK + 'subscribe = ["every one"]'),
            'channels[0].subscribe[0]: unknown grant "every one"; known: "anonymous",'
            ' "authenticated", "owner", "claim", "role:NAME"',
        ),
        (
            channels(OK + 'subscribe = ["role:"]'),
            'channels[0].subscribe[0]: "role:" must be followed by a role name, got "role:"',
        ),
        (
            channels(OK + 'subscribe = ["role:a b"]'),
            'channels[0].subscribe[0]: "role:" must be followed by a role name, got "role:a b"',
        ),
        (
            channels('pattern = "chat:*:messages"\nsubscribe = ["owner"]'),
            'channels[0].subscribe[0]: "owner" needs a pattern whose last segment is "*"'
            ' (the user id), got "chat:*:messages"',
        ),
        (
            channels(OK + 'schema = "/nonexistent/in.json"'),
            'channels[0].schema: file not found: "/nonexistent/in.json"',
        ),
        (
            channels(OK + 'output_schema = "/nonexistent/out.json"'),
            'channels[0].output_schema: file not found: "/nonexistent/out.json"',
        ),
        ('[channel]\npattern = "a:b"\n', 'channel: unknown section (did you mean "channels"?)'),
    ],
)
def test_channel_errors_name_the_rule_and_field(tmp_path: Path, text: str, message: str):
    assert error_of(tmp_path, text) == message


def test_empty_schema_means_not_set(tmp_path: Path):
    settings = load_text(tmp_path, channels(OK + 'schema = ""'))
    assert settings.channels[0].schema is None


# ---------------------------------------------------------------- env and --set


@pytest.mark.parametrize(
    "name", ["WSGUARD_CHANNELS", "WSGUARD_CHANNELS_0_PATTERN", "WSGUARD_CHANNELS_PATTERN"]
)
def test_channels_cannot_come_from_the_environment(name: str):
    with pytest.raises(ConfigError) as info:
        load_settings(env={name: "chat:*"})
    assert str(info.value) == (
        "channels: [[channels]] rules can only be set in the configuration file,"
        f" not from the environment ({name})"
    )


@pytest.mark.parametrize(
    "override", ["channels=x", "channels.pattern=chat:*", "channels[0].pattern=chat:*"]
)
def test_channels_cannot_come_from_set(override: str):
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, overrides=[override])
    assert str(info.value) == (
        "channels: [[channels]] rules can only be set in the configuration file, not with --set"
    )


def test_set_overrides_leave_file_channels_alone(tmp_path: Path):
    path = tmp_path / "wsguard.toml"
    path.write_text(channels(OK + 'subscribe = ["anonymous"]'))
    settings = load_settings(path, env={}, overrides=["limits.burst=3"])
    assert settings.channels == (ChannelConfig(pattern="chat:*", subscribe=("anonymous",)),)


# ---------------------------------------------------------------- rendering


def test_render_without_channels_has_no_channels_table():
    assert "[[channels]]" not in render_settings(Settings(), env={})


def test_render_round_trips_channels(tmp_path: Path):
    schema = tmp_path / "in.json"
    schema.write_text("{}")
    settings = Settings(
        channels=(
            ChannelConfig(pattern="user:admin", subscribe=("role:admin",)),
            ChannelConfig(
                pattern="user:*",
                subscribe=("owner", "role:admin"),
                publish=("owner",),
                history=("owner",),
                presence=("authenticated",),
                schema=str(schema),
                encode="html",
                history_size=100,
                history_ttl=60.0,
            ),
            ChannelConfig(pattern="room:*", subscribe=("claim",)),
        )
    )
    text = render_settings(settings, env={})
    assert text.count("[[channels]]") == 3
    assert '[[channels]]\npattern = "user:admin"\nsubscribe = ["role:admin"]\n' in text
    assert "# output_schema = (not set)" in text
    rendered = tmp_path / "rendered.toml"
    rendered.write_text(text)
    assert load_settings(rendered, env={}) == settings


# ---------------------------------------------------------------- schema files


def write_config(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "wsguard.toml"
    path.write_text(text)
    return path


def test_relative_schema_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    conf = tmp_path / "conf"
    (conf / "schemas").mkdir(parents=True)
    (conf / "schemas" / "in.json").write_text('{"type": "object"}')
    (conf / "out.json").write_text('{"type": "object"}')
    path = write_config(
        conf, channels(OK + 'schema = "schemas/in.json"\noutput_schema = "out.json"')
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rule = load_settings(path, env={}).channels[0]
    assert rule.schema == str(conf / "schemas" / "in.json")
    assert rule.output_schema == str(conf / "out.json")


def test_relative_config_path_still_gives_absolute_schema_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "in.json").write_text("{}")
    write_config(conf, channels(OK + 'schema = "in.json"'))
    monkeypatch.chdir(tmp_path)
    rule = load_settings("conf/wsguard.toml", env={}).channels[0]
    assert rule.schema == str(conf / "in.json")


def test_missing_relative_schema_names_the_resolved_path(tmp_path: Path):
    path = write_config(tmp_path / "conf", channels(OK, 'pattern = "a:b"\nschema = "nope.json"'))
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    missing = tmp_path / "conf" / "nope.json"
    assert str(info.value) == f'channels[1].schema: file not found: "{missing}"'
    assert info.value.field == "channels[1].schema"


def schema_error(tmp_path: Path, content: bytes, field: str = "schema") -> str:
    schema = tmp_path / "s.json"
    schema.write_bytes(content)
    return error_of(tmp_path, channels(OK, f'pattern = "a:b"\n{field} = "s.json"'))


@pytest.mark.parametrize("field", ["schema", "output_schema"])
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"type": "object",}', "not valid JSON: Expecting property name enclosed in double"
         " quotes (line 1, column 19)"),
        (b"", "not valid JSON: Expecting value (line 1, column 1)"),
        (b'{"type": "object", "type": "string"}', 'not valid JSON: duplicate key "type"'),
        (b'{"minimum": NaN}', "not valid JSON: NaN is not JSON (RFC 8259 §6)"),
        (b'{"minimum": 1e400}', "not valid JSON: number 1e400 is out of range"),
        (b'{"a": "\xff"}', "not valid UTF-8"),
        (b"[]", "must hold a JSON object (a JSON Schema), got an array"),
        (b"true", "must hold a JSON object (a JSON Schema), got a boolean"),
        (b"null", "must hold a JSON object (a JSON Schema), got null"),
        (b'{"type": "strin"}', 'invalid JSON Schema at /type: "strin" is not valid under any'
         " of the schemas listed in the 'anyOf' keyword"),
    ],
)  # fmt: skip
def test_bad_schema_file_names_the_rule_field_and_file(
    tmp_path: Path, field: str, content: bytes, problem: str
):
    shown = tmp_path / "s.json"
    assert schema_error(tmp_path, content, field) == f'channels[1].{field}: "{shown}": {problem}'


@pytest.mark.parametrize("field", ["schema", "output_schema"])
def test_remote_ref_in_a_schema_file_is_refused(tmp_path: Path, field: str):
    message = schema_error(tmp_path, b'{"$ref": "https://schemas.example.test/chat.json"}', field)
    prefix = f'channels[1].{field}: "{tmp_path / "s.json"}": unresolvable reference: '
    assert message.startswith(prefix)
    assert "https://schemas.example.test/chat.json" in message
    assert message.endswith(
        "(wsguard fetches no schema over the network or from files: keep definitions in the"
        ' document, under "$defs", and use a standard "$schema" draft)'
    )


def test_schema_file_nested_too_deeply_is_reported(tmp_path: Path):
    message = schema_error(tmp_path, b'{"a": ' * 100_000 + b"1" + b"}" * 100_000)
    assert (
        message == f'channels[1].schema: "{tmp_path / "s.json"}": not valid JSON: nested too deeply'
    )


def test_schema_file_with_fractions_loads(tmp_path: Path):
    (tmp_path / "s.json").write_text('{"type": "number", "multipleOf": 0.5, "maximum": 1e3}')
    settings = load_text(tmp_path, channels(OK + 'schema = "s.json"'))
    schema = compile_channel_schemas(settings)[0][0]
    assert schema is not None
    assert schema.check(999.5) is None
    assert schema.check(1000.5) == Violation(
        ReplyCode.UNPROCESSABLE, "invalid_data", "data: does not match the schema (maximum)"
    )


def test_unreadable_schema_file_is_reported(tmp_path: Path):
    directory = tmp_path / "dir.json"
    directory.mkdir()
    message = error_of(tmp_path, channels(OK + 'schema = "dir.json"'))
    assert message == f'channels[0].schema: cannot read "{directory}": Is a directory'


def test_compile_channel_schemas_compiles_each_file_once(tmp_path: Path):
    inbound = tmp_path / "in.json"
    inbound.write_text('{"type": "object", "required": ["text"]}')
    outbound = tmp_path / "out.json"
    outbound.write_text('{"type": "object"}')
    settings = load_text(
        tmp_path,
        channels(
            OK + 'schema = "in.json"\noutput_schema = "out.json"',
            'pattern = "a:b"',
            'pattern = "c:d"\nschema = "in.json"',
        ),
    )
    compiled = compile_channel_schemas(settings)
    assert list(compiled) == [0, 1, 2]
    assert compiled[1] == (None, None)
    assert compiled[0][0] is compiled[2][0]
    assert compiled[2][1] is None
    inbound_schema, outbound_schema = compiled[0]
    assert inbound_schema is not None
    assert outbound_schema is not None
    assert inbound_schema.check({}) == Violation(
        ReplyCode.UNPROCESSABLE, "invalid_data", "data: does not match the schema (required)"
    )
    assert outbound_schema.check([]) == Violation(
        ReplyCode.UNPROCESSABLE, "invalid_data", "data: does not match the schema (type)"
    )


def test_compile_channel_schemas_names_the_field_of_a_bad_file(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    settings = Settings(
        channels=(
            ChannelConfig(pattern="a:b"),
            ChannelConfig(pattern="c:d", output_schema=str(bad)),
        )
    )
    bad.write_text("[]")  # changed after the configuration was checked
    with pytest.raises(ConfigError) as info:
        compile_channel_schemas(settings)
    assert str(info.value) == (
        f'channels[1].output_schema: "{bad}": must hold a JSON object (a JSON Schema), got an array'
    )


def test_load_schema_raises_value_error(tmp_path: Path):
    with pytest.raises(ValueError, match=r"^file not found: "):
        load_schema(str(tmp_path / "none.json"))
