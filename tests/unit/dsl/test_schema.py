"""The published JSON Schema: valid, closed, documented, and in agreement with the validator."""

from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from magicflow.dsl import json_schema
from tests.unit.dsl.support import EXAMPLES, MINIMAL, SPEC_EXAMPLE, check, with_steps

SCHEMA = json_schema()
VALIDATOR = Draft202012Validator(SCHEMA)


def objects(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append(node)
        for value in node.values():
            found += objects(value)
    elif isinstance(node, list):
        for value in node:
            found += objects(value)
    return found


def test_it_is_a_valid_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_mapping_is_closed_and_every_key_documented() -> None:
    for node in objects(SCHEMA):
        assert node["additionalProperties"] is False
        for name, prop in node["properties"].items():
            assert prop.get("description"), name


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES.glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_examples_match_the_schema(path: Any) -> None:
    assert list(VALIDATOR.iter_errors(yaml.safe_load(path.read_text()))) == []


def test_spec_example_matches_the_schema() -> None:
    assert list(VALIDATOR.iter_errors(yaml.safe_load(SPEC_EXAMPLE))) == []


@pytest.mark.parametrize(
    "text",
    [
        MINIMAL + "colour: red\n",
        MINIMAL + "timeout_action: fial\n",
        MINIMAL.replace('version: "1.0"', "version: 1.0"),
        'name: demo\nversion: "1"\nsteps: []\n',
        with_steps("- {id: a, function: f, depend_on: []}\n"),
        with_steps("- {id: a, function: f, sleep: 5s}\n"),
        with_steps("- {id: a}\n"),
        with_steps("- {id: a, function: f, timeout: soon}\n"),
        with_steps("- {id: a, function: f, max_parallel: 2}\n"),
        with_steps("- {id: a, function: f, retry_config: {max_attempts: 0}}\n"),
        with_steps("- {id: a, function: f, fallback: []}\n"),
        with_steps("- {id: a, function: f, fallback: {output: 1, input: 2}}\n"),
        with_steps("- {id: Bad_Id, function: f}\n"),
    ],
)
def test_what_the_schema_rejects_the_validator_rejects(text: str) -> None:
    assert list(VALIDATOR.iter_errors(yaml.safe_load(text)))
    assert not check(text).valid
