"""SPEC §1 scenarios through the Python API: ``async with Engine(...)`` on a SQLite file, the
in-process broker and a local executor running ``scenarios/handlers.py``.

The same workflow files and the same checks (``scenarios/support.py``) run through
``magic-flow run`` in ``tests/e2e/test_cli_run.py``; the lifecycle operations (signal, cancel,
pause, resume, retry) are only here. Nothing sleeps to let time pass: the tests await results,
and the engine's own events where they need a moment inside an execution.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from magicflow import Engine, WorkflowValidationError
from magicflow.dsl import compile_workflow
from magicflow.engine.model import Emit
from magicflow.errors import ConflictError
from magicflow.stores import Store, store_from_url
from tests.integration.scenarios import handlers
from tests.integration.scenarios.support import (
    SCENARIOS,
    Calls,
    check_document,
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
    never_started,
    statuses,
)

WAIT = 15.0  # seconds: a bound on any one execution, so that a hang fails fast

Result = tuple[dict[str, Any], Calls]


class Events:
    """The engine's lifecycle events (``step.started``, ``step.completed`` ...) as they commit."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        self._changed = asyncio.Event()

    def __call__(self, execution_id: str, emits: list[Emit]) -> None:
        self.seen.extend((execution_id, e.kind, e.step_id) for e in emits)
        self._changed.set()

    async def until(self, execution_id: str, kind: str, step_id: str | None = None) -> None:
        """Return once the execution has committed that event (at most WAIT seconds)."""
        async with asyncio.timeout(WAIT):
            while (execution_id, kind, step_id) not in self.seen:
                self._changed.clear()
                await self._changed.wait()


class Scenarios:
    """Runs scenario workflows on one engine, each execution in a fresh working directory."""

    def __init__(self, engine: Engine, root: Path) -> None:
        self.engine = engine
        self.root = root
        self.events = Events()
        engine.driver.add_listener(self.events)
        self._numbers = itertools.count(1)

    def workdir(self, name: str) -> Path:
        path = self.root / f"{name}-{next(self._numbers)}"
        path.mkdir()
        return path

    async def start(self, name: str, **data: Any) -> tuple[str, Path]:
        work = self.workdir(name)
        execution_id = await self.engine.start(name, {"dir": str(work), **data})
        return execution_id, work

    async def wait(self, name: str, execution_id: str, work: Path) -> Result:
        doc = await self.engine.wait(execution_id, timeout=WAIT)
        check_document(doc, name)
        return doc, Calls.read(work)

    async def run(self, name: str, **data: Any) -> Result:
        execution_id, work = await self.start(name, **data)
        return await self.wait(name, execution_id, work)


@asynccontextmanager
async def engine_for_scenarios(root: Path, **options: Any) -> AsyncIterator[Scenarios]:
    """An engine on a SQLite file in ``root`` with every scenario workflow registered."""
    options.setdefault("shutdown_grace", 0.5)
    options.setdefault("store", f"sqlite:///{root / 'engine.db'}")
    async with Engine(
        broker="memory://",
        registry=handlers.registry,
        **options,
    ) as engine:
        for path in sorted(SCENARIOS.glob("*.yaml")):
            await engine.register(compile_workflow(path.read_text(), str(path)))
        work = root / "work"
        work.mkdir(exist_ok=True)  # an engine after another on the same store
        yield Scenarios(engine, work)


@pytest.fixture
async def scenarios(tmp_path: Path) -> AsyncIterator[Scenarios]:
    async with engine_for_scenarios(tmp_path) as running:
        yield running


async def eventually(check: Callable[[], bool], what: str) -> None:
    """For effects outside the engine (a cancelled call noticing it): wait until ``check``."""
    give_up = time.monotonic() + 5.0
    while not check():
        assert time.monotonic() < give_up, what
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------- scheduling and expressions


async def test_independent_steps_run_in_parallel(scenarios: Scenarios) -> None:
    expect_parallel(*await scenarios.run("parallel"))


@pytest.mark.parametrize("plan", ["pro", "free"])
async def test_a_false_condition_skips_the_step_and_satisfies_its_dependents(
    scenarios: Scenarios, plan: str
) -> None:
    doc, calls = await scenarios.run("conditions", plan=plan)
    expect_conditions(doc, calls, plan)


async def test_a_condition_that_fails_to_evaluate_fails_its_step(scenarios: Scenarios) -> None:
    expect_condition_error(*await scenarios.run("condition-error", total=1, count=0))


async def test_step_input_mapping_and_workflow_output(scenarios: Scenarios) -> None:
    expect_mapping(*await scenarios.run("mapping", n=3, tags=["a", "b"]))


async def test_for_each_bounds_parallelism_and_keeps_item_order(scenarios: Scenarios) -> None:
    items = ["a", "b", "c", "d", "e"]
    doc, calls = await scenarios.run("fan-out", items=items, nothing=[])
    expect_fan_out(doc, calls, items)


async def test_many_calls_run_at_once(scenarios: Scenarios) -> None:
    """32 sync calls (one thread each) and 50 async ones, every one waiting for the others."""
    threads = [f"t{i}" for i in range(32)]
    tasks = [f"a{i}" for i in range(50)]
    doc, calls = await scenarios.run("threads", threads=threads, tasks=tasks)
    expect_threads(doc, calls, threads=32, tasks=50)


async def test_without_input_a_step_receives_an_empty_object(scenarios: Scenarios) -> None:
    doc = await scenarios.engine.run("no-input", timeout=WAIT)
    check_document(doc, "no-input")
    expect_no_input(doc, Calls([]))


async def test_a_step_constant_registration_serves_its_step(scenarios: Scenarios) -> None:
    expect_step_constant(*await scenarios.run("step-constant"))


async def test_continue_on_failure_lets_the_execution_complete(scenarios: Scenarios) -> None:
    expect_continue(*await scenarios.run("continue"))


# ---------------------------------------------------------------- retries, timeouts, fallback


async def test_retry_strategies_count_and_space_attempts(scenarios: Scenarios) -> None:
    expect_retries(*await scenarios.run("retries"))


async def test_exhausted_retries_fail_the_step_and_the_execution(scenarios: Scenarios) -> None:
    expect_retries_exhausted(*await scenarios.run("retries-exhausted"))


async def test_non_retryable_errors_skip_the_remaining_retries(scenarios: Scenarios) -> None:
    expect_non_retryable(*await scenarios.run("non-retryable"))


async def test_timeout_action_fail_times_out_the_step_and_fails_the_execution(
    scenarios: Scenarios,
) -> None:
    doc, calls = await scenarios.run("timeout-fail")
    expect_timeout_fail(doc, calls)
    work = Path(doc["input"]["dir"])
    await eventually(
        lambda: Calls.read(work).count("slow", event="cancelled") == 1,
        "the timed-out async call is cancelled",
    )


async def test_timeout_actions_retry_skip_and_fallback(scenarios: Scenarios) -> None:
    expect_timeout_actions(*await scenarios.run("timeout-actions"))


async def test_fallback_by_output_by_function_and_a_chain(scenarios: Scenarios) -> None:
    expect_fallbacks(*await scenarios.run("fallbacks", customer="ada"))


async def test_a_circuit_breaker_opens_across_executions(tmp_path: Path) -> None:
    """failure_threshold 2: two executions fail their call (and fall back), the next ones are
    refused without a call; once the breaker's timeout (1m) has passed a probe goes through
    and closes it. The engine's clock is moved instead of waiting a minute."""
    offset = 0.0
    async with engine_for_scenarios(tmp_path, clock=lambda: time.time() + offset) as scenarios:
        for _ in range(2):
            doc, calls = await scenarios.run("breaker")
            expect_breaker_run(doc, calls, open_=False)
        for _ in range(2):
            doc, calls = await scenarios.run("breaker")
            expect_breaker_run(doc, calls, open_=True)
        offset = 61.0
        work = scenarios.workdir("breaker")
        (work / "healthy").touch()
        doc = await scenarios.engine.run("breaker", {"dir": str(work)}, timeout=WAIT)
        step = doc["steps"]["call"]
        assert (step["attempts"], step["fallback_used"]) == (1, False), "half-open: a probe"
        assert step["output"] == {"healthy": True}
        doc, calls = await scenarios.run("breaker")  # closed again: the call is made (fails)
        expect_breaker_run(doc, calls, open_=False)


# ---------------------------------------------------------------- compensation and deadlines


async def test_compensation_runs_in_reverse_completion_order(scenarios: Scenarios) -> None:
    expect_saga(*await scenarios.run("saga"))


async def test_the_deadline_times_out_the_execution_and_cancels_running_steps(
    scenarios: Scenarios,
) -> None:
    doc, calls = await scenarios.run("deadline-fail")
    expect_deadline_fail(doc, calls)
    work = Path(doc["input"]["dir"])
    await eventually(
        lambda: Calls.read(work).count("long", event="cancelled") == 1,
        "the running async call is cancelled at the deadline",
    )


async def test_the_deadline_holds_for_many_executions_at_once(scenarios: Scenarios) -> None:
    """The deadline also bounds a call on the executor side; whichever notices first, the
    execution ends timed_out with its running step cancelled (SPEC §1 Deadline)."""
    started = [await scenarios.start("deadline-fail") for _ in range(20)]
    for execution_id, work in started:
        expect_deadline_fail(*await scenarios.wait("deadline-fail", execution_id, work))


async def test_the_deadline_with_action_cancel_cancels_the_execution(
    scenarios: Scenarios,
) -> None:
    expect_deadline_cancel(*await scenarios.run("deadline-cancel"))


async def test_a_child_inherits_the_parents_deadline(scenarios: Scenarios) -> None:
    doc, calls = await scenarios.run("deadline-child")
    expect_deadline_child(doc, calls)
    children = await scenarios.engine.list_executions(workflow="slow-check")
    assert len(children["items"]) == 1
    assert children["items"][0]["status"] in {"timed_out", "cancelled"}
    assert children["items"][0]["steps"]["score"]["status"] == "cancelled"


# ---------------------------------------------------------------- sub-workflows


async def test_a_sub_workflow_step_outputs_the_childs_output(scenarios: Scenarios) -> None:
    expect_onboarding(*await scenarios.run("onboarding", email="ada@example.com"))
    children = await scenarios.engine.list_executions(workflow="kyc-check")
    assert [child["status"] for child in children["items"]] == ["completed"]


async def test_a_failed_child_fails_the_step(scenarios: Scenarios) -> None:
    expect_onboarding_rejected(*await scenarios.run("onboarding-rejected"))


# ---------------------------------------------------------------- signals and sleep


async def test_a_signal_completes_a_waiting_step_with_its_payload(scenarios: Scenarios) -> None:
    execution_id, work = await scenarios.start("approval")
    await scenarios.events.until(execution_id, "step.started", "approve")
    document = await scenarios.engine.get(execution_id)
    assert document["status"] == "running"
    assert document["steps"]["approve"]["status"] == "waiting"
    assert document["steps"]["act"]["status"] == "pending"
    await scenarios.engine.signal(execution_id, "approval", {"by": "grace", "ok": True})
    doc, calls = await scenarios.wait("approval", execution_id, work)
    assert doc["status"] == "completed", doc["error"]
    assert doc["steps"]["approve"]["output"] == {"by": "grace", "ok": True}
    assert doc["steps"]["act"]["output"] == {"decision": {"by": "grace", "ok": True}}
    assert calls.count("act") == 1


async def test_a_signal_sent_before_the_step_waits_is_kept(scenarios: Scenarios) -> None:
    execution_id, work = await scenarios.start("approval")
    await scenarios.engine.signal(execution_id, "approval", "early")
    doc, _ = await scenarios.wait("approval", execution_id, work)
    assert doc["status"] == "completed", doc["error"]
    assert doc["steps"]["approve"]["output"] == "early"


async def test_a_wait_for_without_its_signal_times_out(scenarios: Scenarios) -> None:
    expect_approval_timeout(*await scenarios.run("approval-timeout"))


async def test_a_durable_sleep_delays_the_next_step(scenarios: Scenarios) -> None:
    expect_sleep(*await scenarios.run("sleep"))


# ---------------------------------------------------------------- lifecycle operations


async def test_a_running_execution_shows_its_steps(scenarios: Scenarios) -> None:
    execution_id, work = await scenarios.start("lifecycle", seconds=0.2)
    await scenarios.events.until(execution_id, "step.started", "first")
    document = await scenarios.engine.get(execution_id)
    assert document["status"] == "running"
    assert document["completed_at"] is None
    assert statuses(document) == {"first": "running", "second": "pending"}
    assert document["steps"]["second"]["started_at"] is None
    doc, _ = await scenarios.wait("lifecycle", execution_id, work)
    assert statuses(doc) == {"first": "completed", "second": "completed"}


async def test_cancel_stops_the_running_step(scenarios: Scenarios) -> None:
    execution_id, work = await scenarios.start("lifecycle", seconds=5)
    await scenarios.events.until(execution_id, "step.started", "first")
    await scenarios.engine.cancel(execution_id)
    doc, _ = await scenarios.wait("lifecycle", execution_id, work)
    assert doc["status"] == "cancelled"
    assert doc["error"]["type"] == "CancelledError"
    assert doc["steps"]["first"]["status"] == "cancelled"
    never_started(doc, "second")
    await eventually(
        lambda: Calls.read(work).count("first", event="cancelled") == 1,
        "the running async call is cancelled",
    )
    with pytest.raises(ConflictError):
        await scenarios.engine.cancel(execution_id)


async def test_pause_holds_the_next_steps_until_resume(scenarios: Scenarios) -> None:
    execution_id, work = await scenarios.start("lifecycle", seconds=0.1)
    await scenarios.events.until(execution_id, "step.started", "first")
    await scenarios.engine.pause(execution_id)
    # the running step finishes, but nothing new starts while paused
    await scenarios.events.until(execution_id, "step.completed", "first")
    document = await scenarios.engine.get(execution_id)
    assert document["status"] == "paused"
    assert statuses(document) == {"first": "completed", "second": "pending"}
    assert Calls.read(work).count("second") == 0
    with pytest.raises(ConflictError):
        await scenarios.engine.pause(execution_id)
    await scenarios.engine.resume(execution_id)
    doc, calls = await scenarios.wait("lifecycle", execution_id, work)
    assert doc["status"] == "completed", doc["error"]
    assert calls.count("second") == 1
    assert calls.of("second")[0]["t"] > calls.of("first", event="end")[0]["t"]


async def test_retry_runs_a_failed_execution_again_from_the_failed_step(
    scenarios: Scenarios,
) -> None:
    execution_id, work = await scenarios.start("recovery")
    doc, _ = await scenarios.wait("recovery", execution_id, work)
    assert doc["status"] == "failed"
    assert statuses(doc) == {"first": "completed", "second": "failed", "third": "cancelled"}
    (work / "healthy").touch()
    await scenarios.engine.retry(execution_id)
    doc, calls = await scenarios.wait("recovery", execution_id, work)
    assert doc["status"] == "completed", doc["error"]
    assert doc["execution_id"] == execution_id
    assert statuses(doc) == {"first": "completed", "second": "completed", "third": "completed"}
    assert doc["steps"]["second"]["output"] == "healthy"
    # the completed step is not run again
    assert [calls.count(step) for step in ("first", "second", "third")] == [1, 2, 1]
    with pytest.raises(ConflictError):
        await scenarios.engine.retry(execution_id)


async def test_an_execution_outlives_its_engine(tmp_path: Path) -> None:
    """The engine stops with a durable sleep pending and a call running (the in-process
    broker's messages die with it); a new engine on the same store finishes both: the timer
    fires, and the interrupted call is dispatched again under the same attempt."""
    async with engine_for_scenarios(tmp_path, shutdown_grace=0.05) as first:
        sleeping, sleep_dir = await first.start("sleep")
        working, work_dir = await first.start("lifecycle", seconds=0.3)
        await first.events.until(sleeping, "step.started", "pause")
        await first.events.until(working, "step.started", "first")
    async with engine_for_scenarios(tmp_path) as second:
        doc, calls = await second.wait("sleep", sleeping, sleep_dir)
        assert doc["status"] == "completed", doc["error"]
        assert calls.count("after") == 1
        doc, calls = await second.wait("lifecycle", working, work_dir)
        assert doc["status"] == "completed", doc["error"]
        assert doc["steps"]["first"]["attempts"] == 1
        assert [r["attempt"] for r in calls.of("first", event="start")] == [1, 1]
        assert calls.count("first", event="end") == 1
        assert calls.count("second") == 1


class SlowCommits:
    """A store whose commits take a while: the engine decides the next batch meanwhile."""

    def __init__(self, store: Store, seconds: float) -> None:
        self._store = store
        self._seconds = seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def commit(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(self._seconds)
        return await self._store.commit(*args, **kwargs)


async def test_wait_returns_the_final_document_when_commits_are_slow(tmp_path: Path) -> None:
    """The engine decides the next batch while one commits (here slowly, one event per
    batch). In each execution 'fast' ends, then 'slow' ends it while the commit of 'fast' is
    still under way: wait() must return every execution as it ended, not as it was."""
    store = SlowCommits(store_from_url(f"sqlite:///{tmp_path / 'slow.db'}"), 0.02)
    async with engine_for_scenarios(tmp_path, store=store, batch_size=1) as scenarios:
        started = await asyncio.gather(*(scenarios.start("two-paces") for _ in range(10)))
        for execution_id, work in started:
            doc = await scenarios.engine.wait(execution_id, timeout=WAIT)
            assert doc["status"] == "completed", (doc["status"], statuses(doc))
            check_document(doc, "two-paces")
            assert Calls.read(work).count("slow", event="end") == 1
    await store.close()


async def test_input_that_fails_the_schema_starts_nothing(scenarios: Scenarios) -> None:
    work = scenarios.workdir("signup")
    with pytest.raises(WorkflowValidationError) as caught:
        await scenarios.engine.start("signup", {"dir": str(work), "email": 42})
    assert "email" in str(caught.value)
    assert (await scenarios.engine.list_executions(workflow="signup"))["items"] == []
    doc, calls = await scenarios.run("signup", email="ada@example.com")
    assert doc["status"] == "completed"
    assert calls.count("register") == 1


async def test_an_error_inside_async_with_engine_comes_out_as_itself(tmp_path: Path) -> None:
    """Like ``async with Executor``: the caller's own error, not an ExceptionGroup."""
    with pytest.raises(KeyError):
        async with Engine(store=f"sqlite:///{tmp_path / 'e.db'}", shutdown_grace=0.1):
            raise KeyError("the caller's own error")
