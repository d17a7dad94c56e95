"""Micro-benchmark of the engine's pure state machine: µs per ``decide``.

Run: ``python bench/bench_engine.py`` (a few seconds). Plans are compiled once, outside the
timed loops, as the service does once per workflow version. Each workload drives whole
executions (Start, then one successful result per dispatched task) and reports the cost per
``decide`` call and per execution; nothing else (no encoding, no store) is timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from magicflow.dsl.compile import compile_workflow
from magicflow.dsl.plan import WorkflowPlan
from magicflow.engine.machine import decide
from magicflow.engine.model import (
    BreakerState,
    DispatchTask,
    ExecutionState,
    Start,
    TaskResult,
)
from magicflow.messages import ResultMessage

ONE_STEP = """
name: bench-one
version: "1"
steps:
  - id: only
    function: noop
"""

CHAIN = (
    'name: bench-chain\nversion: "1"\nsteps:\n'
    + "  - id: s0\n    function: noop\n    input: {n: 0}\n"
    + "".join(
        f"  - id: s{i}\n    function: noop\n    depends_on: [s{i - 1}]\n"
        f'    input: {{prev: "${{steps.s{i - 1}.output.n}}"}}\n'
        for i in range(1, 10)
    )
)

FAN = """
name: bench-fan
version: "1"
steps:
  - id: each
    function: noop
    for_each: ${input.items}
    max_parallel: 50
"""

NO_BREAKERS: dict[str, BreakerState] = {}


def run_execution(plan: WorkflowPlan, number: int, input: object = None) -> int:
    """Drive one execution to its end answering every task at once; the decide calls made."""
    now = 1000.0
    decision = decide(None, Start(input=input, execution_id=f"ex{number}"), plan, now, NO_BREAKERS)
    state: ExecutionState = decision.state
    pending = [c.task for c in decision.commands if isinstance(c, DispatchTask)]
    calls = 1
    while pending:
        task = pending.pop()
        result = ResultMessage(
            task_id=task.id,
            execution_id=task.execution_id,
            step_id=task.step_id,
            status="completed",
            output={"n": calls},
            item_index=task.item_index,
        )
        decision = decide(state, TaskResult(result=result), plan, now, NO_BREAKERS)
        calls += 1
        pending.extend(c.task for c in decision.commands if isinstance(c, DispatchTask))
    assert state.status == "completed", state.status
    return calls


def measure(name: str, run: Callable[[int], int], seconds: float = 1.0) -> None:
    best_per_call = best_per_run = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        runs = calls = 0
        while time.perf_counter() - began < seconds / 5:
            calls += run(runs)
            runs += 1
        elapsed = time.perf_counter() - began
        best_per_call = min(best_per_call, elapsed / calls * 1e6)
        best_per_run = min(best_per_run, elapsed / runs * 1e6)
    print(
        f"{name:<44} {best_per_call:8.1f} µs/decide {best_per_run:10.1f} µs/execution "
        f"({calls // runs} decides each)"
    )


def main() -> None:
    one, chain, fan = (compile_workflow(text) for text in (ONE_STEP, CHAIN, FAN))
    items = {"items": list(range(1000))}
    print("engine.decide, best of 5 (lower is better)")
    measure("one-step workflow (start + result)", lambda n: run_execution(one, n))
    measure("10-step chain (templated inputs)", lambda n: run_execution(chain, n))
    measure("for_each of 1,000 items, max_parallel 50", lambda n: run_execution(fan, n, items))


if __name__ == "__main__":
    main()
