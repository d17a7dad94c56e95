"""``magic-flow run`` as a user runs it: a real process, real files, the SPEC §1 scenarios.

The scenarios and their checks are those of the API suite (``tests/integration/scenarios``);
here they also hold the command's contract (SPEC §4): exit 0 completed, 1 failed / timed out /
cancelled, 2 invalid definition, input or usage; with ``--output json`` exactly one JSON
document on stdout, failures included, and logs on stderr only; the temporary SQLite file is
gone afterwards (every run gets its own TMPDIR, checked empty after).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from magicflow.stores import store_from_url
from tests.integration.scenarios.support import (
    HANDLERS,
    Calls,
    check_document,
    definition,
    expect_approval_timeout,
    expect_breaker_run,
    expect_condition_error,
    expect_conditions,
    expect_continue,
    expect_deadline_cancel,
    expect_deadline_child,
    expect_deadline_fail,
    expect_fallbacks,
    expect_fan_out,
    expect_mapping,
    expect_no_input,
    expect_non_retryable,
    expect_onboarding,
    expect_onboarding_rejected,
    expect_parallel,
    expect_retries,
    expect_retries_exhausted,
    expect_saga,
    expect_sleep,
    expect_step_constant,
    expect_threads,
    expect_timeout_actions,
    expect_timeout_fail,
    step_ids,
)

ITEMS = ["a", "b", "c", "d", "e"]
THREADS = {"threads": [f"t{i}" for i in range(32)], "tasks": [f"a{i}" for i in range(50)]}
DIAGNOSTIC = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.+)$")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def document(self) -> dict[str, Any]:
        """stdout as exactly one JSON document (one line), failures included."""
        assert self.stdout.endswith("\n"), self.stdout
        assert self.stdout.count("\n") == 1, f"more than the document on stdout: {self.stdout}"
        document = json.loads(self.stdout)
        assert isinstance(document, dict)
        return document


class MagicFlow:
    """Runs ``python -m magicflow run ...`` with its own TMPDIR, checked empty afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmpdir = root / "tmpdir"
        self.tmpdir.mkdir()
        self._count = 0

    def workdir(self, name: str) -> Path:
        self._count += 1
        path = self.root / f"{name}-{self._count}"
        path.mkdir()
        return path

    def run(
        self,
        file: Path | str,
        *args: str,
        data: Any = None,
        handlers: Path | str | None = HANDLERS,
        as_json: bool = True,
        timeout: float = 60,
    ) -> Run:
        command = [sys.executable, "-m", "magicflow", "run", str(file)]
        if handlers is not None:
            command += ["--handlers", str(handlers)]
        if data is not None:
            command += ["--input", json.dumps(data)]
        if as_json:
            command += ["--output", "json"]
        command += args
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAGICFLOW_")}
        env["TMPDIR"] = str(self.tmpdir)
        began = time.monotonic()
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, cwd=self.root
        )
        run = Run(done.returncode, done.stdout, done.stderr, time.monotonic() - began)
        assert "Traceback" not in run.stderr, run.stderr
        assert list(self.tmpdir.iterdir()) == [], "the temporary SQLite file is removed"
        return run

    def scenario(self, name: str, *args: str, **data: Any) -> tuple[Run, dict[str, Any], Calls]:
        work = self.workdir(name)
        run = self.run(definition(name), *args, data={"dir": str(work), **data})
        document = run.document()
        check_document(document, name)
        return run, document, Calls.read(work)


@pytest.fixture
def magic_flow(tmp_path: Path) -> MagicFlow:
    return MagicFlow(tmp_path)


def executions_in(url: str) -> list[dict[str, Any]]:
    """The executions a store holds (opened the way the command opens it)."""

    async def read() -> list[dict[str, Any]]:
        store = store_from_url(url)
        await store.open()
        try:
            page = await store.list_executions(limit=100)
            return [{"status": record.status} for record in page.items]
        finally:
            await store.close()

    return asyncio.run(read())


# ---------------------------------------------------------------- the SPEC §1 scenarios

Check = Callable[[dict[str, Any], Calls], None]

SCENARIOS: list[tuple[str, dict[str, Any], int, Check]] = [
    ("parallel", {}, 0, expect_parallel),
    ("conditions", {"plan": "pro"}, 0, partial(expect_conditions, plan="pro")),
    ("conditions", {"plan": "free"}, 0, partial(expect_conditions, plan="free")),
    ("condition-error", {"total": 1, "count": 0}, 1, expect_condition_error),
    ("mapping", {"n": 3, "tags": ["a", "b"]}, 0, expect_mapping),
    ("fan-out", {"items": ITEMS, "nothing": []}, 0, partial(expect_fan_out, items=ITEMS)),
    ("continue", {}, 0, expect_continue),
    ("retries", {}, 0, expect_retries),
    ("retries-exhausted", {}, 1, expect_retries_exhausted),
    ("non-retryable", {}, 0, expect_non_retryable),
    ("timeout-fail", {}, 1, expect_timeout_fail),
    ("timeout-actions", {}, 0, expect_timeout_actions),
    ("fallbacks", {"customer": "ada"}, 0, expect_fallbacks),
    ("saga", {}, 1, expect_saga),
    ("deadline-fail", {}, 1, expect_deadline_fail),
    ("deadline-cancel", {}, 1, expect_deadline_cancel),
    ("deadline-child", {}, 1, expect_deadline_child),
    ("onboarding", {"email": "ada@example.com"}, 0, expect_onboarding),
    ("onboarding-rejected", {}, 1, expect_onboarding_rejected),
    ("approval-timeout", {}, 1, expect_approval_timeout),
    ("sleep", {}, 0, expect_sleep),
    ("threads", THREADS, 0, partial(expect_threads, threads=32, tasks=50)),
    ("step-constant", {}, 0, expect_step_constant),
]


@pytest.mark.parametrize(
    ("name", "data", "exit_code", "check"),
    SCENARIOS,
    ids=[f"{name}-{i}" for i, (name, *_) in enumerate(SCENARIOS)],
)
def test_scenario(
    magic_flow: MagicFlow, name: str, data: dict[str, Any], exit_code: int, check: Check
) -> None:
    run, document, calls = magic_flow.scenario(name, **data)
    assert run.returncode == exit_code, (document["status"], document["error"], run.stderr)
    check(document, calls)


def test_a_circuit_breaker_spans_executions_in_a_kept_store(
    magic_flow: MagicFlow, tmp_path: Path
) -> None:
    """``--store sqlite:///path`` keeps the file: the breaker opened by two runs (threshold
    2) refuses the third run's call, which uses the fallback."""
    store = tmp_path / "kept.db"
    url = f"sqlite:///{store}"
    for run_number in range(3):
        run, document, calls = magic_flow.scenario("breaker", "--store", url)
        assert run.returncode == 0, run.stderr
        expect_breaker_run(document, calls, open_=run_number == 2)
    assert store.exists(), "--store keeps the database"
    assert [e["status"] for e in executions_in(url)] == ["completed"] * 3


def test_without_input_the_execution_input_is_an_empty_object(magic_flow: MagicFlow) -> None:
    run = magic_flow.run(definition("no-input"))
    assert run.returncode == 0, run.stderr
    document = run.document()
    check_document(document, "no-input")
    expect_no_input(document, Calls([]))


# ---------------------------------------------------------------- sub-workflow definitions


def test_sub_workflows_are_found_in_workflows_dirs(magic_flow: MagicFlow, tmp_path: Path) -> None:
    main, library = tmp_path / "main", tmp_path / "library"
    main.mkdir()
    library.mkdir()
    shutil.copy(definition("onboarding"), main)
    shutil.copy(definition("kyc-check"), library)
    (library / "notes.yaml").write_text("not: [a, workflow\n")  # unreferenced: harmless
    work = magic_flow.workdir("onboarding")
    data = {"dir": str(work), "email": "ada@example.com"}
    run = magic_flow.run(main / "onboarding.yaml", "--workflows", str(library), data=data)
    assert run.returncode == 0, run.stderr
    document = run.document()
    check_document(document, "onboarding")
    expect_onboarding(document, Calls.read(work))


def test_a_missing_sub_workflow_is_a_usage_error(magic_flow: MagicFlow, tmp_path: Path) -> None:
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(definition("onboarding"), alone)
    file = alone / "onboarding.yaml"
    work = magic_flow.workdir("onboarding")
    run = magic_flow.run(file, data={"dir": str(work)})
    assert run.returncode == 2
    document = run.document()
    assert document["execution_id"] is None
    assert "kyc-check" in json.dumps(document["error"]) + json.dumps(document.get("diagnostics"))
    text = magic_flow.run(file, data={"dir": str(work)}, as_json=False)
    assert text.returncode == 2
    assert text.stdout == ""
    lines = text.stderr.strip().splitlines()
    assert lines
    assert all(DIAGNOSTIC.match(line) for line in lines), text.stderr
    assert "kyc-check" in text.stderr
    assert not (work / "calls.jsonl").exists()


# ---------------------------------------------------------------- the command's contract


def test_text_mode_ends_with_a_table_of_every_step(magic_flow: MagicFlow) -> None:
    work = magic_flow.workdir("timeout-actions")
    run = magic_flow.run(definition("timeout-actions"), data={"dir": str(work)}, as_json=False)
    assert run.returncode == 0, run.stderr
    rows = {}
    for line in run.stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and cells[0] in step_ids("timeout-actions"):
            rows[cells[0]] = cells[1:]
    assert set(rows) == set(step_ids("timeout-actions")), run.stdout
    assert rows["retry-it"][:2] == ["completed", "2"]
    assert rows["skip-it"][:2] == ["skipped", "1"]
    assert rows["after-skip"][:2] == ["completed", "1"]
    assert rows["fall-back"][0].startswith("completed")
    assert rows["fall-back"][1] == "1"
    assert "status: completed" in run.stdout
    assert '"degraded": true' in run.stdout


def test_a_terminal_shows_live_progress_then_the_table(magic_flow: MagicFlow) -> None:
    pty = pytest.importorskip("pty")
    work = magic_flow.workdir("timeout-actions")
    command = [sys.executable, "-m", "magicflow", "run", str(definition("timeout-actions"))]
    command += ["--handlers", str(HANDLERS), "--input", json.dumps({"dir": str(work)})]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGICFLOW_")}
    env.update(TMPDIR=str(magic_flow.tmpdir), COLUMNS="100", TERM="xterm")
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        command, stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True
    )
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(controller)
    assert process.wait(timeout=60) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))
    live, _, final = text.rpartition("status: completed")[0].rpartition("timeout-actions 1 ·")
    assert "running" in live, "the live view showed steps at work"
    for step_id in step_ids("timeout-actions"):
        assert step_id in final
    assert "completed (fallback)" in final
    assert list(magic_flow.tmpdir.iterdir()) == []


def test_a_failed_execution_exits_1_with_its_document(magic_flow: MagicFlow) -> None:
    run, document, _ = magic_flow.scenario("retries-exhausted")
    assert run.returncode == 1
    assert document["status"] == "failed"
    text = magic_flow.run(
        definition("retries-exhausted"),
        data={"dir": str(magic_flow.workdir("retries-exhausted"))},
        as_json=False,
    )
    assert text.returncode == 1
    assert "status: failed" in text.stdout
    assert "RuntimeError" in text.stdout


def test_an_invalid_definition_exits_2_with_diagnostics(
    magic_flow: MagicFlow, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        'name: bad\nversion: "1"\nsteps:\n  - id: a\n    function: echo\n    depend_on: [a]\n'
        "  - id: b\n    function: echo\n    depends_on: [zz]\n"
    )
    text = magic_flow.run(bad, as_json=False)
    assert text.returncode == 2
    assert text.stdout == ""
    lines = text.stderr.strip().splitlines()
    assert len(lines) == 2, text.stderr
    for line in lines:
        match = DIAGNOSTIC.match(line)
        assert match, line
        assert match["file"] == str(bad)
    assert f"{bad}:6:5: error: unknown key 'depend_on' (did you mean 'depends_on'?)" in lines
    assert any(":9:" in line and "zz" in line for line in lines)
    as_json = magic_flow.run(bad)
    assert as_json.returncode == 2
    document = as_json.document()
    assert document["execution_id"] is None
    assert document["error"]["type"] == "WorkflowValidationError"
    assert len(document["diagnostics"]) == 2


def test_input_that_fails_the_schema_exits_2_and_starts_nothing(
    magic_flow: MagicFlow, tmp_path: Path
) -> None:
    work = magic_flow.workdir("signup")
    url = f"sqlite:///{tmp_path / 'kept.db'}"
    data = {"dir": str(work), "email": 42}
    run = magic_flow.run(definition("signup"), "--store", url, data=data)
    assert run.returncode == 2
    document = run.document()
    assert document["execution_id"] is None
    assert "email" in document["error"]["message"]
    text = magic_flow.run(definition("signup"), "--store", url, data=data, as_json=False)
    assert text.returncode == 2
    assert text.stdout == ""
    assert len(text.stderr.strip().splitlines()) == 1
    assert "email" in text.stderr
    assert not (work / "calls.jsonl").exists()
    if (tmp_path / "kept.db").exists():
        assert executions_in(url) == []


def test_input_from_a_file(magic_flow: MagicFlow, tmp_path: Path) -> None:
    work = magic_flow.workdir("mapping")
    source = tmp_path / "input.json"
    source.write_text(json.dumps({"dir": str(work), "n": 3, "tags": ["a", "b"]}))
    run = magic_flow.run(definition("mapping"), "--input", f"@{source}")
    assert run.returncode == 0, run.stderr
    document = run.document()
    check_document(document, "mapping")
    expect_mapping(document, Calls.read(work))


@pytest.mark.parametrize("text", ['{"dir": ', "@missing.json", "not json"])
def test_bad_input_is_one_readable_line(magic_flow: MagicFlow, text: str) -> None:
    command = ["--input", text]
    run = magic_flow.run(definition("continue"), *command, as_json=False)
    assert run.returncode == 2
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert run.stderr.startswith("magic-flow: error: ")
    as_json = magic_flow.run(definition("continue"), *command)
    assert as_json.returncode == 2
    assert as_json.document()["execution_id"] is None


def test_a_missing_handlers_file_is_one_readable_line(magic_flow: MagicFlow) -> None:
    data = {"dir": str(magic_flow.workdir("continue"))}
    missing = magic_flow.root / "nowhere" / "handlers.py"
    run = magic_flow.run(definition("continue"), data=data, handlers=missing, as_json=False)
    assert run.returncode == 2
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "handlers.py" in run.stderr
    as_json = magic_flow.run(definition("continue"), data=data, handlers=missing)
    assert as_json.returncode == 2
    assert "handlers.py" in as_json.document()["error"]["message"]


def test_another_content_under_a_stored_version_is_a_usage_error(
    magic_flow: MagicFlow, tmp_path: Path
) -> None:
    """The kept store has ``no-input@1``; a file with the same name and version but other
    steps is refused (exit 2, one document / one line), and nothing is started."""
    url = f"sqlite:///{tmp_path / 'kept.db'}"
    assert magic_flow.run(definition("no-input"), "--store", url).returncode == 0
    changed = tmp_path / "no-input.yaml"
    changed.write_text(definition("no-input").read_text().replace("id: only", "id: single"))
    run = magic_flow.run(changed, "--store", url)
    assert run.returncode == 2
    document = run.document()
    assert document["execution_id"] is None
    assert "no-input" in document["error"]["message"]
    text = magic_flow.run(changed, "--store", url, as_json=False)
    assert text.returncode == 2
    assert len(text.stderr.strip().splitlines()) == 1, text.stderr
    assert text.stderr.startswith("magic-flow: error: ")
    assert len(executions_in(url)) == 1


@pytest.mark.parametrize("option", ["--store", "--broker"])
def test_a_bad_url_is_a_usage_error(magic_flow: MagicFlow, option: str) -> None:
    run = magic_flow.run(definition("no-input"), option, "bogus://somewhere")
    assert run.returncode == 2
    assert "bogus://" in run.document()["error"]["message"]


def test_function_steps_without_handlers_are_a_usage_error(magic_flow: MagicFlow) -> None:
    """Nothing would run them: refused at once rather than waiting forever."""
    data = {"dir": str(magic_flow.workdir("continue"))}
    run = magic_flow.run(definition("continue"), data=data, handlers=None, timeout=20)
    assert run.returncode == 2
    assert "--handlers" in run.document()["error"]["message"]


def test_an_abandoned_sync_function_does_not_keep_the_process_alive(
    magic_flow: MagicFlow, tmp_path: Path
) -> None:
    """A sync call can't be interrupted: after its step timeout it is abandoned, and the
    command still ends as soon as the execution does."""
    file = tmp_path / "abandon.yaml"
    file.write_text(
        "name: abandon\n"
        'version: "1"\n'
        "steps:\n"
        "  - id: stuck\n"
        "    function: nap_sync\n"
        '    input: {dir: "${input.dir}", seconds: 60}\n'
        "    timeout: 200ms\n"
        "    timeout_action: fail\n"
    )
    work = magic_flow.workdir("abandon")
    run = magic_flow.run(file, data={"dir": str(work)}, timeout=45)
    assert run.returncode == 1
    document = run.document()
    assert document["steps"]["stuck"]["status"] == "timed_out"
    assert run.seconds < 20, f"the process took {run.seconds:.1f}s for a 0.2s timeout"
    calls = Calls.read(work)
    assert calls.count("stuck", event="start") == 1
    assert calls.count("stuck", event="end") == 0
