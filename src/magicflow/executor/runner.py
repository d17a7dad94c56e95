"""Runs one task: ``TaskMessage`` in, ``ResultMessage`` out.

Async functions run on the event loop; sync functions in a pool of daemon threads (see
``threads``), at most ``max_threads`` at once. An attempt is bounded by its timeout and by
the execution's deadline without ever blocking the loop; a sync call still running when its
time is up is abandoned (it can't be interrupted) and its outcome dropped.

Whatever the function does, ``run`` returns a result: an exception, a timeout, an unknown
function or an output that is not JSON make a failed one. Only cancellation propagates
(``asyncio.CancelledError``, and ``StepCancelled`` raised by the function): the caller decides
what a cancelled task means.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import logging
import time
import traceback
from pathlib import Path
from typing import Any, Final

import msgspec

from magicflow.errors import NonRetryableError
from magicflow.executor.context import CancelFlag, StepContext
from magicflow.executor.registry import Handler, Registry
from magicflow.executor.threads import DaemonThreadPool
from magicflow.messages import ErrorInfo, ResultMessage, TaskMessage

logger = logging.getLogger(__name__)

MAX_TRACEBACK_CHARS: Final = 8000
MAX_MESSAGE_CHARS: Final = 4000
_INTERNAL_DIRS: Final = (str(Path(__file__).parent), str(Path(asyncio.__file__).parent))


class _DeadlinePassed(Exception):
    pass


class Runner:
    """Runs tasks against a registry. ``close()`` lets the idle pool threads go."""

    def __init__(
        self,
        registry: Registry,
        *,
        max_threads: int = 32,
        executor_id: str | None = None,
    ) -> None:
        self.registry = registry
        self.executor_id = executor_id
        self._pool = DaemonThreadPool(max_threads)
        # a sync call's timeout starts when a thread is free for it, not while it queues
        self._thread_slots = asyncio.Semaphore(max_threads)

    @property
    def pool(self) -> DaemonThreadPool:
        return self._pool

    def close(self) -> None:
        self._pool.shutdown()

    async def run(self, task: TaskMessage, *, cancelled: CancelFlag | None = None) -> ResultMessage:
        """Run ``task``; ``cancelled`` is set when the result stops mattering (see StepContext)."""
        started = time.monotonic()
        step_id = task.step_id if task.step_type == "function" else None
        handler = self.registry.lookup(task.function, step_id)
        if handler is None:
            return self._failed(task, started, self._not_found(task.function))
        now = time.time()
        limit, bounded_by_deadline = _time_limit(task, now)
        if limit is not None and limit <= 0:
            message = "the execution's deadline passed before the step started"
            return self._failed(task, started, ErrorInfo("TimeoutError", message))
        if task.timeout is not None and now - task.created_at >= task.timeout:
            # the service timed this attempt out already (its timer runs from the dispatch):
            # running it would only hold a slot that a newer attempt may be waiting for
            waited = round(now - task.created_at, 3)
            message = f"step timed out after {task.timeout}s waiting to start ({waited}s queued)"
            return self._failed(task, started, ErrorInfo("TimeoutError", message))
        cancel_event = cancelled if cancelled is not None else CancelFlag()
        ctx = StepContext.from_task(
            task,
            deadline=None if limit is None else time.time() + limit,
            cancelled=cancel_event,
        )
        try:
            output = await self._call(handler, ctx, limit)
        except TimeoutError as exc:
            if not isinstance(exc.__cause__, _DeadlinePassed):
                return self._failed(task, started, _error_info(exc))
            cancel_event.set()
            message = f"step timed out after {round(limit or 0.0, 3)}s"
            if bounded_by_deadline:
                message += " (the execution's deadline)"
            return self._failed(task, started, ErrorInfo("TimeoutError", message))
        except Exception as exc:
            return self._failed(task, started, _error_info(exc))
        except BaseException:
            cancel_event.set()
            raise
        try:
            msgspec.json.encode(output)
        except (TypeError, ValueError, OverflowError) as exc:
            message = (
                f"the output of {task.function!r} is not JSON-serialisable: {exc} "
                "(return dicts, lists, strings, numbers, booleans or None)"
            )
            info = ErrorInfo("SerializationError", message, non_retryable=True)
            return self._failed(task, started, info)
        return ResultMessage(
            task_id=task.id,
            execution_id=task.execution_id,
            step_id=task.step_id,
            status="completed",
            output=output,
            duration=time.monotonic() - started,
            completed_at=time.time(),
            attempt=task.attempt,
            item_index=task.item_index,
            executor_id=self.executor_id,
        )

    async def _call(self, handler: Handler, ctx: StepContext, limit: float | None) -> Any:
        if handler.is_async:
            if limit is None:
                return await handler.fn(ctx)
            return await _bounded(handler.fn(ctx), limit)
        async with self._thread_slots:
            future = self._pool.submit(handler.fn, ctx)
            output = await (future if limit is None else _bounded(future, limit))
        if inspect.isawaitable(output):  # a sync callable that returned a coroutine
            output = await (output if limit is None else _bounded(output, limit))
        return output

    def _not_found(self, function: str) -> ErrorInfo:
        names = self.registry.names()
        message = f"no function {function!r} is registered on this executor"
        close = difflib.get_close_matches(function, names, n=3)
        if close:
            message += " (did you mean " + " or ".join(repr(n) for n in close) + "?)"
        if names:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            message += f"; registered: {shown}"
        else:
            message += "; no functions are registered"
        return ErrorInfo("FunctionNotFound", message, non_retryable=True)

    def _failed(self, task: TaskMessage, started: float, error: ErrorInfo) -> ResultMessage:
        return failed_result(
            task, error, duration=time.monotonic() - started, executor_id=self.executor_id
        )


def failed_result(
    task: TaskMessage, error: ErrorInfo, *, duration: float = 0.0, executor_id: str | None = None
) -> ResultMessage:
    """A failed result for ``task`` (``error.step_id`` is filled in)."""
    return ResultMessage(
        task_id=task.id,
        execution_id=task.execution_id,
        step_id=task.step_id,
        status="failed",
        error=msgspec.structs.replace(error, step_id=task.step_id),
        duration=duration,
        completed_at=time.time(),
        attempt=task.attempt,
        item_index=task.item_index,
        executor_id=executor_id,
    )


def _time_limit(task: TaskMessage, now: float) -> tuple[float | None, bool]:
    """Seconds this attempt may run, and whether the execution's deadline is what bounds it."""
    limit = task.timeout
    if task.deadline is not None:
        remaining = task.deadline - now
        if limit is None or remaining < limit:
            return remaining, True
    return limit, False


async def _bounded(awaitable: Any, limit: float) -> Any:
    """Await with a time limit; our expiry is a TimeoutError caused by ``_DeadlinePassed``
    (a TimeoutError the function raises itself is an ordinary failure)."""
    timeout = asyncio.timeout(limit)
    try:
        async with timeout:
            return await awaitable
    except TimeoutError:
        if timeout.expired():
            raise TimeoutError from _DeadlinePassed()
        raise


def _error_info(exc: BaseException) -> ErrorInfo:
    non_retryable = isinstance(exc, NonRetryableError) or bool(getattr(exc, "non_retryable", False))
    return ErrorInfo(
        type=type(exc).__name__,
        message=_trim(str(exc)) or type(exc).__name__,
        non_retryable=non_retryable,
        traceback=format_traceback(exc),
    )


def _trim(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 15] + " ... (trimmed)"


def format_traceback(exc: BaseException, limit: int = MAX_TRACEBACK_CHARS) -> str:
    """The exception's traceback without the executor's and asyncio's frames; when longer
    than ``limit`` characters, its innermost end is kept."""
    te = traceback.TracebackException.from_exception(exc)
    te.stack = traceback.StackSummary.from_list(
        [frame for frame in te.stack if not frame.filename.startswith(_INTERNAL_DIRS)]
    )
    text = "".join(te.format())
    if len(text) > limit:
        head = "Traceback (most recent call last):\n  ...\n"
        text = head + text[-(limit - len(head)) :]
    return text
