"""Business functions of the scenario workflows, shared by the API and the CLI suites.

Loaded by ``magic-flow run --handlers <this file>`` (the module-level ``registry`` is picked
up) and by the API tests (which import it). Every function records its call as one JSON line
in ``<dir>/calls.jsonl``, ``dir`` being a directory named in the step's input, so that a test
can tell which functions ran, how often, in which order, with what, and when. Nothing here
keeps state between processes except those files.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

from magicflow import NonRetryableError, Registry, StepContext

registry = Registry()

_lock = threading.Lock()
_running: dict[str, int] = {}  # gauge: calls running now, by execution


class PaymentDeclined(Exception):
    """A business error that scenario workflows list in ``non_retryable_errors``."""


def _args(ctx: StepContext) -> dict[str, Any]:
    if not isinstance(ctx.input, dict) or "dir" not in ctx.input:
        raise NonRetryableError(f"step {ctx.step_id!r}: the input has no 'dir': {ctx.input!r}")
    return ctx.input


def _public(data: Any) -> Any:
    """The input without the bookkeeping ``dir``."""
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k != "dir"}
    return data


def note(ctx: StepContext, event: str = "call", **extra: Any) -> None:
    """Append one line about this call to ``<dir>/calls.jsonl`` (if the input names a dir)."""
    if not isinstance(ctx.input, dict) or "dir" not in ctx.input:
        return
    record = {
        "fn": ctx.function,
        "step": ctx.step_id,
        "type": ctx.step_type,
        "attempt": ctx.attempt,
        "item": ctx.item_index,
        "execution": ctx.execution_id,
        "workflow": ctx.workflow_name,
        "deadline": None if ctx.deadline is None else ctx.deadline.timestamp(),
        "event": event,
        "input": _public(ctx.input),
        "t": time.time(),
        **extra,
    }
    line = json.dumps(record) + "\n"
    with _lock, open(Path(ctx.input["dir"]) / "calls.jsonl", "a", encoding="utf-8") as out:
        out.write(line)


@registry.function
async def echo(ctx: StepContext) -> Any:
    """Returns its input (without ``dir``)."""
    note(ctx)
    return _public(ctx.input)


@registry.function
def echo_sync(ctx: StepContext) -> Any:
    """``echo`` as a sync function (runs in the executor's thread pool)."""
    note(ctx)
    return _public(ctx.input)


@registry.function
async def flaky(ctx: StepContext) -> dict[str, int]:
    """Fails its first ``failures`` attempts, then returns the attempt that succeeded."""
    note(ctx)
    if ctx.attempt <= int(_args(ctx).get("failures", 0)):
        raise RuntimeError(f"attempt {ctx.attempt} failed on purpose")
    return {"attempt": ctx.attempt}


@registry.function
async def fail(ctx: StepContext) -> None:
    """Always fails: ``error`` is ``plain`` (RuntimeError), ``declined`` (PaymentDeclined) or
    ``non_retryable`` (NonRetryableError)."""
    note(ctx)
    kind = _args(ctx).get("error", "plain")
    if kind == "declined":
        raise PaymentDeclined("card declined")
    if kind == "non_retryable":
        raise NonRetryableError("this will never work")
    raise RuntimeError(f"{ctx.step_id} failed")


@registry.function
async def unserialisable(ctx: StepContext) -> dict[str, Any]:
    """Returns something that is not JSON."""
    note(ctx)
    return {"handle": object()}


@registry.function
async def unstable(ctx: StepContext) -> dict[str, bool]:
    """Fails unless ``<dir>/healthy`` exists (a circuit breaker's function)."""
    note(ctx)
    if not (Path(_args(ctx)["dir"]) / "healthy").exists():
        raise ConnectionError("the service is down")
    return {"healthy": True}


@registry.function
async def when_healthy(ctx: StepContext) -> str:
    """Fails (retryably) until ``<dir>/healthy`` exists."""
    note(ctx)
    if not (Path(_args(ctx)["dir"]) / "healthy").exists():
        raise RuntimeError("not healthy yet")
    return "healthy"


def _seconds(ctx: StepContext) -> float:
    """``seconds``, for the attempts listed in ``slow_attempts`` (all when absent), else 0."""
    args = _args(ctx)
    slow = args.get("slow_attempts")
    if slow is not None and ctx.attempt not in slow:
        return 0.0
    return float(args.get("seconds", 0))


@registry.function
async def nap(ctx: StepContext) -> dict[str, Any]:
    """Sleeps ``seconds`` (async, so it can be cancelled: that is recorded too)."""
    seconds = _seconds(ctx)
    note(ctx, "start")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        note(ctx, "cancelled")
        raise
    note(ctx, "end")
    return {"slept": seconds, "attempt": ctx.attempt}


@registry.function
def nap_sync(ctx: StepContext) -> dict[str, Any]:
    """Sleeps ``seconds`` in a thread: it can't be interrupted, only abandoned."""
    seconds = _seconds(ctx)
    note(ctx, "start")
    time.sleep(seconds)
    note(ctx, "end")
    return {"slept": seconds, "attempt": ctx.attempt}


def _arrive(ctx: StepContext) -> tuple[Path, list[str], float]:
    """Enter the barrier ``room`` as ``name`` (default: the step id)."""
    args = _args(ctx)
    room = Path(args["dir"]) / args.get("room", "barrier")
    room.mkdir(exist_ok=True)
    (room / str(args.get("name", ctx.step_id))).touch()
    note(ctx, "arrived")
    return room, [str(peer) for peer in args["peers"]], time.monotonic() + args.get("patience", 5)


def _all_there(ctx: StepContext, room: Path, peers: list[str], give_up: float) -> bool:
    if all((room / peer).exists() for peer in peers):
        note(ctx, "met")
        return True
    if time.monotonic() > give_up:
        missing = sum(1 for peer in peers if not (room / peer).exists())
        raise NonRetryableError(f"{ctx.step_id}: {missing} peer(s) never came: not parallel")
    return False


@registry.function
async def meet(ctx: StepContext) -> dict[str, Any]:
    """A barrier: arrives, then waits until every one of ``peers`` has arrived, so it only
    returns if they all run at the same time; it gives up after ``patience`` seconds."""
    room, peers, give_up = _arrive(ctx)
    while not _all_there(ctx, room, peers, give_up):  # noqa: ASYNC110 - peers: files, any process
        await asyncio.sleep(0.005)
    return {"met": sorted(peers)}


@registry.function
def meet_sync(ctx: StepContext) -> dict[str, Any]:
    """``meet`` as a sync function: each waiting call holds a thread of the pool."""
    room, peers, give_up = _arrive(ctx)
    while not _all_there(ctx, room, peers, give_up):
        time.sleep(0.005)
    return {"met": len(peers)}


@registry.function
async def gauge(ctx: StepContext) -> dict[str, Any]:
    """Counts the calls of its execution running at once; returns how many ran when it
    started (itself included), after sleeping ``seconds``."""
    key = ctx.execution_id
    _running[key] = running = _running.get(key, 0) + 1
    note(ctx, "start", running=running)
    try:
        await asyncio.sleep(_seconds(ctx))
    finally:
        _running[key] -= 1
    note(ctx, "end")
    args = _args(ctx)
    return {"item": args.get("item"), "index": args.get("index"), "running": running}


class Step(StrEnum):
    """A generated step constant (``magic-flow generate types`` makes these)."""

    TAILORED = "tailored"


def tailored(ctx: StepContext) -> dict[str, Any]:
    """Registered for the step ``tailored`` itself, whatever function the step names."""
    note(ctx)
    return {"tailored": True, "function": ctx.function}


registry.register(Step.TAILORED, tailored)


@registry.function
async def undo(ctx: StepContext) -> dict[str, Any]:
    """A compensation: records what it undoes."""
    note(ctx)
    return {"undone": _public(ctx.input)}
