"""`magic-flow validate` starts fast (SPEC §4): it imports nothing heavy it does not need.

Wall-clock limits would be flaky on a shared machine; what a command imports is not.
"""

import subprocess
import sys
from pathlib import Path

HEAVY = (
    "asyncio", "fastapi", "uvicorn", "httpx", "pydantic", "jsonschema", "rich", "msgspec",
    "opentelemetry",
)  # fmt: skip


def imported_by(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "magicflow", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_validate_of_a_small_file_imports_nothing_heavy(tmp_path: Path) -> None:
    workflow = tmp_path / "tiny.yaml"
    workflow.write_text('name: tiny\nversion: "1"\nsteps:\n  - id: a\n    function: f\n')
    modules = imported_by("validate", str(workflow))
    assert not {m for m in modules if m.split(".")[0] in HEAVY}


def test_help_still_lists_every_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "magicflow", "--help"], capture_output=True, text=True, timeout=60
    )
    for command in ("validate", "schema", "graph", "run", "executor", "server", "keys", "db"):
        assert command in done.stdout
