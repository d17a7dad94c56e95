"""What both scenario suites share: where the files are, what the functions recorded, the
shape of a result document (SPEC §3), and what each scenario's result must show (SPEC §1).

An ``expect_*`` function checks one scenario's result document and the calls its business
functions recorded; the API suite and the CLI suite call the same one, so the two ways of
running a workflow are held to the same behaviour.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from magicflow.dsl import compile_workflow

SCENARIOS = Path(__file__).resolve().parent
HANDLERS = SCENARIOS / "handlers.py"

EXECUTION_STATUSES = {
    "pending",
    "running",
    "paused",
    "completed",
    "failed",
    "cancelled",
    "timed_out",
}
STEP_STATUSES = {
    "pending",
    "scheduled",
    "running",
    "waiting",
    "completed",
    "failed",
    "skipped",
    "timed_out",
    "cancelled",
    "compensated",
}
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
DOCUMENT_KEYS = {
    "execution_id",
    "workflow",
    "status",
    "input",
    "output",
    "error",
    "steps",
    "started_at",
    "completed_at",
}
STEP_KEYS = {
    "status",
    "attempts",
    "output",
    "error",
    "fallback_used",
    "started_at",
    "completed_at",
}


def definition(name: str) -> Path:
    return SCENARIOS / f"{name}.yaml"


def step_ids(name: str) -> list[str]:
    """The steps of a scenario's definition."""
    path = definition(name)
    return [step.id for step in compile_workflow(path.read_text(), str(path)).steps]


# ---------------------------------------------------------------- calls


@dataclass
class Calls:
    """The calls recorded in ``<dir>/calls.jsonl``, in the order they were made."""

    records: list[dict[str, Any]]

    @classmethod
    def read(cls, directory: Path) -> Calls:
        path = directory / "calls.jsonl"
        if not path.exists():
            return cls([])
        return cls([json.loads(line) for line in path.read_text().splitlines()])

    def of(
        self,
        step: str | None = None,
        *,
        fn: str | None = None,
        type: str | None = None,
        event: str | None = None,
    ) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records
            if (step is None or r["step"] == step)
            and (fn is None or r["fn"] == fn)
            and (type is None or r["type"] == type)
            and (event is None or r["event"] == event)
        ]

    def count(self, step: str, **where: Any) -> int:
        return len(self.of(step, **where))


# ---------------------------------------------------------------- the document (SPEC §3)


def parse_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def seconds_between(earlier: str, later: str) -> float:
    return (parse_time(later) - parse_time(earlier)).total_seconds()


def check_timestamp(stamp: Any, where: str) -> None:
    assert isinstance(stamp, str), f"{where}: {stamp!r} is not a timestamp"
    assert RFC3339_UTC.match(stamp), f"{where}: {stamp!r} is not RFC 3339 in UTC"
    parse_time(stamp)


def check_error(error: Any, where: str) -> None:
    if error is None:
        return
    assert isinstance(error, dict), f"{where}: error {error!r}"
    assert set(error) == {"type", "message", "step_id"}, f"{where}: error keys {set(error)}"
    assert isinstance(error["type"], str), where
    assert error["type"], where
    assert isinstance(error["message"], str), where
    assert error["message"], where


def check_document(doc: dict[str, Any], name: str) -> None:
    """The SPEC §3 shape of a final result document of scenario ``name``."""
    assert set(doc) == DOCUMENT_KEYS, f"document keys: {sorted(doc)}"
    assert isinstance(doc["execution_id"], str)
    assert doc["execution_id"]
    assert doc["workflow"]["name"] == name
    assert isinstance(doc["workflow"]["version"], str)
    assert doc["status"] in EXECUTION_STATUSES & TERMINAL, doc["status"]
    check_error(doc["error"], "execution")
    if doc["status"] == "completed":
        assert doc["error"] is None, doc["error"]
    else:
        assert doc["error"] is not None, "an execution that did not complete says why"
    check_timestamp(doc["started_at"], "started_at")
    check_timestamp(doc["completed_at"], "completed_at")
    assert parse_time(doc["started_at"]) <= parse_time(doc["completed_at"])
    assert list(doc["steps"]) == step_ids(name), "steps lists every step of the definition"
    for step_id, step in doc["steps"].items():
        where = f"step {step_id}"
        assert set(step) == STEP_KEYS, f"{where}: keys {sorted(step)}"
        assert step["status"] in STEP_STATUSES, f"{where}: {step['status']}"
        assert step["status"] != "pending", f"{where}: pending after the execution ended"
        assert isinstance(step["attempts"], int), where
        assert step["attempts"] >= 0, where
        assert isinstance(step["fallback_used"], bool), where
        check_error(step["error"], where)
        if step["started_at"] is not None:
            check_timestamp(step["started_at"], f"{where} started_at")
        if step["completed_at"] is not None:
            check_timestamp(step["completed_at"], f"{where} completed_at")
        if step["started_at"] is not None and step["completed_at"] is not None:
            assert parse_time(step["started_at"]) <= parse_time(step["completed_at"]), where
        if step["started_at"] is None:
            assert step["attempts"] == 0, f"{where}: attempts without a start"


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {step_id: step["status"] for step_id, step in doc["steps"].items()}


def attempts(doc: dict[str, Any]) -> dict[str, int]:
    return {step_id: step["attempts"] for step_id, step in doc["steps"].items()}


def never_started(doc: dict[str, Any], *step_ids: str) -> None:
    """Steps that never ran: ``cancelled`` once the execution ended, no start, no attempt."""
    for step_id in step_ids:
        step = doc["steps"][step_id]
        assert step["status"] == "cancelled", (step_id, step)
        assert step["started_at"] is None, (step_id, step)
        assert step["attempts"] == 0, (step_id, step)
        assert step["output"] is None


def gaps(records: Iterable[dict[str, Any]]) -> list[float]:
    times = [r["t"] for r in records]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


# ---------------------------------------------------------------- the scenarios (SPEC §1)


def expect_parallel(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "completed", doc["error"]
    assert statuses(doc) == {"left": "completed", "right": "completed", "join": "completed"}
    # each one passed the barrier only because the other had arrived: they ran concurrently
    arrivals = [calls.of(s, event="arrived")[0]["t"] for s in ("left", "right")]
    meetings = [calls.of(s, event="met")[0]["t"] for s in ("left", "right")]
    assert max(arrivals) <= min(meetings)
    join = doc["steps"]["join"]
    for branch in ("left", "right"):
        assert parse_time(doc["steps"][branch]["completed_at"]) <= parse_time(join["started_at"])
    # no output mapping: {leaf: output}; only 'join' is a leaf
    assert doc["output"] == {"join": {"both": [["left", "right"], ["left", "right"]]}}
    for record in calls.records:  # what a function knows of its call (SPEC §2)
        assert record["workflow"] == "parallel"
        assert record["execution"] == doc["execution_id"]
        assert record["attempt"] == 1
        assert record["deadline"] is None, "no step timeout, no workflow deadline"


def expect_conditions(doc: dict[str, Any], calls: Calls, plan: str) -> None:
    assert doc["status"] == "completed", doc["error"]
    taken, skipped = ("pro-only", "free-only") if plan == "pro" else ("free-only", "pro-only")
    assert doc["steps"][taken]["status"] == "completed"
    assert doc["steps"][taken]["output"] == {"tier": "pro" if plan == "pro" else "free"}
    assert doc["steps"][skipped]["status"] == "skipped"
    assert doc["steps"][skipped]["output"] is None
    assert doc["steps"][skipped]["attempts"] == 0
    assert calls.count(skipped) == 0, "a skipped step's function is not called"
    # the skipped step satisfied 'after', which saw both statuses
    after = doc["steps"]["after"]
    assert after["status"] == "completed"
    assert after["output"] == {
        "pro": "completed" if plan == "pro" else "skipped",
        "free": "skipped" if plan == "pro" else "completed",
    }


def expect_condition_error(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "failed"
    assert doc["error"]["type"] == "EvaluationError"
    assert doc["error"]["step_id"] == "divide"
    assert "condition" in doc["error"]["message"]
    assert "division by zero" in doc["error"]["message"]
    step = doc["steps"]["divide"]
    assert step["status"] == "failed"
    assert step["error"]["type"] == "EvaluationError"
    assert step["attempts"] == 0
    assert calls.count("divide") == 0
    never_started(doc, "never")


def expect_mapping(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "completed", doc["error"]
    given = {k: v for k, v in doc["input"].items() if k != "dir"}
    # no input: the step receives the execution input
    assert calls.of("plain")[0]["input"] == given
    assert doc["steps"]["plain"]["output"] == given
    typed = doc["steps"]["typed"]["output"]
    assert typed == {
        "n": 3,
        "half": 1.5,
        "tags": ["a", "b"],
        "first": "a",
        "flag": True,
        "missing": None,
        "label": "n=3 of mapping@1",
        "execution": doc["execution_id"],
        "upstream": 3,
    }
    assert type(typed["n"]) is int
    assert doc["output"] == {"next": 4, "label": "n=3 of mapping@1", "whole": given}


def expect_fan_out(doc: dict[str, Any], calls: Calls, items: list[Any]) -> None:
    assert doc["status"] == "completed", doc["error"]
    each = doc["steps"]["each"]
    assert each["status"] == "completed"
    assert [o["item"] for o in each["output"]] == items, "outputs in item order"
    assert [o["index"] for o in each["output"]] == list(range(len(items)))
    starts = calls.of("each", event="start")
    assert sorted(r["item"] for r in starts) == list(range(len(items))), "one call per item"
    running = [r["running"] for r in starts]
    assert max(running) == 2, f"max_parallel 2: at most two at once, and two did run: {running}"
    # later items are shorter: item 1 finished before item 0, yet the list follows the items
    ended = [r["item"] for r in calls.of("each", event="end")]
    assert ended.index(1) < ended.index(0)
    none = doc["steps"]["none"]
    assert none["status"] == "completed"
    assert none["output"] == []
    assert calls.count("none") == 0
    assert doc["output"] == {"each": each["output"], "none": []}


def expect_retries(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "completed", doc["error"]
    assert attempts(doc) == {"fixed": 3, "linear": 3, "exponential": 4}
    assert doc["output"] == {
        "fixed": {"attempt": 3},
        "linear": {"attempt": 3},
        "exponential": {"attempt": 4},
    }
    for step, count in attempts(doc).items():
        assert [r["attempt"] for r in calls.of(step)] == list(range(1, count + 1))
    slack = 0.005  # the handler's clock reading vs the engine's
    expected = {"fixed": [0.1, 0.1], "linear": [0.06, 0.12], "exponential": [0.05, 0.1, 0.2]}
    for step, delays in expected.items():
        measured = gaps(calls.of(step))
        assert len(measured) == len(delays)
        for got, want in zip(measured, delays, strict=True):
            assert got >= want - slack, f"{step}: waited {got:.3f}s, backoff is {want}s"


def expect_retries_exhausted(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "failed"
    assert doc["error"] == {
        "type": "RuntimeError",
        "message": "attempt 2 failed on purpose",
        "step_id": "doomed",
    }
    doomed = doc["steps"]["doomed"]
    assert doomed["status"] == "failed"
    assert doomed["attempts"] == 2
    assert doomed["error"]["type"] == "RuntimeError"
    assert doomed["output"] is None
    assert calls.count("doomed") == 2
    never_started(doc, "never")
    assert doc["output"] is None


def expect_non_retryable(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "completed", doc["error"]
    assert set(statuses(doc).values()) == {"failed"}
    assert attempts(doc) == {"declined": 1, "refused": 1, "plain": 3, "not-json": 1}
    assert doc["steps"]["declined"]["error"]["type"] == "PaymentDeclined"
    assert doc["steps"]["refused"]["error"]["type"] == "NonRetryableError"
    assert doc["steps"]["refused"]["error"]["message"] == "this will never work"
    assert doc["steps"]["plain"]["error"]["type"] == "RuntimeError"
    assert doc["steps"]["not-json"]["error"]["type"] == "SerializationError"
    assert [calls.count(s) for s in ("declined", "refused", "plain", "not-json")] == [1, 1, 3, 1]
    assert doc["output"] == {"declined": None, "refused": None, "plain": None, "not-json": None}


def expect_timeout_fail(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "failed"
    slow = doc["steps"]["slow"]
    assert slow["status"] == "timed_out"
    assert slow["attempts"] == 1, "timeout_action fail: not retried (max_attempts is 3)"
    assert slow["error"]["type"] == "TimeoutError"
    assert doc["error"]["step_id"] == "slow"
    assert doc["error"]["type"] == "TimeoutError"
    assert 0.15 <= seconds_between(slow["started_at"], slow["completed_at"]) < 2.0
    assert calls.count("slow", event="start") == 1
    assert calls.count("slow", event="end") == 0
    call = calls.of("slow")[0]
    assert call["deadline"] is not None, "ctx.deadline: the step timeout"
    assert 0.1 <= call["deadline"] - call["t"] <= 0.16
    never_started(doc, "after")


def expect_timeout_actions(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "completed", doc["error"]
    retried = doc["steps"]["retry-it"]
    assert retried["status"] == "completed"
    assert retried["attempts"] == 2, "the timed-out attempt counts"
    assert retried["output"] == {"slept": 0.0, "attempt": 2}
    skipped = doc["steps"]["skip-it"]
    assert skipped["status"] == "skipped"
    assert skipped["output"] is None
    assert doc["steps"]["after-skip"]["status"] == "completed"
    assert doc["steps"]["after-skip"]["output"] == {"skipped": "skipped"}
    fell_back = doc["steps"]["fall-back"]
    assert fell_back["status"] == "completed"
    assert fell_back["fallback_used"] is True
    assert fell_back["output"] == {"degraded": True}
    assert fell_back["attempts"] == 1
    for step in ("skip-it", "fall-back"):
        assert (
            0.15
            <= seconds_between(doc["steps"][step]["started_at"], doc["steps"][step]["completed_at"])
            < 0.9
        ), "ended by its timeout, long before the call would have"
    assert doc["output"] == {
        "retry-it": {"slept": 0.0, "attempt": 2},
        "after-skip": {"skipped": "skipped"},
        "fall-back": {"degraded": True},
    }


def expect_fallbacks(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "completed", doc["error"]
    steps = doc["steps"]
    for step_id in ("by-output", "by-function", "with-input", "chain"):
        assert steps[step_id]["status"] == "completed", step_id
        assert steps[step_id]["fallback_used"] is True, step_id
    # attempts count calls of the step's own function only
    assert attempts(doc) == {
        "by-output": 2,
        "by-function": 1,
        "with-input": 1,
        "chain": 1,
        "chain-runs-out": 1,
    }
    assert steps["by-output"]["output"] == {"source": "fallback", "customer": "ada"}
    # a fallback function without input of its own gets the step's input
    assert steps["by-function"]["output"] == {"error": "non_retryable", "customer": "ada"}
    assert calls.of("by-function", type="fallback")[0]["input"] == {
        "error": "non_retryable",
        "customer": "ada",
    }
    assert steps["with-input"]["output"] == {"via": "own-input"}
    # the chain: the first fallback function fails, the second one's output is used
    assert steps["chain"]["output"] == {"via": "second"}
    assert [(r["fn"], r["type"]) for r in calls.of("chain")] == [
        ("fail", "function"),
        ("fail", "fallback"),
        ("echo", "fallback"),
    ]
    # a chain that runs out leaves the step failed
    runs_out = steps["chain-runs-out"]
    assert runs_out["status"] == "failed"
    assert runs_out["fallback_used"] is False
    assert runs_out["output"] is None
    assert runs_out["error"] is not None
    assert calls.count("chain-runs-out", type="fallback") == 1


def expect_breaker_run(doc: dict[str, Any], calls: Calls, *, open_: bool) -> None:
    """One execution of ``breaker``: the call failed (breaker closed) or was refused (open)."""
    assert doc["status"] == "completed", doc["error"]
    step = doc["steps"]["call"]
    assert step["status"] == "completed"
    assert step["fallback_used"] is True
    assert step["output"] == {"degraded": True}
    if open_:
        assert step["attempts"] == 0, "an open breaker refuses the call: no attempt"
        assert calls.count("call") == 0, "the function is not called while the breaker is open"
        assert step["error"]["type"] == "CircuitOpenError"
    else:
        assert step["attempts"] == 1
        assert calls.count("call") == 1
        assert step["error"]["type"] == "ConnectionError"


def expect_continue(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "completed", doc["error"]
    optional = doc["steps"]["optional"]
    assert optional["status"] == "failed"
    assert optional["error"]["type"] == "NonRetryableError"
    assert optional["output"] is None
    assert doc["steps"]["next"]["status"] == "completed"
    assert doc["steps"]["next"]["output"] == {"optional": "failed"}
    assert doc["output"] == {"next": {"optional": "failed"}}


def expect_saga(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "failed"
    assert doc["error"]["step_id"] == "ship"
    assert doc["error"]["type"] == "NonRetryableError"
    assert statuses(doc) == {
        "reserve-fast": "compensated",
        "reserve-slow": "compensated",
        "audit": "completed",
        "charge": "compensated",
        "ship": "failed",
    }
    compensations = calls.of(type="compensation")
    # reverse completion order (reserve-fast, audit, reserve-slow, charge completed in that
    # order), each compensation once; audit has none
    assert [r["step"] for r in compensations] == ["charge", "reserve-slow", "reserve-fast"]
    assert {r["fn"] for r in compensations} == {"undo"}
    # its own input, with expressions; else the step's input
    assert compensations[0]["input"] == {"amount": 42}
    assert compensations[1]["input"] == {"what": "reserve-slow", "slept": 0.2}
    assert compensations[2]["input"] == {"what": "reserve-fast"}
    # the first compensation ran only after the failure
    assert compensations[0]["t"] >= calls.of("ship")[0]["t"]
    # the outputs of compensated steps are kept
    assert doc["steps"]["charge"]["output"] == {"amount": 42}


def expect_deadline_fail(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "timed_out", (doc["status"], doc["error"])
    assert doc["error"]["type"] == "DeadlineExceeded"
    long = doc["steps"]["long"]
    assert long["status"] == "cancelled", "a running step is cancelled at the deadline"
    assert long["started_at"] is not None
    assert 0.25 <= seconds_between(doc["started_at"], doc["completed_at"]) < 2.0
    never_started(doc, "after")
    deadline = calls.of("long")[0]["deadline"]
    assert deadline is not None, "ctx.deadline: the execution's deadline"
    assert abs(deadline - parse_time(doc["started_at"]).timestamp() - 0.3) < 0.05


def expect_deadline_cancel(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "cancelled", (doc["status"], doc["error"])
    assert doc["error"]["type"] == "DeadlineExceeded"
    assert statuses(doc) == {"quick": "completed", "long": "cancelled", "after": "cancelled"}
    assert doc["steps"]["long"]["started_at"] is not None
    assert 0.25 <= seconds_between(doc["started_at"], doc["completed_at"]) < 2.0
    never_started(doc, "after")


def expect_deadline_child(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "timed_out", (doc["status"], doc["error"])
    assert doc["error"]["type"] == "DeadlineExceeded"
    assert doc["steps"]["kyc"]["status"] == "cancelled"
    assert 0.25 <= seconds_between(doc["started_at"], doc["completed_at"]) < 2.0
    assert calls.count("score", event="start") == 1
    assert calls.count("score", event="end") == 0


def expect_onboarding(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "completed", doc["error"]
    kyc = doc["steps"]["kyc"]
    assert kyc["status"] == "completed"
    # a sub-workflow step's output is the child's output (its output mapping)
    assert kyc["output"] == {"verdict": "clear:ada@example.com", "email": "ada@example.com"}
    assert doc["steps"]["welcome"]["output"] == {"verdict": "clear:ada@example.com"}
    child_call = calls.of("score")[0]
    assert child_call["execution"] != doc["execution_id"], "the child is its own execution"


def expect_onboarding_rejected(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "failed"
    review = doc["steps"]["review"]
    assert review["status"] == "completed"
    assert review["fallback_used"] is True
    assert review["output"] == {"verdict": "manual-review"}
    assert review["attempts"] == 1
    kyc = doc["steps"]["kyc"]
    assert kyc["status"] == "failed"
    assert kyc["attempts"] == 2, "a failed child is retried: one child per attempt"
    assert kyc["error"] is not None
    assert doc["error"]["step_id"] == "kyc"
    children = {r["execution"] for r in calls.of("score")}
    assert len(children) == 3
    assert doc["execution_id"] not in children
    never_started(doc, "welcome")


def expect_approval_timeout(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "failed"
    approve = doc["steps"]["approve"]
    assert approve["status"] == "timed_out"
    assert approve["error"]["type"] == "TimeoutError"
    assert 0.2 <= seconds_between(approve["started_at"], approve["completed_at"]) < 2.0
    assert doc["error"]["step_id"] == "approve"
    never_started(doc, "act")


def expect_sleep(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "completed", doc["error"]
    pause = doc["steps"]["pause"]
    assert pause["status"] == "completed"
    assert pause["output"] is None
    assert seconds_between(pause["started_at"], pause["completed_at"]) >= 0.25
    after = doc["steps"]["after"]
    assert parse_time(after["started_at"]) >= parse_time(pause["completed_at"])
    assert calls.of("after")[0]["t"] - calls.of("before")[0]["t"] >= 0.25


def expect_threads(doc: dict[str, Any], calls: Calls, threads: int, tasks: int) -> None:
    """Every call waited at a barrier for all the others: they ran at the same time."""
    assert doc["status"] == "completed", doc["error"]
    sync_calls = doc["steps"]["sync-calls"]["output"]
    assert sync_calls == [{"met": threads}] * threads
    async_calls = doc["steps"]["async-calls"]["output"]
    assert len(async_calls) == tasks
    assert calls.count("sync-calls", event="met") == threads
    assert calls.count("async-calls", event="met") == tasks


def expect_step_constant(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "completed", doc["error"]
    assert doc["steps"]["tailored"]["output"] == {"tailored": True, "function": "echo"}
    assert doc["steps"]["plain"]["output"] == {}
    assert [r["fn"] for r in calls.of("tailored")] == ["echo"]


def expect_no_input(doc: dict[str, Any], calls: Calls) -> None:
    assert doc["status"] == "completed", doc["error"]
    assert doc["input"] == {}
    assert doc["steps"]["only"]["output"] == {}
    assert doc["output"] == {"only": {}}
