"""What a fault run did, counted from the store's final state, its lifecycle events and the
handlers' ledger; and the assertions every run must pass.

Per run:

- **lost**: an execution whose start was acknowledged (201) and that the store does not hold;
- **stuck**: one still live (not in a terminal status) when the run ended;
- **wrong**: one that ended otherwise than its input says it must, a step whose attempts are
  not what its retry policy gives (``expect``), or a call of an attempt the state never
  counted (a task published from a transition that did not commit);
- **twice**: a step result applied more than once, or a step decided twice: a step with more
  than one ``step.completed`` event, an output that is not the one of the step's last attempt
  (a late result of an earlier attempt applied over it), or one attempt dispatched under two
  task ids (two instances, or a timer that fired twice, made the same decision);
- **outbox**: task messages left in the store's outbox after the run;
- **duplicates**: calls of a task beyond the first, from the ledger (allowed: delivery is at
  least once; reported);
- **recovery**: seconds from a fault to the first transition committed after it (the worst
  over the run's faults), and from the last fault to the last transition of the run.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from magicflow.engine.model import ExecutionState

from .harness import Cluster, open_store

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}

# (input, step id, state) -> the attempts the policy gives, or None when it is not fixed
Expect = Callable[[Any, str, Any], int | None]
REPORTS: list[str] = []  # one line per run, printed at the end of the session


@dataclass
class Ledger:
    """The handlers' calls: ``[time, execution, step, type, attempt, task, pid]`` per line."""

    calls: list[list[Any]]

    @classmethod
    def read(cls, path: Path) -> Ledger:
        if not path.exists():
            return cls([])
        return cls([json.loads(line) for line in path.read_text().splitlines() if line])

    def attempts(self) -> dict[tuple[str, str], set[int]]:
        seen: dict[tuple[str, str], set[int]] = defaultdict(set)
        for _, execution_id, step_id, step_type, attempt, _, _ in self.calls:
            if step_type == "function":
                seen[(execution_id, step_id)].add(attempt)
        return seen

    def tasks(self) -> Counter[str]:
        return Counter(call[5] for call in self.calls)

    def duplicates(self) -> int:
        return len(self.calls) - len(self.tasks())

    def decided_twice(self) -> list[tuple[str, str, str, int]]:
        """Step attempts dispatched under two task ids: the decision to run the attempt was
        made twice (by two instances, or by a timer that fired twice)."""
        ids: dict[tuple[str, str, str, int], set[str]] = defaultdict(set)
        for _, execution_id, step_id, step_type, attempt, task_id, _ in self.calls:
            ids[(execution_id, step_id, step_type, attempt)].add(task_id)
        return [key for key, tasks in ids.items() if len(tasks) > 1]


@dataclass
class Report:
    scenario: str
    pair: str
    executions: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    stuck: int = 0
    wrong: int = 0
    twice: int = 0
    outbox: int = 0
    calls: int = 0
    duplicates: int = 0
    faults: int = 0
    first_progress: float | None = None
    all_done: float | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        def secs(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}s"

        extra = "".join(f" {k}={v}" for k, v in self.extra.items())
        return (
            f"{self.scenario} [{self.pair}]: executions={self.executions} "
            f"completed={self.completed} failed={self.failed} lost={self.lost} "
            f"twice={self.twice} wrong={self.wrong} stuck={self.stuck} outbox={self.outbox} "
            f"calls={self.calls} duplicates={self.duplicates} faults={self.faults} "
            f"recovery={secs(self.first_progress)}/{secs(self.all_done)} "
            f"run={self.seconds:.0f}s{extra}"
        )

    def publish(self) -> None:
        line = self.line()
        REPORTS.append(line)
        print(line)

    def assert_ok(self, min_completed: int) -> None:
        """Nothing lost, stuck, wrong or applied twice, no outbox left, and enough done."""
        problems = self.notes[:10]
        for name in ("lost", "stuck", "wrong", "twice", "outbox"):
            if getattr(self, name):
                problems.append(f"{name}={getattr(self, name)}")
        if self.completed < min_completed:
            problems.append(f"only {self.completed} completed (at least {min_completed} needed)")
        assert not problems, f"{self.line()}\n" + "\n".join(problems)


def _emits(body: bytes) -> list[dict[str, Any]]:
    decoded = json.loads(body)
    return decoded if isinstance(decoded, list) else []


async def check(
    cluster: Cluster,
    report: Report,
    started: Mapping[str, str],
    inputs: Mapping[str, Any],
    expect_status: Callable[[Any], str],
    expect: Expect,
    began: float,
) -> Report:
    """Count everything the module says, for the executions ``started`` (key -> id)."""
    ledger = Ledger.read(cluster.ledger)
    seen = ledger.attempts()
    report.calls, report.duplicates = len(ledger.calls), ledger.duplicates()
    for execution_id, step_id, step_type, attempt in ledger.decided_twice():
        report.twice += 1
        report.notes.append(f"{execution_id}/{step_id} ({step_type}) attempt {attempt}: two tasks")
    report.executions = len(inputs)
    report.faults = len(cluster.faults)
    last_fault = cluster.faults[-1][1] if cluster.faults else None
    store = await open_store(cluster.store_url)
    try:
        loaded = await store.load_many(list(started.values()))
        report.lost = len(inputs) - len(started)  # never acknowledged within the run
        transitions: list[float] = []
        for key, execution_id in started.items():
            if execution_id not in loaded:
                report.lost += 1
                report.notes.append(f"{key}: execution {execution_id} is not in the store")
                continue
            state = msgspec.json.decode(loaded[execution_id][1], type=ExecutionState)
            events = await store.read_events(execution_id, limit=10_000)
            transitions += [event.at for event in events]
            _check_execution(report, key, inputs[key], state, events, seen, expect_status, expect)
        report.outbox = len(await store.pending_outbox(10_000))
    finally:
        await store.close()
    if last_fault is not None:  # the worst fault: the longest wait for a transition after it
        waits = [min((t for t in transitions if t >= at), default=None) for _, at in cluster.faults]
        firsts = [t - at for t, (_, at) in zip(waits, cluster.faults, strict=True) if t is not None]
        report.first_progress = max(firsts) if firsts else None
        after = [t for t in transitions if t >= last_fault]
        report.all_done = max(after) - last_fault if after else None
    report.seconds = time.time() - began
    return report


def _check_execution(
    report: Report,
    key: str,
    value: Any,
    state: ExecutionState,
    events: list[Any],
    seen: dict[tuple[str, str], set[int]],
    expect_status: Callable[[Any], str],
    expect: Expect,
) -> None:
    status = str(state.status)
    if status not in TERMINAL:
        report.stuck += 1
        waiting = {
            step_id: f"{step.status}/{step.attempts}" for step_id, step in state.steps.items()
        }
        report.notes.append(f"{key}: still {status} {waiting} (execution {state.id})")
        return
    if status == "completed":
        report.completed += 1
    else:
        report.failed += 1
    if status != expect_status(value):
        report.wrong += 1
        report.notes.append(f"{key}: {status}, expected {expect_status(value)}: {state.error}")
    completions = Counter(
        emit.get("step_id")
        for event in events
        for emit in _emits(event.body)
        if emit.get("kind") == "step.completed"
    )
    for step_id, step in state.steps.items():
        if completions[step_id] > 1:
            report.twice += 1
            report.notes.append(f"{key}/{step_id}: completed {completions[step_id]} times")
        want = expect(value, step_id, step)
        if want is not None and step.attempts != want:
            report.wrong += 1
            report.notes.append(f"{key}/{step_id}: {step.attempts} attempts, expected {want}")
        calls = seen.get((state.id, step_id), set())
        if calls - set(range(1, step.attempts + 1)):  # a task of an uncommitted transition
            report.wrong += 1
            report.notes.append(f"{key}/{step_id}: calls {sorted(calls)}, {step.attempts} att.")
        output = step.output
        if isinstance(output, dict) and output.get("attempt", step.attempts) != step.attempts:
            report.twice += 1
            report.notes.append(
                f"{key}/{step_id}: applied the result of attempt {output['attempt']}"
                f" of {step.attempts}"
            )
