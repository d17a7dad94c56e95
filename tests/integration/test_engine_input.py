"""Input the store could never encode is refused before anything is created."""

from pathlib import Path

import pytest

import magicflow
from magicflow.dsl import compile_workflow

WORKFLOW = """
name: waits
version: "1"
steps:
  - id: approve
    wait_for: approval
"""


async def test_input_and_signal_payloads_that_are_not_json_are_refused(tmp_path: Path) -> None:
    async with magicflow.Engine(store=f"sqlite:///{tmp_path / 'x.db'}") as engine:
        await engine.register(compile_workflow(WORKFLOW, "waits.yaml"))
        with pytest.raises(magicflow.WorkflowValidationError, match="input is not JSON data"):
            await engine.start("waits", {"name": "\ud800"})
        page = await engine.list_executions()
        assert page["items"] == []
        execution_id = await engine.start("waits", {})
        with pytest.raises(magicflow.WorkflowValidationError, match="payload is not JSON data"):
            await engine.signal(execution_id, "approval", "\udfff")
        await engine.signal(execution_id, "approval", {"ok": True})
        result = await engine.wait(execution_id, timeout=10)
        assert result["output"] == {"approve": {"ok": True}}
