"""The execution result document (SPEC §3)."""

from __future__ import annotations

import json
import re

import pytest

from magicflow.engine.model import CancelRequested
from magicflow.engine.view import execution_document, timestamp

from .harness import Run, error

PLAN = """
name: user-onboarding
version: "1.2.0"
defaults:
  retry_config: {max_attempts: 1}
steps:
  - id: validate-user
    function: validate_user
  - id: create-account
    function: create_account
    depends_on: [validate-user]
    fallback: {output: {degraded: true}}
  - id: send-welcome
    function: send_email
    depends_on: [create-account]
"""

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_795_636_800.0, "2026-11-25T20:00:00.000Z"),
        (1_795_636_800.1234, "2026-11-25T20:00:00.123Z"),
        (1_795_636_800.9996, "2026-11-25T20:00:01.000Z"),
        (None, None),
    ],
)
def test_timestamp(epoch: float | None, text: str | None) -> None:
    assert timestamp(epoch) == text


def test_running_document_lists_every_step() -> None:
    run = Run.of(PLAN, now=1_795_636_800.0)
    run.start({"email": "a@b.c"})
    doc = execution_document(run.st, run.plan)
    json.dumps(doc)  # plain JSON data
    assert doc["execution_id"] == "ex1"
    assert doc["workflow"] == {"name": "user-onboarding", "version": "1.2.0"}
    assert doc["status"] == "running"
    assert doc["input"] == {"email": "a@b.c"}
    assert doc["output"] is None
    assert doc["error"] is None
    assert doc["started_at"] == "2026-11-25T20:00:00.000Z"
    assert doc["completed_at"] is None
    assert list(doc["steps"]) == ["validate-user", "create-account", "send-welcome"]
    assert doc["steps"]["validate-user"] == {
        "status": "running",
        "attempts": 1,
        "output": None,
        "error": None,
        "fallback_used": False,
        "started_at": "2026-11-25T20:00:00.000Z",
        "completed_at": None,
    }
    assert doc["steps"]["send-welcome"]["status"] == "pending"


def test_completed_document_with_fallback() -> None:
    run = Run.of(PLAN, now=1_795_636_800.0)
    run.start()
    run.now += 0.25
    run.ok("validate-user", {"email": "a@b.c"})
    run.fail("create-account", error("DbError", "down"))
    run.ok("send-welcome", "sent")
    doc = execution_document(run.st, run.plan)
    assert doc["status"] == "completed"
    assert doc["output"] == {"send-welcome": "sent"}
    created = doc["steps"]["create-account"]
    assert created["status"] == "completed"
    assert created["fallback_used"] is True
    assert created["output"] == {"degraded": True}
    assert created["attempts"] == 1
    assert doc["steps"]["validate-user"]["completed_at"] == "2026-11-25T20:00:00.250Z"
    assert RFC3339_MS.match(doc["completed_at"])


def test_failed_document_has_the_error_and_unstarted_steps_cancelled() -> None:
    run = Run.of(PLAN)
    run.start()
    run.fail("validate-user", error("ValidationError", "bad email"))
    doc = execution_document(run.st, run.plan)
    assert doc["status"] == "failed"
    assert doc["error"] == {
        "type": "ValidationError",
        "message": "bad email",
        "step_id": "validate-user",
    }
    assert doc["steps"]["validate-user"]["error"] == doc["error"]
    assert doc["steps"]["create-account"]["status"] == "cancelled"
    assert doc["steps"]["send-welcome"]["status"] == "cancelled"


def test_cancelled_document() -> None:
    run = Run.of(PLAN)
    run.start()
    run.send(CancelRequested(reason="stop"))
    doc = execution_document(run.st, run.plan)
    assert doc["status"] == "cancelled"
    assert doc["steps"]["validate-user"]["status"] == "cancelled"
    assert doc["error"] == {"type": "CancelledError", "message": "stop", "step_id": None}
