"""Business functions of the fault tests, run by ``magic-flow executor --handlers`` processes.

Every call first appends one line to the ledger (``MAGICFLOW_FAULTS_LEDGER``), fsync'd, so a
call made just before a SIGKILL is still counted: ``[time, execution id, step id, step type,
attempt, task id, pid]``. The side effect comes first, as in a real handler that charges a
card before it returns: a crash after it means the call happens again (at least once), and
the checker counts those duplicates from the ledger.

Each function returns the attempt, task id and pid it ran as, so the checker can tell which
call's result the service applied.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import magicflow

_LEDGER = os.environ.get("MAGICFLOW_FAULTS_LEDGER")
_fd = os.open(_LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _LEDGER else None
_lock = threading.Lock()


def _record(ctx: magicflow.StepContext) -> dict[str, Any]:
    line = [
        time.time(),
        ctx.execution_id,
        ctx.step_id,
        ctx.step_type,
        ctx.attempt,
        ctx.task_id,
        os.getpid(),
    ]
    if _fd is not None:
        with _lock:
            os.write(_fd, (json.dumps(line) + "\n").encode())
            os.fsync(_fd)
    return {"attempt": ctx.attempt, "task": ctx.task_id, "pid": os.getpid()}


def _pause(ctx: magicflow.StepContext) -> None:
    time.sleep(float(ctx.input.get("ms", 20)) / 1000)


@magicflow.function
def work(ctx: magicflow.StepContext) -> dict[str, Any]:
    """Record the call, work for ``input.ms`` milliseconds, succeed."""
    done = _record(ctx)
    _pause(ctx)
    return done


@magicflow.function
def flaky(ctx: magicflow.StepContext) -> dict[str, Any]:
    """Like ``work``, but the first attempt fails when ``input.fail`` is true."""
    done = _record(ctx)
    _pause(ctx)
    if ctx.input.get("fail") and ctx.attempt == 1:
        raise RuntimeError("declined (first attempt)")
    return done


@magicflow.function
def suicide(ctx: magicflow.StepContext) -> dict[str, Any]:
    """A poison task: the call kills its own executor process, every time."""
    _record(ctx)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")
