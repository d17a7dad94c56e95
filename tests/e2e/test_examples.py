"""The runnable examples run to completion through `magic-flow run`, as the README shows."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, payload: dict) -> tuple[int, dict]:
    folder = EXAMPLES / name
    done = subprocess.run(
        [
            sys.executable, "-m", "magicflow", "run", str(folder / "workflow.yaml"),
            "--handlers", str(folder / "handlers.py"),
            "--input", json.dumps(payload), "--output", "json",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, json.loads(done.stdout)


def test_user_onboarding_welcomes_a_pro_user() -> None:
    code, result = run_example("user-onboarding", {"email": "Ada@Example.com", "plan": "pro"})
    assert code == 0, result["error"]
    assert result["status"] == "completed"
    assert result["output"]["email"] == "ada@example.com"
    assert result["output"]["welcomed"] is True
    assert isinstance(result["output"]["user_id"], int)


def test_user_onboarding_skips_the_welcome_for_free_users() -> None:
    code, result = run_example("user-onboarding", {"email": "bob@example.com"})
    assert code == 0, result["error"]
    assert result["steps"]["send-welcome"]["status"] == "skipped"
    assert result["output"]["welcomed"] is False


def test_user_onboarding_rejects_a_bad_email_without_retrying() -> None:
    code, result = run_example("user-onboarding", {"email": "not-an-email"})
    assert code == 1
    assert result["status"] == "failed"
    assert result["error"]["step_id"] == "validate-user"
    assert result["steps"]["validate-user"]["attempts"] == 1


@pytest.mark.slow
def test_data_pipeline_loads_every_source() -> None:
    sources = ["orders", "payments", "clicks"]
    code, result = run_example("data-pipeline", {"run_date": "2026-11-25", "sources": sources})
    assert code == 0, result["error"]
    assert [batch["source"] for batch in result["steps"]["extract"]["output"]] == sources
    assert result["output"]["rows_loaded"] == 8000
    assert result["steps"]["refresh-dashboards"]["status"] == "completed"
