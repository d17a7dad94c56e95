"""Rules between the parts of a document: ids, dependencies, cycles, kinds, policies."""

import pytest

from magicflow.dsl import Defaults, Limits, TimeoutAction
from tests.unit.dsl.support import check, located, messages, only, with_steps


def test_duplicate_id_is_reported_at_its_second_occurrence() -> None:
    text = with_steps("- id: a\n  function: f\n- id: b\n  function: f\n- id: a\n  function: g\n")
    assert located(text) == [(8, 9, "duplicate step id 'a' (first used on line 4)")]


def test_dangling_depends_on_did_you_mean() -> None:
    text = with_steps(
        "- id: create-account\n  function: f\n- id: b\n  function: f\n"
        "  depends_on: [create-acount]\n"
    )
    assert located(text) == [
        (8, 18, "unknown step 'create-acount' in depends_on (did you mean 'create-account'?)")
    ]


def test_dangling_depends_on_without_suggestion() -> None:
    text = with_steps("- id: a\n  function: f\n  depends_on: [zzz]\n")
    assert messages(text) == ["unknown step 'zzz' in depends_on"]


def test_cycle_names_every_step_and_points_inside_it() -> None:
    text = with_steps(
        """\
        - id: a
          function: f
          depends_on: [c]
        - id: b
          function: f
          depends_on: [a]
        - id: c
          function: f
          depends_on: [b]
        - id: d
          function: f
          depends_on: [c]
        """
    )
    assert located(text) == [(6, 18, "dependency cycle: a -> c -> b -> a")]


def test_self_dependency_is_a_cycle() -> None:
    assert messages(with_steps("- id: a\n  function: f\n  depends_on: [a]\n")) == [
        "dependency cycle: a -> a"
    ]


def test_two_separate_cycles_are_both_reported() -> None:
    text = with_steps(
        """\
        - {id: a, function: f, depends_on: [b]}
        - {id: b, function: f, depends_on: [a]}
        - {id: c, function: f, depends_on: [d]}
        - {id: d, function: f, depends_on: [c]}
        """
    )
    assert messages(text) == ["dependency cycle: a -> b -> a", "dependency cycle: c -> d -> c"]


def test_too_many_steps() -> None:
    steps = "".join(f"- {{id: s{i}, function: f}}\n" for i in range(6))
    assert messages(with_steps(steps), limits=Limits(max_steps=5)) == [
        "too many steps: 6 (the limit is 5)"
    ]


def test_a_thousand_steps_are_fine() -> None:
    steps = "".join(f"- {{id: s{i}, function: f}}\n" for i in range(1000))
    assert check(with_steps(steps)).valid
    assert "too many steps: 1,001" in messages(with_steps(steps + "- {id: x, function: f}\n"))[0]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            "sleep: 5s\n  input: {a: 1}",
            "'input' does not apply to a sleep step (a sleep step only waits)",
        ),
        (
            "sleep: 5s\n  retry_config: {max_attempts: 2}",
            "'retry_config' does not apply to a sleep step (a sleep step only waits)",
        ),
        (
            "sleep: 5s\n  fallback: {output: 1}",
            "'fallback' does not apply to a sleep step (a sleep step only waits)",
        ),
        (
            "wait_for: go\n  circuit_breaker: {failure_threshold: 2}",
            "'circuit_breaker' does not apply to a wait_for step "
            "(a wait_for step calls no function)",
        ),
        (
            "wait_for: go\n  for_each: ${input.xs}",
            "'for_each' does not apply to a wait_for step (a wait_for step calls no function)",
        ),
        (
            "wait_for: go\n  compensation: {function: g}",
            "'compensation' does not apply to a wait_for step "
            "(a wait_for step has nothing to undo)",
        ),
        (
            "wait_for: go\n  timeout: 1h\n  timeout_action: retry",
            "timeout_action 'retry' does not apply to a wait_for step: use fail, skip or fallback",
        ),
        (
            "workflow: child\n  circuit_breaker: {failure_threshold: 2}",
            "'circuit_breaker' does not apply to a workflow step "
            "(circuit breakers are keyed by function name)",
        ),
    ],
)
def test_fields_that_do_not_apply_to_a_kind(step: str, message: str) -> None:
    assert messages(with_steps(f"- id: a\n  {step}\n")) == [message]


def test_fallback_action_needs_a_fallback() -> None:
    text = with_steps("- id: a\n  function: f\n  timeout: 1s\n  timeout_action: fallback\n")
    assert located(text) == [
        (7, 21, "timeout_action 'fallback' needs a 'fallback' on the step (output or function)")
    ]
    fixed = text + "    fallback: {output: null}\n"
    assert check(fixed).valid


def test_inherited_fallback_action_needs_a_fallback() -> None:
    text = with_steps(
        "- id: a\n  function: f\n- id: b\n  function: g\n  fallback: {function: h}\n",
        head="defaults: {timeout: 5s, timeout_action: fallback}\n",
    )
    assert messages(text) == [
        "step 'a' inherits timeout_action 'fallback' from defaults but has no 'fallback'"
    ]


def test_server_default_fallback_action_needs_a_fallback() -> None:
    server = Defaults(timeout=10.0, timeout_action=TimeoutAction.FALLBACK)
    text = with_steps("- id: a\n  function: f\n")
    assert messages(text, defaults=server) == [
        "step 'a' inherits timeout_action 'fallback' from the server defaults but has no 'fallback'"
    ]


def test_sub_workflow_cannot_run_itself() -> None:
    for ref in ("demo", "demo@1.0"):
        text = with_steps(f"- id: a\n  workflow: {ref}\n")
        assert messages(text) == [
            "workflow 'demo' runs itself: a sub-workflow cannot be its parent"
        ]
    assert check(with_steps("- id: a\n  workflow: demo@0.9\n")).valid


def test_messages_are_sorted_by_position() -> None:
    text = with_steps(
        "- id: a\n  function: f\n  depends_on: [x]\n- id: a\n  function: f\n",
        head="timeout: never\n",
    )
    lines = [line for line, _, _ in located(text)]
    assert lines == sorted(lines)
    assert len(lines) == 3


def test_diagnostic_format() -> None:
    diagnostic = only(with_steps("- id: a\n  function: f\n  depend_on: [b]\n"))
    assert diagnostic.format() == (
        "wf.yaml:6:5: error: unknown key 'depend_on' (did you mean 'depends_on'?)"
    )
    assert diagnostic.to_dict()["path"] == ["steps", 0, "depend_on"]
