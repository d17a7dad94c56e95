"""input_schema: a valid JSON Schema at validation; execution inputs checked against it."""

from magicflow.dsl import validate_input
from tests.unit.dsl.support import MINIMAL, located, plan_of

SCHEMA = """\
input_schema:
  type: object
  required: [email]
  properties:
    email: {type: string}
    items: {type: array, items: {type: integer}}
"""


def test_an_invalid_schema_is_a_diagnostic_at_its_place() -> None:
    found = located(MINIMAL + "input_schema:\n  type: objekt\n  required: email\n")
    assert [(line, col) for line, col, _ in found] == [(7, 9), (8, 13)]
    assert all(message.startswith("invalid input_schema: ") for _, _, message in found)


def test_input_schema_must_be_a_mapping() -> None:
    assert located(MINIMAL + "input_schema: [1]\n") == [
        (6, 15, "'input_schema' must be a mapping, not a list")
    ]


def test_validate_input_names_the_field() -> None:
    plan = plan_of(MINIMAL + SCHEMA)
    assert validate_input(plan, {"email": "a@b.c", "items": [1]}) == []
    assert validate_input(plan, {}) == ["input: 'email' is a required property"]
    assert validate_input(plan, {"email": 3, "items": [1, "x"]}) == [
        "input.email: 3 is not of type 'string'",
        "input.items[1]: 'x' is not of type 'integer'",
    ]


def test_no_schema_accepts_anything() -> None:
    assert validate_input(plan_of(MINIMAL), [1, 2]) == []


def test_unresolvable_ref_is_a_message_not_a_crash() -> None:
    plan = plan_of(MINIMAL + "input_schema: {$ref: 'https://example.invalid/x.json'}\n")
    [message] = validate_input(plan, {})
    assert message.startswith("input: the input_schema cannot be applied")
