"""The driver's in-memory view of the durable timers: a heap ordered by due time.

The store holds the timers (rows committed with the transitions that set them); this heap
mirrors them so the driver can sleep exactly until the next one is due, instead of polling.
Cancelled or moved timers are dropped lazily when they reach the top of the heap.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

TimerId = tuple[str, str]  # (execution_id, key)


class TimerHeap:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, str]] = []
        self._live: dict[TimerId, float] = {}
        self._tie = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def set(self, execution_id: str, key: str, due: float) -> None:
        self._live[(execution_id, key)] = due
        heapq.heappush(self._heap, (due, next(self._tie), execution_id, key))

    def cancel(self, execution_id: str, key: str) -> None:
        self._live.pop((execution_id, key), None)

    def due_of(self, execution_id: str, key: str) -> float | None:
        return self._live.get((execution_id, key))

    def drop(self, execution_ids: Callable[[str], bool]) -> None:
        """Forget the timers of the executions ``execution_ids`` selects."""
        for timer in [t for t in self._live if execution_ids(t[0])]:
            del self._live[timer]

    def _prune(self) -> None:
        heap, live = self._heap, self._live
        while heap:
            due, _, execution_id, key = heap[0]
            if live.get((execution_id, key)) == due:
                return
            heapq.heappop(heap)

    def next_due(self) -> float | None:
        self._prune()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[TimerId]:
        """Timers due at ``now`` or before, earliest first; they leave the heap."""
        fired: list[TimerId] = []
        heap, live = self._heap, self._live
        while True:
            self._prune()
            if not heap or heap[0][0] > now:
                return fired
            _, _, execution_id, key = heapq.heappop(heap)
            del live[(execution_id, key)]
            fired.append((execution_id, key))
