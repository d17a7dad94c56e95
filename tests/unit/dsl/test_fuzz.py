"""Property: whatever the input, validation returns diagnostics or a plan; it never raises.

Valid documents (the examples, the SPEC example) are mutated at random — keys dropped or
renamed, values swapped for other types or random scalars, entries duplicated — and raw text
is corrupted with random bytes and truncation.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from magicflow.dsl import Diagnostic, ValidationResult, parse_workflow
from tests.unit.dsl.support import EXAMPLES, MINIMAL, SPEC_EXAMPLE

pytestmark = pytest.mark.slow  # property tests: run by `make test` and CI

SOURCES = [MINIMAL, SPEC_EXAMPLE] + [p.read_text() for p in sorted(EXAMPLES.glob("*/*.yaml"))]
DOCUMENTS = [yaml.safe_load(text) for text in SOURCES]
KEYS = sorted(
    {"id", "function", "depends_on", "input", "output", "condition", "for_each", "steps"}
    | {"retry_config", "fallback", "timeout", "timeout_action", "sleep", "wait_for", "workflow"}
    | {"max_parallel", "compensation", "circuit_breaker", "queue", "name", "version", "<<"}
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "0s", "-1", "5s", "${", "${steps.a.output}", "${item}", "a-b", "fial"]),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=6,
)
SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def assert_only_diagnostics(source: str | bytes) -> ValidationResult:
    result = parse_workflow(source, "fuzz.yaml")
    assert isinstance(result, ValidationResult)
    for diagnostic in result.diagnostics:
        assert isinstance(diagnostic, Diagnostic)
        assert diagnostic.line >= 1
        assert diagnostic.col >= 1
        assert diagnostic.message
        assert "\n" not in diagnostic.format()
        assert not diagnostic.message.startswith("internal error"), diagnostic.message
    assert result.diagnostics == sorted(result.diagnostics)
    assert (result.plan is None) == bool(result.diagnostics)
    return result


def containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if isinstance(node, dict | list) and node else []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, child in items:
        found += containers(child, (*path, key))
    return found


def mutate(document: Any, data: st.DataObject) -> Any:
    document = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(1, 4))):
        paths = containers(document)
        if not paths:
            return data.draw(values)
        path = data.draw(st.sampled_from(paths))
        parent = document
        for key in path:
            parent = parent[key]
        key = data.draw(
            st.sampled_from(
                list(parent.keys()) if isinstance(parent, dict) else list(range(len(parent)))
            )
        )
        operation = data.draw(
            st.sampled_from(["drop", "rename", "replace", "swap", "duplicate", "add"])
        )
        if operation == "drop":
            del parent[key]
        elif operation == "rename" and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(KEYS) | st.text(max_size=8))] = parent.pop(key)
        elif operation == "replace":
            parent[key] = data.draw(values)
        elif operation == "swap":
            value = parent[key]
            parent[key] = [value] if not isinstance(value, list) else {"x": value}
        elif operation == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif isinstance(parent, dict):
            parent[data.draw(st.sampled_from(KEYS))] = data.draw(values)
    return document


@SETTINGS
@given(st.sampled_from(DOCUMENTS), st.data())
def test_mutated_documents_give_only_diagnostics(document: Any, data: st.DataObject) -> None:
    mutated = mutate(document, data)
    assert_only_diagnostics(yaml.safe_dump(mutated, sort_keys=False, allow_unicode=True))


@SETTINGS
@given(st.sampled_from(SOURCES), st.data())
def test_corrupted_text_gives_only_diagnostics(text: str, data: st.DataObject) -> None:
    raw = bytearray(text.encode())
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, len(raw)))
        operation = data.draw(st.sampled_from(["insert", "delete", "truncate", "overwrite"]))
        junk = data.draw(
            st.binary(min_size=1, max_size=6)
            | st.sampled_from(
                [b"\t", b"&a", b"*a", b"<<", b"- ", b": ", b"{", b"]", b"---\n", b"\xff"]
            )
        )
        if operation == "insert":
            raw[at:at] = junk
        elif operation == "delete":
            del raw[at : at + len(junk)]
        elif operation == "truncate":
            del raw[at:]
        else:
            raw[at : at + len(junk)] = junk
    assert_only_diagnostics(bytes(raw))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_input_gives_only_diagnostics(source: bytes) -> None:
    assert_only_diagnostics(source)


@settings(max_examples=100, deadline=None)
@given(values)
def test_random_data_as_a_document(value: Any) -> None:
    assert_only_diagnostics(yaml.safe_dump(value))
