"""The examples under examples/ and the SPEC §1 example are valid workflows."""

from pathlib import Path

import pytest

from magicflow.dsl import StepKind, WorkflowRef, load_library, load_workflow
from tests.unit.dsl.support import EXAMPLES, SPEC_EXAMPLE, check

WORKFLOWS = sorted(EXAMPLES.glob("*/*.yaml"))


def test_the_spec_example_is_accepted() -> None:
    result = check(SPEC_EXAMPLE)
    assert result.diagnostics == []
    assert result.plan is not None
    assert len(result.plan.steps) == 7


def test_the_three_examples_exist() -> None:
    assert {p.parent.name for p in WORKFLOWS} == {
        "user-onboarding",
        "ecommerce-order",
        "data-pipeline",
    }


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_is_valid(path: Path) -> None:
    result = load_workflow(path)
    assert result.diagnostics == [], [d.format() for d in result.diagnostics]


def test_user_onboarding_runs_without_external_services() -> None:
    plan = load_workflow(EXAMPLES / "user-onboarding" / "workflow.yaml").raise_for_diagnostics()
    kinds = {step.kind for step in plan.steps}
    assert kinds == {StepKind.FUNCTION}  # no signal to wait for, no timer, no child workflow
    assert {step.queue for step in plan.steps} == {"default"}


def test_the_other_examples_show_off_the_language() -> None:
    plans = [
        load_workflow(EXAMPLES / name / "workflow.yaml").raise_for_diagnostics()
        for name in ("ecommerce-order", "data-pipeline")
    ]
    steps = [step for plan in plans for step in plan.steps]
    assert {step.kind for step in steps} == set(StepKind)
    assert any(step.for_each is not None for step in steps)
    assert any(len(step.fallback) > 1 for step in steps)
    assert any(step.compensation is not None for step in steps)
    assert any(step.continue_on_failure for step in steps)


def test_the_sub_workflow_resolves_beside_its_parent() -> None:
    library, results = load_library([EXAMPLES / "ecommerce-order"])
    assert all(result.valid for result in results)
    assert library.check(require_known=True) == []
    parent = library.resolve(WorkflowRef("ecommerce-order"))
    assert parent is not None
    assert set(library.closure(parent)) == {WorkflowRef("fraud-check", "1.0.0")}
