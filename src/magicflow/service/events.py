"""Execution event streams (server-sent events): what the store recorded, then what commits.

The store keeps each transition's lifecycle events keyed by the version it gave the execution
(``Store.read_events``); the driver calls its listeners after each commit. A stream subscribes
first, then reads the store from where the client is (``after``), and reads again each time
the listener says that execution moved: every event comes from the store, in version order,
none missed between the replay and the live part, none sent twice. The stream ends once the
execution has ended and its last events were sent (or when the server shuts down).

Each event: ``id: <version>`` (on the last event of each transition; a client that reconnects
with ``Last-Event-ID`` resumes after it), ``event: <kind>`` (``execution.started``,
``step.completed``, ...), ``data: {"execution_id", "version", "at", "kind", "step_id", "data"}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from magicflow.engine.model import Emit, ExecutionState
from magicflow.service.state import timestamp
from magicflow.stores.base import TERMINAL_STATUSES, Store

_END = "stream.end"
_decode_state = msgspec.json.Decoder(ExecutionState).decode


class EventHub:
    """Wakes the streams of an execution when one of its transitions commits
    (``hub.notify`` is the driver's listener)."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Event]] = {}
        self.closed = asyncio.Event()

    def notify(self, execution_id: str, emits: list[Emit]) -> None:
        for wake in self._subscribers.get(execution_id, ()):
            wake.set()

    def subscribe(self, execution_id: str) -> asyncio.Event:
        wake = asyncio.Event()
        self._subscribers.setdefault(execution_id, set()).add(wake)
        return wake

    def unsubscribe(self, execution_id: str, wake: asyncio.Event) -> None:
        subscribers = self._subscribers.get(execution_id)
        if subscribers is not None:
            subscribers.discard(wake)
            if not subscribers:
                del self._subscribers[execution_id]

    def watching(self, execution_id: str) -> int:
        """How many streams of that execution are open."""
        return len(self._subscribers.get(execution_id, ()))

    def close(self) -> None:
        """End every stream (the server is shutting down)."""
        self.closed.set()
        for subscribers in self._subscribers.values():
            for wake in subscribers:
                wake.set()


def _frame(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _status(store: Store, execution_id: str) -> str | None:
    found = await store.load(execution_id)
    return None if found is None else str(_decode_state(found[1]).status)


async def stream(
    store: Store,
    hub: EventHub,
    execution_id: str,
    after: int = 0,
    heartbeat: float = 15.0,
    poll: float | None = None,
) -> AsyncIterator[str]:
    """The SSE frames of an execution's events with version > ``after``, then live ones.
    ``poll``: also read the store that often (seconds), for an execution that another service
    instance may decide (its commits don't wake this one's hub)."""
    wake = hub.subscribe(execution_id)
    clock = asyncio.get_running_loop().time
    try:
        yield ": stream of " + execution_id + "\n\n"
        quiet_since = clock()
        while True:
            wake.clear()
            async for frame, version in _replay(store, execution_id, after):
                after, quiet_since = version, clock()
                yield frame
            status = await _status(store, execution_id)
            if status in TERMINAL_STATUSES:
                async for frame, version in _replay(store, execution_id, after):
                    after = version
                    yield frame
                yield _frame(_END, {"execution_id": execution_id, "status": status})
                return
            if hub.closed.is_set():
                return
            try:
                await asyncio.wait_for(wake.wait(), min(heartbeat, poll or heartbeat))
            except TimeoutError:
                if clock() - quiet_since >= heartbeat:
                    quiet_since = clock()
                    yield ": keep-alive\n\n"
    finally:
        hub.unsubscribe(execution_id, wake)


async def _replay(store: Store, execution_id: str, after: int) -> AsyncIterator[tuple[str, int]]:
    while True:
        records = await store.read_events(execution_id, after=after, limit=100)
        if not records:
            return
        for record in records:
            emits: list[dict[str, Any]] = json.loads(record.body)
            for index, emit in enumerate(emits):
                data = {
                    "execution_id": execution_id,
                    "version": record.version,
                    "at": timestamp(record.at),
                    "kind": emit.get("kind"),
                    "step_id": emit.get("step_id"),
                    "data": emit.get("data", {}),
                }
                last = index == len(emits) - 1
                yield (
                    _frame(str(emit.get("kind")), data, record.version if last else None),
                    (record.version),
                )
            after = record.version
