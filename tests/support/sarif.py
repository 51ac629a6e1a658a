"""The official SARIF 2.1.0 schema as a validator, for the report and scan tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs

# The official OASIS schema, vendored byte for byte: see tests/data/README.md for its origin.
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "data" / "sarif-schema-2.1.0.json"
# That release's run.language / toolComponent.language pattern has a stray "]" that is not a
# valid ECMA-262 (unicode mode) regex, so jsonschema_rs refuses the schema itself. Upstream
# oasis-tcs/sarif-spec later corrected it to this pattern; apply the same fix in memory only.
BROKEN_LANGUAGE_PATTERN = '"^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$"'
FIXED_LANGUAGE_PATTERN = '"^[a-zA-Z]{2}(-[a-zA-Z]{2})?$"'


def sarif_validator() -> Any:
    raw = SCHEMA_PATH.read_text(encoding="utf-8")
    assert raw.count(BROKEN_LANGUAGE_PATTERN) == 2
    schema = json.loads(raw.replace(BROKEN_LANGUAGE_PATTERN, FIXED_LANGUAGE_PATTERN))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    validator = jsonschema_rs.validator_for(schema, validate_formats=True)
    assert isinstance(validator, jsonschema_rs.Draft7Validator)
    return validator
