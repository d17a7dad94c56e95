from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pytest

from magicflow.errors import NonRetryableError, StepCancelled, StepError
from magicflow.executor import Registry, Runner, StepContext

from .helpers import make_task


class Step(StrEnum):
    StepValidateUser = "validate-user"


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
async def runner(registry: Registry) -> Any:
    runner = Runner(registry, executor_id="exec-a")
    yield runner
    runner.close()


# ------------------------------------------------------------------ success


async def test_async_function(registry: Registry, runner: Runner) -> None:
    @registry.function
    async def double(ctx: StepContext) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"value": ctx.input["n"] * 2}

    task = make_task("double", {"n": 21}, attempt=2, item_index=3)
    result = await runner.run(task)
    assert result.status == "completed"
    assert result.output == {"value": 42}
    assert result.error is None
    assert (result.task_id, result.execution_id, result.step_id) == (
        task.id,
        "exec-1",
        task.step_id,
    )
    assert (result.attempt, result.item_index, result.executor_id) == (2, 3, "exec-a")
    assert result.duration >= 0
    assert abs(result.completed_at - time.time()) < 5


async def test_sync_function_runs_in_a_daemon_thread(registry: Registry, runner: Runner) -> None:
    seen: list[threading.Thread] = []

    @registry.function
    def where(ctx: StepContext) -> str:
        seen.append(threading.current_thread())
        return ctx.input

    result = await runner.run(make_task("where", "hello"))
    assert result.output == "hello"
    assert seen[0] is not threading.main_thread()
    assert seen[0].daemon
    assert seen[0].name.startswith("magicflow-sync")


async def test_context_fields(registry: Registry, runner: Runner) -> None:
    contexts: list[StepContext] = []

    @registry.function
    def capture(ctx: StepContext) -> None:
        contexts.append(ctx)

    now = time.time()
    task = make_task(
        "capture",
        [1, 2],
        attempt=3,
        item_index=1,
        step_type="fallback",
        timeout=60.0,
        deadline=now + 10.0,
        context={"traceparent": "00-abc"},
    )
    await runner.run(task)
    ctx = contexts[0]
    assert ctx.input == [1, 2]
    assert (ctx.workflow_name, ctx.workflow_version) == ("user-onboarding", "1.2.0")
    assert (ctx.execution_id, ctx.step_id, ctx.task_id) == ("exec-1", "validate-user", task.id)
    assert (ctx.attempt, ctx.item_index, ctx.step_type, ctx.function) == (
        3,
        1,
        "fallback",
        "capture",
    )
    assert ctx.headers == {"traceparent": "00-abc"}
    # the deadline is the earlier of the attempt's timeout and the execution's deadline
    assert ctx.deadline is not None
    assert ctx.deadline.tzinfo is UTC
    assert abs(ctx.deadline.timestamp() - (now + 10.0)) < 1.0
    remaining = ctx.time_remaining()
    assert remaining is not None
    assert 0 < remaining <= 10
    assert not ctx.cancelled
    with pytest.raises(AttributeError):
        ctx.attempt = 4  # type: ignore[misc]


async def test_deadline_from_the_attempt_timeout(registry: Registry, runner: Runner) -> None:
    deadlines: list[datetime | None] = []

    @registry.function
    async def capture(ctx: StepContext) -> None:
        deadlines.append(ctx.deadline)

    await runner.run(make_task("capture", timeout=30.0, deadline=time.time() + 3600))
    await runner.run(make_task("capture"))
    first = deadlines[0]
    assert first is not None
    assert abs(first.timestamp() - (time.time() + 30.0)) < 2.0
    assert deadlines[1] is None


async def test_logger_carries_the_ids(
    registry: Registry, runner: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    @registry.function
    async def chatty(ctx: StepContext) -> None:
        ctx.logger.info("working on %s", ctx.step_id)

    task = make_task("chatty", attempt=2)
    with caplog.at_level(logging.INFO, logger="magicflow.step"):
        await runner.run(task)
    record = caplog.records[0]
    assert record.getMessage() == "working on validate-user"
    assert record.__dict__["execution_id"] == "exec-1"
    assert record.__dict__["task_id"] == task.id
    assert record.__dict__["attempt"] == 2
    assert record.__dict__["workflow_name"] == "user-onboarding"


async def test_step_registration_wins_but_not_for_fallbacks(
    registry: Registry, runner: Runner
) -> None:
    registry.register("validate_user", lambda ctx: "by function")
    registry.register(Step.StepValidateUser, lambda ctx: "by step")
    own = await runner.run(make_task("validate_user", step_id="validate-user"))
    assert own.output == "by step"
    fallback = await runner.run(
        make_task("validate_user", step_id="validate-user", step_type="fallback")
    )
    assert fallback.output == "by function"


async def test_sync_callable_returning_a_coroutine(registry: Registry, runner: Runner) -> None:
    async def later(value: int) -> int:
        await asyncio.sleep(0)
        return value

    registry.register("wrapped", lambda ctx: later(7))
    result = await runner.run(make_task("wrapped"))
    assert result.output == 7


# ------------------------------------------------------------------ failures


def _raise_value_error(ctx: StepContext) -> None:
    raise ValueError("bad input: 42")


async def test_exception_becomes_a_failed_result(registry: Registry, runner: Runner) -> None:
    registry.register("explode", _raise_value_error)
    result = await runner.run(make_task("explode"))
    assert result.status == "failed"
    assert result.output is None
    error = result.error
    assert error is not None
    assert (error.type, error.message, error.non_retryable) == (
        "ValueError",
        "bad input: 42",
        False,
    )
    assert error.step_id == "validate-user"
    assert error.traceback is not None
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert "_raise_value_error" in error.traceback
    assert "ValueError: bad input: 42" in error.traceback
    # the executor's own frames are trimmed away
    assert "magicflow/executor" not in error.traceback
    assert "asyncio" not in error.traceback


class FlaggedError(Exception):
    non_retryable = True


@pytest.mark.parametrize(
    ("exc", "non_retryable"),
    [
        (NonRetryableError("bad email"), True),
        (StepError("try again"), False),
        (FlaggedError("flagged"), True),
        (RuntimeError(), False),
    ],
)
async def test_non_retryable_errors(
    registry: Registry, runner: Runner, exc: Exception, non_retryable: bool
) -> None:
    async def fail(ctx: StepContext) -> None:
        raise exc

    registry.register("fail", fail)
    result = await runner.run(make_task("fail"))
    assert result.error is not None
    assert result.error.type == type(exc).__name__
    assert result.error.non_retryable is non_retryable
    assert result.error.message == (str(exc) or type(exc).__name__)


async def test_step_error_instance_flag(registry: Registry, runner: Runner) -> None:
    def fail(ctx: StepContext) -> None:
        error = StepError("quota exhausted")
        error.non_retryable = True
        raise error

    registry.register("fail", fail)
    result = await runner.run(make_task("fail"))
    assert result.error is not None
    assert result.error.non_retryable


async def test_long_traceback_is_trimmed(registry: Registry, runner: Runner) -> None:
    def ping(n: int) -> None:
        if n == 0:
            raise ValueError("x" * 5000)
        pong(n - 1)

    def pong(n: int) -> None:
        ping(n)

    registry.register("deep", lambda ctx: ping(200))
    result = await runner.run(make_task("deep"))
    error = result.error
    assert error is not None
    assert error.traceback is not None
    assert len(error.traceback) <= 8000
    assert error.traceback.startswith("Traceback (most recent call last):\n  ...\n")
    assert error.traceback.endswith("x\n")
    assert len(error.message) <= 4000
    assert error.message.endswith(" ... (trimmed)")


async def test_unknown_function(registry: Registry, runner: Runner) -> None:
    registry.register("send_email", lambda ctx: None)
    registry.register("validate_user", lambda ctx: None)
    result = await runner.run(make_task("sned_email"))
    assert result.status == "failed"
    error = result.error
    assert error is not None
    assert error.type == "FunctionNotFound"
    assert error.non_retryable
    assert "'sned_email'" in error.message
    assert "did you mean 'send_email'?" in error.message
    assert "registered: send_email, validate_user" in error.message


async def test_unknown_function_with_an_empty_registry(runner: Runner) -> None:
    result = await runner.run(make_task("anything"))
    assert result.error is not None
    assert "no functions are registered" in result.error.message


async def test_output_must_be_json(registry: Registry, runner: Runner) -> None:
    registry.register("weird", lambda ctx: {"when": object()})
    result = await runner.run(make_task("weird"))
    assert result.status == "failed"
    error = result.error
    assert error is not None
    assert error.type == "SerializationError"
    assert error.non_retryable
    assert "not JSON-serialisable" in error.message
    assert "'weird'" in error.message


# ------------------------------------------------------------------ timeouts


async def test_async_timeout(registry: Registry, runner: Runner) -> None:
    cancelled = asyncio.Event()

    @registry.function
    async def slow(ctx: StepContext) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = time.monotonic()
    result = await runner.run(make_task("slow", timeout=0.1))
    assert time.monotonic() - started < 2
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "TimeoutError"
    assert result.error.message == "step timed out after 0.1s"
    assert not result.error.non_retryable
    assert cancelled.is_set()


async def test_sync_timeout_abandons_the_call(registry: Registry, runner: Runner) -> None:
    contexts: list[StepContext] = []

    @registry.function
    def sleepy(ctx: StepContext) -> None:
        contexts.append(ctx)
        time.sleep(10)

    started = time.monotonic()
    result = await runner.run(make_task("sleepy", timeout=0.2))
    assert time.monotonic() - started < 2
    assert result.error is not None
    assert result.error.type == "TimeoutError"
    assert result.error.message == "step timed out after 0.2s"
    assert contexts[0].cancelled
    assert runner.pool.abandoned == 1


async def test_timeout_bounded_by_the_execution_deadline(
    registry: Registry, runner: Runner
) -> None:
    @registry.function
    async def slow(ctx: StepContext) -> None:
        await asyncio.sleep(10)

    result = await runner.run(make_task("slow", timeout=30.0, deadline=time.time() + 0.1))
    assert result.error is not None
    assert result.error.type == "TimeoutError"
    assert result.error.message.startswith("step timed out after 0.")
    assert result.error.message.endswith("(the execution's deadline)")


async def test_deadline_already_passed(registry: Registry, runner: Runner) -> None:
    calls: list[int] = []
    registry.register("never", lambda ctx: calls.append(1))
    result = await runner.run(make_task("never", deadline=time.time() - 1))
    assert result.error is not None
    assert result.error.type == "TimeoutError"
    assert "deadline passed before the step started" in result.error.message
    assert calls == []


async def test_a_task_that_waited_longer_than_its_timeout_is_not_run(
    registry: Registry, runner: Runner
) -> None:
    """The service timed it out already (and may have dispatched the next attempt): a stalled
    executor that gets to it late answers at once instead of working for nothing."""
    calls: list[int] = []
    registry.register("late", lambda ctx: calls.append(1))
    result = await runner.run(make_task("late", timeout=2.0, created_at=time.time() - 3))
    assert calls == []
    assert result.error is not None
    assert result.error.type == "TimeoutError"
    assert "waiting to start" in result.error.message
    fresh = await runner.run(make_task("late", timeout=2.0, created_at=time.time() - 1))
    assert fresh.status == "completed"
    assert calls == [1]


async def test_timeout_error_raised_by_the_function_is_an_ordinary_failure(
    registry: Registry, runner: Runner
) -> None:
    def connect(ctx: StepContext) -> None:
        raise TimeoutError("connection timed out")

    registry.register("connect", connect)
    result = await runner.run(make_task("connect", timeout=5.0))
    assert result.error is not None
    assert result.error.type == "TimeoutError"
    assert result.error.message == "connection timed out"
    assert result.error.traceback is not None


# ------------------------------------------------------------------ cancellation is not swallowed


async def test_step_cancelled_propagates(registry: Registry, runner: Runner) -> None:
    def stop(ctx: StepContext) -> None:
        raise StepCancelled("stop")

    async def stop_async(ctx: StepContext) -> None:
        try:
            raise ValueError("inner")
        except Exception:  # user code's broad except cannot swallow it
            raise StepCancelled("stop") from None

    registry.register("stop", stop)
    registry.register("stop_async", stop_async)
    with pytest.raises(StepCancelled):
        await runner.run(make_task("stop"))
    with pytest.raises(StepCancelled):
        await runner.run(make_task("stop_async"))


async def test_asyncio_cancellation_propagates(registry: Registry, runner: Runner) -> None:
    started = asyncio.Event()
    contexts: list[StepContext] = []

    @registry.function
    async def forever(ctx: StepContext) -> None:
        contexts.append(ctx)
        started.set()
        await asyncio.Event().wait()

    async with asyncio.TaskGroup() as tg:
        job = tg.create_task(runner.run(make_task("forever")))
        await started.wait()
        job.cancel()
    assert job.cancelled()
    assert contexts[0].cancelled


async def test_raise_if_cancelled_lets_a_sync_function_stop(
    registry: Registry, runner: Runner
) -> None:
    stopped = threading.Event()

    @registry.function
    def cooperative(ctx: StepContext) -> None:
        try:
            for _ in range(500):
                ctx.raise_if_cancelled()
                time.sleep(0.01)
        except StepCancelled:
            stopped.set()
            raise

    result = await runner.run(make_task("cooperative", timeout=0.1))
    assert result.error is not None
    assert result.error.type == "TimeoutError"
    assert await asyncio.to_thread(stopped.wait, 2)


# ------------------------------------------------------------------ threads


async def test_at_least_32_sync_functions_run_at_once(registry: Registry, runner: Runner) -> None:
    barrier = threading.Barrier(32, timeout=5)

    @registry.function
    def meet(ctx: StepContext) -> int:
        return barrier.wait()

    results = await asyncio.gather(*(runner.run(make_task("meet")) for _ in range(32)))
    assert all(r.status == "completed" for r in results), results[0].error
    assert sorted(r.output for r in results) == list(range(32))


async def test_abandoned_calls_do_not_starve_the_pool(registry: Registry) -> None:
    runner = Runner(registry, max_threads=2)
    release = threading.Event()

    @registry.function
    def stuck(ctx: StepContext) -> None:
        release.wait(5)

    @registry.function
    def quick(ctx: StepContext) -> str:
        return "ok"

    try:
        stuck_results = await asyncio.gather(
            *(runner.run(make_task("stuck", timeout=0.05)) for _ in range(2))
        )
        assert all(r.error is not None and r.error.type == "TimeoutError" for r in stuck_results)
        result = await asyncio.wait_for(runner.run(make_task("quick")), 2)
        assert result.output == "ok"
        assert runner.pool.abandoned == 2
    finally:
        release.set()
        runner.close()


EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, time
    from magicflow.executor import Registry, Runner
    from magicflow.messages import TaskMessage

    registry = Registry()

    @registry.function
    def sleepy(ctx):
        time.sleep(10)

    async def main():
        runner = Runner(registry)
        task = TaskMessage(id="t", workflow_id="w@1", execution_id="e", step_id="s",
                           function="sleepy", input={}, attempt=1, created_at=time.time(),
                           timeout=0.2)
        result = await runner.run(task)
        print(result.error.type, flush=True)

    asyncio.run(main())
    """
)


def test_process_exits_promptly_with_an_abandoned_sync_call() -> None:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=30
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "TimeoutError"
    assert elapsed < 5, f"the process took {elapsed:.1f}s to exit"
