"""The dependency graph of a workflow: topological order, cycles, dependents and ancestors.

Steps are named by id; ``deps[id]`` lists the ids a step depends on (only ids that exist).
Everything here is iterative, so a 1,000-step chain needs no deep recursion.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

__all__ = ["Graph", "resolve_graph"]


class Graph:
    """A resolved DAG. ``order`` is topological, ties kept in file order; ``cycles`` lists
    each dependency cycle found (``[a, b, a]``: a depends on b, b on a), empty for a DAG."""

    __slots__ = ("_ancestors", "cycles", "dependents", "deps", "index", "order")

    def __init__(
        self,
        order: list[str],
        cycles: list[list[str]],
        deps: Mapping[str, Sequence[str]],
        dependents: dict[str, list[str]],
        index: dict[str, int],
    ) -> None:
        self.order = order
        self.cycles = cycles
        self.deps = deps
        self.dependents = dependents
        self.index = index
        self._ancestors: dict[str, int] | None = None

    def depends_on(self, step: str, other: str) -> bool:
        """Whether ``step`` depends on ``other``, directly or transitively."""
        if self._ancestors is None:
            self._ancestors = self._ancestor_bits()
        bits = self._ancestors.get(step)
        position = self.index.get(other)
        return bits is not None and position is not None and bool(bits >> position & 1)

    def in_cycle(self, step: str) -> bool:
        """Whether ``step`` could not be ordered (it is in, or depends on, a cycle)."""
        if self._ancestors is None:
            self._ancestors = self._ancestor_bits()
        return step in self.index and step not in self._ancestors

    def _ancestor_bits(self) -> dict[str, int]:
        """Each step's transitive dependencies as a bit set over file positions."""
        bits: dict[str, int] = {}
        for step in self.order:  # steps in a cycle get no entry: their scope is unknown
            mask = 0
            for dep in self.deps.get(step, ()):
                mask |= (1 << self.index[dep]) | bits.get(dep, 0)
            bits[step] = mask
        return bits

    @property
    def roots(self) -> list[str]:
        return [step for step in self.order if not self.deps.get(step)]

    @property
    def leaves(self) -> list[str]:
        return [step for step in self.order if not self.dependents.get(step)]


def resolve_graph(ids: Sequence[str], deps: Mapping[str, Sequence[str]]) -> Graph:
    """Order ``ids`` (unique) so every step comes after what it depends on."""
    index = {step: position for position, step in enumerate(ids)}
    dependents: dict[str, list[str]] = {step: [] for step in ids}
    waiting = {step: 0 for step in ids}
    for step in ids:
        for dep in deps.get(step, ()):
            dependents[dep].append(step)
            waiting[step] += 1
    ready = [index[step] for step in ids if waiting[step] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        step = ids[heapq.heappop(ready)]
        order.append(step)
        for child in dependents[step]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, index[child])
    cycles: list[list[str]] = []
    if len(order) < len(ids):
        stuck = {step for step in ids if waiting[step] > 0}
        cycles = _cycles(ids, deps, stuck)
    return Graph(order, cycles, deps, dependents, index)


def _cycles(
    ids: Sequence[str], deps: Mapping[str, Sequence[str]], stuck: set[str]
) -> list[list[str]]:
    """One cycle per strongly connected component among the steps that could not be ordered."""
    cycles: list[list[str]] = []
    for component in _components(ids, deps, stuck):
        start = next(step for step in ids if step in component)
        if len(component) == 1 and start not in deps.get(start, ()):
            continue  # stuck only because it depends on a cycle
        cycles.append(_shortest_cycle(start, deps, component))
    return cycles


def _components(
    ids: Sequence[str], deps: Mapping[str, Sequence[str]], nodes: set[str]
) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively."""
    number: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in ids:
        if root not in nodes or root in number:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, edge = work.pop()
            if edge == 0:
                number[node] = low[node] = len(number)
                stack.append(node)
                on_stack.add(node)
            edges = [d for d in deps.get(node, ()) if d in nodes]
            if edge < len(edges):
                work.append((node, edge + 1))
                nxt = edges[edge]
                if nxt not in number:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], number[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == number[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
    return found


def _shortest_cycle(
    start: str, deps: Mapping[str, Sequence[str]], component: set[str]
) -> list[str]:
    """The shortest path start -> ... -> start along depends_on edges inside ``component``."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for dep in deps.get(node, ()):
                if dep == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if dep in component and dep not in previous:
                    previous[dep] = node
                    following.append(dep)
        frontier = following
    return [start, start]  # pragma: no cover - a component always holds a cycle
