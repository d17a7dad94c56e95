"""Cron schedules: start an execution of a workflow at each tick of a cron expression (UTC).

Each schedule keeps its next tick in the store. The scheduler (one per service instance, while
entered: ``async with``) looks at the schedules whose next tick has come, starts the execution
of that tick with the idempotency key ``schedule:<id>:<tick, ISO 8601>``, then moves the next
tick on with a compare-and-set. Several instances may fire the same tick, and a crash between
the start and the move fires it again: the store's idempotency check makes every one of those
starts return the same execution, so each tick runs at most once.

After downtime (more than one tick due at once, or a tick more than ``grace`` seconds late)
the ``missed`` policy of the schedule decides: ``skip`` runs none of the missed ticks (the next
run is the next tick in the future); ``run_once`` runs one catch-up execution, for the latest
missed tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec
from croniter import croniter

from magicflow.errors import MagicFlowError
from magicflow.service.background import cancel_and_wait
from magicflow.stores.base import ScheduleRecord

if TYPE_CHECKING:
    from magicflow.service.engine import Engine

logger = logging.getLogger(__name__)

_decode_input = msgspec.json.Decoder(Any).decode


def valid_cron(expression: str) -> str | None:
    """Why ``expression`` is not a five-field cron expression, or None."""
    if len(expression.split()) != 5:
        return "a cron expression has five fields: minute hour day-of-month month day-of-week"
    if not croniter.is_valid(expression):
        return f"not a valid cron expression: {expression!r}"
    return None


def next_tick(expression: str, after: float) -> float:
    """The first tick of ``expression`` (UTC) strictly after ``after`` (epoch seconds)."""
    start = datetime.fromtimestamp(after, UTC)
    return float(croniter(expression, start).get_next(float))


def latest_tick(expression: str, at: float) -> float:
    """The last tick of ``expression`` at ``at`` or before."""
    start = datetime.fromtimestamp(at, UTC)
    tick = float(croniter(expression, start).get_prev(float))
    following = next_tick(expression, tick)
    return following if following <= at else tick


def tick_key(schedule_id: str, tick: float) -> str:
    """The idempotency key of one tick of a schedule."""
    iso = datetime.fromtimestamp(tick, UTC).isoformat().replace("+00:00", "Z")
    return f"schedule:{schedule_id}:{iso}"


def plan_tick(record: ScheduleRecord, now: float, grace: float) -> tuple[float | None, float]:
    """``(tick to fire or None, next run)`` for a schedule whose next run is due at ``now``."""
    following = next_tick(record.cron, now)
    latest = latest_tick(record.cron, now)
    on_time = latest == record.next_run and now - latest <= grace
    if on_time or record.missed == "run_once":
        return latest, following
    return None, following


class Scheduler:
    """Fires the due ticks of every schedule while entered; ``run_due`` is one pass."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        interval: float = 1.0,
        grace: float = 60.0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.interval = interval
        self.grace = grace
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Scheduler:
        self._task = asyncio.create_task(self._loop(), name="magicflow-scheduler")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def wake(self) -> None:
        """Look at the schedules now (one was added or changed)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_due()
            except Exception:
                logger.exception("scheduler: cannot read the schedules; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def run_due(self) -> list[str]:
        """Fire every due tick now; the ids of the executions started (or found started)."""
        now = self.clock()
        started = []
        for record in await self.engine.store.list_schedules():
            if not record.enabled or record.next_run > now:
                continue
            tick, following = plan_tick(record, now, self.grace)
            if tick is not None:
                execution_id = await self._fire(record, tick)
                if execution_id is not None:
                    started.append(execution_id)
            await self.engine.store.advance_schedule(record.id, record.next_run, following)
        return started

    async def _fire(self, record: ScheduleRecord, tick: float) -> str | None:
        try:
            return await self.engine.start(
                record.workflow,
                _decode_input(record.input),
                version=record.version,
                idempotency_key=tick_key(record.id, tick),
            )
        except MagicFlowError as exc:
            logger.warning(
                "schedule %s of %s: cannot start the tick's execution: %s",
                record.id,
                record.workflow,
                exc,
                extra={"schedule_id": record.id, "workflow": record.workflow},
            )
            return None
