"""SPEC §1: a failed child fails the `workflow` step, and the step's retry policy applies."""

from pathlib import Path

import magicflow
from magicflow.dsl import compile_workflow
from magicflow.executor import Registry

PARENT = """
name: parent
version: "1"
steps:
  - id: kyc
    workflow: child@1
    retry_config: {strategy: fixed, max_attempts: 3, initial_interval: 10ms, jitter: false}
"""
LISTED = PARENT.replace("name: parent", "name: parent-listed").replace(
    "jitter: false}", "jitter: false, non_retryable_errors: [NonRetryableError]}"
)
CHILD = """
name: child
version: "1"
steps:
  - id: score
    function: reject
"""


async def test_a_child_failed_by_a_non_retryable_error_is_retried_by_its_parent(
    tmp_path: Path,
) -> None:
    children: list[str] = []

    def reject(ctx: magicflow.StepContext) -> None:
        children.append(ctx.execution_id)
        raise magicflow.NonRetryableError("rejected")

    registry = Registry()
    registry.register("reject", reject)
    async with magicflow.Engine(
        store=f"sqlite:///{tmp_path / 'x.db'}", registry=registry
    ) as engine:
        for text in (CHILD, PARENT, LISTED):
            await engine.register(compile_workflow(text, "x.yaml"))
        retried = await engine.run("parent", {})
        assert retried["status"] == "failed"
        assert retried["steps"]["kyc"]["attempts"] == 3
        assert len(set(children)) == 3, "one child execution per attempt"

        children.clear()
        listed = await engine.run("parent-listed", {})
        assert listed["status"] == "failed"
        assert listed["steps"]["kyc"]["attempts"] == 1
        assert len(children) == 1
