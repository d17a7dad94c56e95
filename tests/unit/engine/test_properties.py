"""Property tests: random DAGs under random outcomes always end, consistently with SPEC, and
applying any event twice changes nothing the second time.

A random workflow (steps depend on earlier ones; random kinds, conditions, retries, timeouts
and their actions, fallbacks, compensation, fan-out, breakers, continue_on_failure, a
deadline) is driven by a random schedule of events: results (success, failure, non-retryable
failure), timers firing in due order, stale timers, duplicate results, signals, children
ending, pause/resume/cancel, recover. Every event is then sent a second time and must leave the
encoded state unchanged. After the random phase the world turns benign (successes, timers,
signals, resume) and the execution must reach a final status within a bounded number of
events, with nothing left behind: no task awaited, no live timer, every task either answered
or cancelled.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from magicflow.engine.model import (
    CancelRequested,
    ChildFinished,
    Event,
    ExecutionStatus,
    PauseRequested,
    Recover,
    ResumeRequested,
    RetryRequested,
    SignalReceived,
    StepStatus,
    TaskResult,
    TimerFired,
)
from magicflow.messages import ErrorInfo, ResultMessage

from .harness import Run, encoded, plan_of

SIGNALS = ("go", "approve")


@st.composite
def step_yaml(
    draw: st.DrawFn, index: int, earlier: list[str], names: list[str], dense: bool
) -> str:
    """One step; ``dense`` makes fan-out, fallbacks and timeouts (the rare paths) likely."""
    sid = f"s{index}"
    lines = [f"  - id: {sid}"]
    kind = draw(st.sampled_from(["function"] * 6 + ["wait", "sleep", "workflow"]))
    deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
    if deps:
        lines.append(f"    depends_on: [{', '.join(deps)}]")
    condition = draw(st.sampled_from([None, None, "${true}", "${false}", "dep-status"]))
    if condition == "dep-status" and deps:
        condition = f"${{steps.{deps[0]}.status == 'completed'}}"
    if condition and condition != "dep-status":
        lines.append(f"    condition: {condition}")
    if draw(st.booleans()):
        lines.append("    continue_on_failure: true")
    if kind == "sleep":
        lines.append("    sleep: 3s")
        return "\n".join(lines)
    if kind == "wait":
        lines.append(f"    wait_for: {draw(st.sampled_from(SIGNALS))}")
        actions = ["fail", "skip"]
    else:
        if kind == "workflow":
            lines.append("    workflow: child-flow@1")
        else:
            lines.append(f"    function: fn{draw(st.integers(0, 2))}")
            if draw(st.booleans()):
                lines.append(f"    input: {{n: {index}, id: '${{execution.id}}'}}")
            if draw(st.integers(0, 3)) == 0:
                breaker_threshold = draw(st.integers(1, 3))
                lines.append(
                    f"    circuit_breaker: {{failure_threshold: {breaker_threshold}, timeout: 4s}}"
                )
        if dense or draw(st.integers(0, 3)) == 0:
            items = draw(st.integers(2, 4) if dense else st.integers(0, 4))
            lines.append(f"    for_each: ${{{list(range(items))}}}")
            if dense or draw(st.booleans()):
                lines.append(f"    max_parallel: {draw(st.integers(1, 3))}")
        attempts = draw(st.integers(1, 3))
        jitter = draw(st.booleans())
        lines.append(
            f"    retry_config: {{strategy: fixed, max_attempts: {attempts}, "
            f"initial_interval: 1s, jitter: {str(jitter).lower()}}}"
        )
        if draw(st.booleans()):
            lines.append("    compensation: {function: undo}")
        actions = ["fail", "skip", "retry"]
    fallbacks = ["function", "chain"] if dense else [None, "output", "function", "chain"]
    fallback = draw(st.sampled_from(fallbacks))
    if fallback == "output":
        lines.append("    fallback: {output: {fb: true}}")
    elif fallback == "function":
        lines.append("    fallback: {function: fb_fn}")
    elif fallback == "chain":
        lines.append("    fallback: [{function: fb_fn}, {output: {fb: 2}}]")
    if fallback:
        actions.append("fallback")
    if dense or draw(st.booleans()):
        lines.append("    timeout: 5s")
        lines.append(f"    timeout_action: {draw(st.sampled_from(actions))}")
    if kind == "wait":
        names.append(sid)
    return "\n".join(lines)


@st.composite
def workflows(draw: st.DrawFn) -> str:
    dense = draw(st.integers(0, 3)) == 0
    count = draw(st.integers(1, 3) if dense else st.integers(1, 7))
    steps: list[str] = []
    ids: list[str] = []
    waits: list[str] = []
    for index in range(count):
        steps.append(draw(step_yaml(index, ids, waits, dense)))
        ids.append(f"s{index}")
    head = ["name: random-flow", 'version: "1"']
    if draw(st.booleans()):
        head.append(f"timeout: {draw(st.sampled_from(['20s', '200s']))}")
        head.append(f"timeout_action: {draw(st.sampled_from(['fail', 'cancel']))}")
    return "\n".join([*head, "steps:", *steps]) + "\n"


class World:
    """The harness plus bookkeeping for duplicates, stale timers and children."""

    def __init__(self, text: str) -> None:
        self.run = Run(plan_of(text))
        self.sent_results: list[TaskResult] = []
        self.dead_timers: list[str] = []
        self.child_events: list[ChildFinished] = []
        self.finished_children: set[str] = set()
        self.events = 0

    def send(self, event: Event) -> None:
        """Send an event, then the same event again: the second must change nothing."""
        run = self.run
        self.events += 1
        if isinstance(event, TimerFired):
            run.timers.pop(event.key, None)
            self.dead_timers.append(event.key)
        run.send(event)
        self._after(event)
        if isinstance(event, SignalReceived):
            return  # a second signal is a new signal, not a duplicate
        if isinstance(event, RetryRequested) and run.st.status.is_terminal:
            return  # the retry ended at once (a breaker is open): a second one is a new retry
        before = encoded(run.state)
        commands = run.send(event)
        assert encoded(run.state) == before, f"{event} applied twice changed the state"
        if not isinstance(event, Recover):
            assert commands == [], f"{event} applied twice emitted {commands}"

    def _after(self, event: Event) -> None:
        if isinstance(event, TaskResult):
            self.sent_results.append(event)
        if isinstance(event, ChildFinished):
            self.child_events.append(event)
            self.finished_children.add(event.child_id)

    def awaited_tasks(self) -> list[Any]:
        state = self.run.st
        return [t for t in self.run.tasks.values() if t.id in state.tasks]

    def live_children(self) -> list[str]:
        cancelled = set(self.run.cancelled_children)
        return [
            c for c in self.run.children if c not in cancelled and c not in self.finished_children
        ]

    def answer(self, task: Any, outcome: str) -> None:
        if outcome == "ok":
            message = ResultMessage(
                task_id=task.id,
                execution_id=task.execution_id,
                step_id=task.step_id,
                status="completed",
                output={"v": task.id},
                item_index=task.item_index,
            )
        else:
            error = ErrorInfo(type="Boom", message="boom", non_retryable=outcome == "fatal")
            message = ResultMessage(
                task_id=task.id,
                execution_id=task.execution_id,
                step_id=task.step_id,
                status="failed",
                error=error,
                item_index=task.item_index,
            )
        self.run.tasks.pop(task.id, None)
        self.send(TaskResult(result=message))

    def end_child(self, child_id: str, ok: bool) -> None:
        start = self.run.children[child_id]
        status = ExecutionStatus.COMPLETED if ok else ExecutionStatus.FAILED
        self.send(
            ChildFinished(
                child_id=child_id,
                parent_step_id=start.parent_step_id,
                status=status,
                output={"child": child_id} if ok else None,
            )
        )

    def fire_next(self) -> bool:
        nxt = self.run.next_timer()
        if nxt is None:
            return False
        key, due = nxt
        self.run.now = max(self.run.now, due)
        self.send(TimerFired(key=key))
        return True


def random_phase(data: st.DataObject, world: World) -> None:
    run = world.run
    for _ in range(data.draw(st.integers(0, 60), label="random events")):
        if run.st.status.is_terminal:
            if data.draw(st.integers(0, 5)) == 0:
                world.send(RetryRequested())
                continue
            return
        choice = data.draw(
            st.sampled_from(
                ["answer"] * 6
                + ["timer"] * 3
                + ["pause", "resume"] * 2
                + ["child", "dup", "stale", "signal", "cancel", "recover"]
            ),
            label="event",
        )
        apply_choice(data, world, choice)


def apply_choice(data: st.DataObject, world: World, choice: str) -> None:
    run = world.run
    tasks = world.awaited_tasks()
    if choice == "answer" and tasks:
        task = data.draw(st.sampled_from(tasks))
        world.answer(task, data.draw(st.sampled_from(["ok", "ok", "fail", "fatal"])))
    elif choice == "timer":
        world.fire_next()
    elif choice == "child" and world.live_children():
        world.end_child(data.draw(st.sampled_from(world.live_children())), data.draw(st.booleans()))
    elif choice == "dup" and world.sent_results:
        before = encoded(run.state)
        assert run.send(data.draw(st.sampled_from(world.sent_results))) == []
        assert encoded(run.state) == before
    elif choice == "stale" and world.dead_timers:
        before = encoded(run.state)
        assert run.send(TimerFired(key=data.draw(st.sampled_from(world.dead_timers)))) == []
        assert encoded(run.state) == before
    elif choice == "signal":
        world.send(SignalReceived(name=data.draw(st.sampled_from(SIGNALS)), payload={"ok": 1}))
    elif choice == "pause":
        world.send(PauseRequested())
    elif choice == "resume":
        world.send(ResumeRequested())
    elif choice == "cancel" and data.draw(st.integers(0, 3)) == 0:
        world.send(CancelRequested())
    elif choice == "recover":
        world.send(Recover())


def settle(world: World) -> None:
    """A benign world: resume, succeed, end children, signal waiters, let time pass."""
    run = world.run
    for _ in range(2_000):
        state = run.st
        if state.status.is_terminal:
            return
        if state.status is ExecutionStatus.PAUSED:
            world.send(ResumeRequested())
            continue
        tasks = world.awaited_tasks()
        if tasks:
            world.answer(tasks[0], "ok")
            continue
        children = world.live_children()
        if children:
            world.end_child(children[0], True)
            continue
        waiting = {
            sp.signal
            for sp in run.plan.steps
            if sp.signal and state.steps[sp.id].status is StepStatus.WAITING
        }
        if waiting:
            world.send(SignalReceived(name=sorted(waiting)[0], payload={"ok": 2}))
            continue
        if not world.fire_next():
            raise AssertionError(f"stuck: {state}")
    raise AssertionError("did not finish within 2,000 events")


def check_final(world: World) -> None:
    run = world.run
    state = run.st
    plan = run.plan
    assert state.status.is_terminal
    assert state.completed_at is not None
    assert state.tasks == {}
    assert run.tasks == {}, "a dispatched task was neither answered nor cancelled"
    assert run.timers == {}, "a timer was left running"
    assert world.live_children() == [], "a child was left running"
    assert state.ending is None
    assert state.compensating == []
    steps = state.steps
    for sp in plan.steps:
        ss = steps[sp.id]
        assert ss.status not in (StepStatus.RUNNING, StepStatus.WAITING, StepStatus.SCHEDULED)
        if ss.status is StepStatus.COMPENSATED:
            assert sp.compensation is not None
        if ss.fallback_used:
            assert sp.fallback
            assert ss.status in (StepStatus.COMPLETED, StepStatus.COMPENSATED)
    if state.status is ExecutionStatus.COMPLETED:
        assert state.error is None
        assert state.unfinished == 0
        for sp in plan.steps:
            ss = steps[sp.id]
            allowed = {StepStatus.COMPLETED, StepStatus.SKIPPED}
            if sp.continue_on_failure:
                allowed |= {StepStatus.FAILED, StepStatus.TIMED_OUT}
            assert ss.status in allowed, (sp.id, ss.status)
        assert state.output == {leaf: steps[leaf].output for leaf in plan.leaves}
    else:
        assert state.error is not None
    if state.status is ExecutionStatus.FAILED and state.error is not None:
        failed = state.error.step_id
        assert failed is not None
        assert steps[failed].status in (StepStatus.FAILED, StepStatus.TIMED_OUT)
        assert not plan.step(failed).continue_on_failure
    if state.status is ExecutionStatus.TIMED_OUT:
        assert state.error is not None
        assert state.error.type == "DeadlineExceeded"


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(workflows(), st.data())
def test_random_workflows_always_finish_consistently(text: str, data: st.DataObject) -> None:
    scenario(text, data)


def scenario(text: str, data: st.DataObject) -> None:
    world = World(text)
    world.run.start({"items": [1, 2]})
    random_phase(data, world)
    settle(world)
    check_final(world)
    if data.draw(st.booleans(), label="retry after the end"):
        state = world.run.st
        if state.status in (
            ExecutionStatus.FAILED,
            ExecutionStatus.TIMED_OUT,
            ExecutionStatus.CANCELLED,
        ):
            world.send(RetryRequested())
            settle(world)
            check_final(world)
