"""Expressions: compiled once at validation, scope-checked against the DAG."""

from magicflow.dsl import StepKind
from tests.unit.dsl.support import check, located, messages, plan_of, with_steps

CHAIN = """\
- id: validate-user
  function: f
- id: create-account
  function: f
  depends_on: [validate-user]
- id: send-welcome
  function: f
  depends_on: [create-account]
  input: {email: "${steps.validate-user.output.email}"}
"""


def test_transitive_dependencies_are_in_scope() -> None:
    plan = plan_of(with_steps(CHAIN))
    template = plan.step("send-welcome").input
    assert template is not None
    assert template.step_refs == frozenset({"validate-user"})


def test_hyphenated_ids_are_step_references_not_subtraction() -> None:
    plan = plan_of(with_steps(CHAIN))
    scope = {"steps": {"validate-user": {"output": {"email": "a@b.c"}}}}
    template = plan.step("send-welcome").input
    assert template is not None
    assert template.render(scope) == {"email": "a@b.c"}


def test_reading_a_step_not_depended_on() -> None:
    text = with_steps(
        """\
        - id: a
          function: f
        - id: b
          function: f
          input: {x: "${input.y}", y: "value ${steps.a.output.v}"}
        """
    )
    assert located(text) == [
        (
            8,
            42,
            "step 'b' reads steps.a but does not depend on it: add 'a' to its depends_on",
        )
    ]


def test_reading_a_dependent_is_out_of_scope() -> None:
    text = with_steps(
        """\
        - id: a
          function: f
          condition: ${steps.b.output.ok}
        - id: b
          function: f
          depends_on: [a]
        """
    )
    assert messages(text) == [
        "step 'a' reads steps.b but does not depend on it: add 'b' to its depends_on"
    ]


def test_a_step_cannot_read_its_own_output_in_its_input() -> None:
    text = with_steps("- id: a\n  function: f\n  input: {x: '${steps.a.output}'}\n")
    assert messages(text) == ["step 'a' cannot read its own output here"]


def test_a_compensation_may_read_its_own_step() -> None:
    text = with_steps(
        "- id: a\n  function: f\n  compensation:\n    function: undo\n"
        "    input: {id: '${steps.a.output.id}'}\n"
    )
    compensation = plan_of(text).step("a").compensation
    assert compensation is not None
    assert compensation.input is not None
    assert compensation.input.step_refs == frozenset({"a"})


def test_fallback_expressions_are_scope_checked() -> None:
    text = with_steps(
        """\
        - id: a
          function: f
        - id: b
          function: f
          fallback:
            - function: g
              input: {x: "${steps.a.output}"}
            - output: "${steps.a.output}"
        """
    )
    assert len(messages(text)) == 2
    assert all("add 'a' to its depends_on" in m for m in messages(text))


def test_workflow_output_may_read_any_step() -> None:
    text = with_steps(
        "- {id: a, function: f}\n- {id: b, function: f}\n",
        head="output: {a: '${steps.a.output}', b: '${steps.b.status}'}\n",
    )
    output = plan_of(text).output
    assert output is not None
    assert output.step_refs == frozenset({"a", "b"})


def test_item_and_index_only_in_a_for_each_step() -> None:
    good = with_steps(
        "- id: a\n  function: f\n  for_each: ${input.xs}\n  input: {x: '${item}', i: '${index}'}\n"
        "  compensation: {function: g, input: {x: '${item}'}}\n"
    )
    step = plan_of(good).step("a")
    assert step.for_each is not None
    assert step.input is not None
    assert step.input.uses_item
    bad = with_steps("- id: a\n  function: f\n  input: {x: '${item}'}\n")
    assert messages(bad) == [
        "'item' and 'index' exist only while a for_each step handles one item, "
        "not in 'input' of a step without for_each"
    ]


def test_item_is_not_in_scope_of_condition_or_output() -> None:
    text = with_steps(
        "- id: a\n  function: f\n  for_each: ${input.xs}\n  condition: ${item > 1}\n",
        head="output: ${index}\n",
    )
    found = messages(text)
    assert len(found) == 2
    assert any("not in 'condition'" in m for m in found)
    assert any("not in the workflow output" in m for m in found)


def test_syntax_error_is_reported_with_its_column() -> None:
    text = with_steps("- id: a\n  function: f\n  condition: ${input.plan == }\n")
    [(line, col, _)] = located(text)
    assert (line, col) == (6, 31)


def test_syntax_error_inside_a_template_points_into_the_string() -> None:
    text = with_steps("- id: a\n  function: f\n  input:\n    deep: {x: 'abc ${input.(}'}\n")
    [(line, col, _)] = located(text)
    assert line == 7
    assert col > 20


def test_unknown_step_reference_is_an_error() -> None:
    text = with_steps("- id: a\n  function: f\n", head="output: ${steps.zzz.output}\n")
    [message] = messages(text)
    assert "zzz" in message


def test_every_bad_expression_is_reported() -> None:
    text = with_steps(
        "- id: a\n  function: f\n  input: {x: '${(}', y: '${)}'}\n  condition: ${+}\n"
    )
    assert len(messages(text)) == 3


def test_condition_may_be_a_boolean() -> None:
    plan = plan_of(with_steps("- id: a\n  function: f\n  condition: false\n"))
    condition = plan.step("a").condition
    assert condition is not None
    assert condition.evaluate({}) is False


def test_expressions_are_compiled_into_the_plan() -> None:
    text = with_steps(
        "- id: a\n  function: f\n  for_each: ${input.items}\n  condition: ${input.go}\n"
        "  input: {n: '${index}'}\n"
    )
    step = plan_of(text).step("a")
    assert step.kind is StepKind.FUNCTION
    assert step.for_each is not None
    assert step.for_each.evaluate({"input": {"items": [1, 2]}}) == [1, 2]
    assert step.condition is not None
    assert step.condition.evaluate({"input": {"go": True}}) is True


def test_no_expression_means_no_template() -> None:
    step = plan_of(with_steps("- id: a\n  function: f\n")).step("a")
    assert step.input is None
    assert step.condition is None
    assert check(with_steps("- id: a\n  function: f\n  input: {x: 1}\n")).valid
