"""Fan-out: one task per item, bounded parallelism, ordered outputs, per-item retries."""

from __future__ import annotations

import time

from magicflow.engine.model import ExecutionStatus, StepStatus

from .harness import Run, error

FAN = """
name: fan
version: "1"
steps:
  - id: charge
    function: charge_item
    for_each: ${{input.items}}
    {max_parallel}
    input: {{item: "${{item}}", index: "${{index}}"}}
    retry_config: {{strategy: fixed, max_attempts: 2, initial_interval: 1s, jitter: false}}
    {extra}
"""


def fan(max_parallel: int | None = None, extra: str = "") -> Run:
    limit = f"max_parallel: {max_parallel}" if max_parallel else ""
    return Run.of(FAN.format(max_parallel=limit, extra=extra))


def test_one_task_per_item_and_outputs_in_item_order() -> None:
    run = fan()
    run.start({"items": ["a", "b", "c"]})
    tasks = sorted(run.tasks.values(), key=lambda t: t.item_index or 0)
    assert [t.input for t in tasks] == [
        {"item": "a", "index": 0},
        {"item": "b", "index": 1},
        {"item": "c", "index": 2},
    ]
    assert [t.item_index for t in tasks] == [0, 1, 2]
    for index in (2, 0, 1):  # answered out of order
        run.ok("charge", f"out-{index}", index=index)
    assert run.st.steps["charge"].output == ["out-0", "out-1", "out-2"]
    assert run.st.status is ExecutionStatus.COMPLETED


def test_at_most_max_parallel_in_flight() -> None:
    run = fan(max_parallel=2)
    run.start({"items": list(range(5))})
    seen_max = 0
    while run.st.status is ExecutionStatus.RUNNING:
        in_flight = [t for t in run.tasks.values()]
        seen_max = max(seen_max, len(in_flight))
        first = min(in_flight, key=lambda t: t.item_index or 0)
        run.result(first, ("ok", first.item_index))
    assert seen_max == 2
    assert run.st.steps["charge"].output == [0, 1, 2, 3, 4]


def test_empty_list_completes_with_empty_output() -> None:
    run = fan()
    run.start({"items": []})
    assert run.st.steps["charge"].status is StepStatus.COMPLETED
    assert run.st.steps["charge"].output == []
    assert run.st.status is ExecutionStatus.COMPLETED


def test_not_a_list_fails_the_step_clearly() -> None:
    run = fan()
    run.start({"items": {"a": 1}})
    st = run.st
    assert st.steps["charge"].status is StepStatus.FAILED
    assert st.error is not None
    assert "must evaluate to a list, got a mapping" in st.error.message


def test_each_item_retries_independently() -> None:
    run = fan(max_parallel=2)
    run.start({"items": ["x", "y"]})
    run.fail("charge", index=0)
    run.ok("charge", "y!", index=1)
    run.fire("retry:")
    retried = run.task("charge", 0)
    assert retried.attempt == 2
    run.result(retried, ("ok", "x!"))
    ss = run.st.steps["charge"]
    assert ss.output == ["x!", "y!"]
    assert ss.attempts == 2
    assert ss.items is not None
    assert [i.attempts for i in ss.items] == [2, 1]


def test_an_exhausted_item_fails_the_step_and_cancels_the_others() -> None:
    run = fan()
    run.start({"items": [1, 2, 3]})
    other = run.task("charge", 2)
    run.fail("charge", index=0, err=error(non_retryable=True))
    st = run.st
    assert st.steps["charge"].status is StepStatus.FAILED
    assert st.status is ExecutionStatus.FAILED
    assert other.id in run.cancelled_tasks
    assert run.tasks == {}


def test_an_exhausted_item_uses_the_step_fallback() -> None:
    run = fan(extra="fallback: {output: []}")
    run.start({"items": [1, 2]})
    run.fail("charge", index=1, err=error(non_retryable=True))
    ss = run.st.steps["charge"]
    assert (ss.status, ss.output, ss.fallback_used) == (StepStatus.COMPLETED, [], True)
    assert run.st.status is ExecutionStatus.COMPLETED


def test_default_item_input_is_the_item() -> None:
    run = Run.of(
        """
        name: fan
        version: "1"
        steps:
          - id: each
            function: f
            for_each: ${input.items}
        """
    )
    run.start({"items": [{"sku": 1}]})
    assert run.task("each", 0).input == {"sku": 1}


def test_thousand_items_are_not_quadratic() -> None:
    def elapsed(n: int) -> float:
        """CPU time (other processes don't count) of the fastest of three runs."""
        times = []
        for _ in range(3):
            run = fan(max_parallel=10)
            run.start({"items": list(range(n))})
            began = time.process_time()
            while run.tasks:
                task = next(iter(run.tasks.values()))
                run.result(task, ("ok", task.item_index))
            times.append(time.process_time() - began)
            assert run.st.steps["charge"].output == list(range(n))
        return min(times)

    small, big = elapsed(250), elapsed(1000)
    assert big < small * 8  # linear is ~4x; quadratic would be ~16x
