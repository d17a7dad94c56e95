"""What ``magic-flow run`` shows a person: live step progress in a terminal, then a table."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from magicflow.dsl import WorkflowPlan

if TYPE_CHECKING:
    from magicflow.service.engine import Engine

_STYLES = {
    "completed": "green",
    "failed": "bold red",
    "timed_out": "red",
    "cancelled": "yellow",
    "skipped": "dim",
    "compensated": "magenta",
    "running": "cyan",
    "waiting": "cyan",
    "scheduled": "cyan",
    "pending": "dim",
    "paused": "yellow",
}
_REFRESH = 0.2  # seconds between two redraws of the live view


def _duration(step: dict[str, Any]) -> str:
    started, ended = step.get("started_at"), step.get("completed_at")
    if not started or not ended:
        return ""
    seconds = (_parse(ended) - _parse(started)).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _status(status: str) -> Text:
    return Text(status, style=_STYLES.get(status, ""))


class Progress:
    def __init__(self, plan: WorkflowPlan, *, enabled: bool) -> None:
        self.plan = plan
        self.enabled = enabled
        self.console = Console(highlight=False)

    def _table(self, document: dict[str, Any], title: str) -> Table:
        table = Table(title=title, title_justify="left")
        table.add_column("step")
        table.add_column("status")
        table.add_column("attempts", justify="right")
        table.add_column("duration", justify="right")
        for step_id, step in document["steps"].items():
            label = step["status"] + (" (fallback)" if step.get("fallback_used") else "")
            table.add_row(
                step_id,
                Text(label, style=_STYLES.get(step["status"], "")),
                str(step["attempts"]),
                _duration(step),
            )
        return table

    @asynccontextmanager
    async def watching(self, engine: Engine, execution_id: str) -> AsyncIterator[None]:
        """Redraw the steps' status while the body runs (only in an interactive terminal)."""
        if not (self.enabled and self.console.is_terminal):
            yield
            return
        title = f"{self.plan.name} {self.plan.version} · {execution_id}"
        with Live(console=self.console, transient=True, auto_refresh=False) as live:

            async def redraw() -> None:
                while True:
                    document = await engine.get(execution_id)
                    live.update(self._table(document, title), refresh=True)
                    await asyncio.sleep(_REFRESH)

            task = asyncio.create_task(redraw())
            try:
                yield
            finally:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    def summary(self, document: dict[str, Any]) -> None:
        """The final table of steps, the status, and the output or the error."""
        workflow = document["workflow"]
        title = f"{workflow['name']} {workflow['version']} · {document['execution_id']}"
        parts: list[Any] = [self._table(document, title)]
        parts.append(Text.assemble("status: ", _status(document["status"])))
        if document.get("error"):
            error = document["error"]
            where = f" in step {error['step_id']}" if error.get("step_id") else ""
            parts.append(Text(f"error{where}: {error['type']}: {error['message']}", style="red"))
        parts.append(Text("output: " + json.dumps(document.get("output"), indent=2)))
        self.console.print(Group(*parts))
