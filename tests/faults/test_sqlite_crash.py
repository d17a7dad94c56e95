"""kill -9 at random moments: nothing lost, no result applied twice, compensations once.

A child process (``crash_worker.py``) runs hundreds of executions against a SQLite file with
a local executor whose functions append each call to a ledger. The test SIGKILLs it at random
moments many times, restarts it, lets the last run finish, then reads the store and checks:

- every execution exists (starts are idempotent) and ended as its input says it must;
- each step's ``attempts`` is exactly what the policy gives (1, or 2 for a failing finish):
  a result delivered again after a restart was not applied twice;
- the attempts the ledger saw are exactly 1..attempts (a task may have *run* twice, at least
  once delivery, but always as the same attempt);
- every failed execution compensated ``reserve`` with one compensation task.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest

from magicflow.engine.model import ExecutionState
from magicflow.stores.sqlite import SQLiteStore

WORKER = Path(__file__).with_name("crash_worker.py")
COUNT = 300
KILLS = 15


def _spawn(db: Path, ledger: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(db), str(ledger), str(COUNT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def _states(db: Path) -> list[ExecutionState]:
    store = SQLiteStore(db)
    await store.open()
    try:
        page = await store.list_executions(limit=COUNT * 2)
        return [msgspec.json.decode(r.state, type=ExecutionState) for r in page.items]
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_at_random_moments_loses_and_repeats_nothing(tmp_path: Path) -> None:
    db, ledger = tmp_path / "crash.db", tmp_path / "ledger.jsonl"
    rng = random.Random(int(os.environ.get("MAGICFLOW_CRASH_SEED", "20261125")))
    kills = 0
    for _ in range(KILLS):
        worker = _spawn(db, ledger)
        time.sleep(rng.uniform(0.4, 2.5))
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            kills += 1
        worker.communicate()
    final = _spawn(db, ledger)
    _out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()[-3000:]
    assert kills >= KILLS // 2, "the workers finished before they could be killed"

    states = asyncio.run(_states(db))
    assert len(states) == COUNT
    assert sorted(s.input["n"] for s in states) == list(range(COUNT))

    seen: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    tasks: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    lines = ledger.read_text().splitlines()
    for line in lines:
        execution_id, step_id, step_type, attempt, task_id = json.loads(line)
        seen[(execution_id, step_id, step_type)].add(attempt)
        tasks[(execution_id, step_id, step_type)].add(task_id)
    reruns = len(lines) - sum(len(t) for t in tasks.values())
    print(f"{kills} kills; {len(lines)} calls, {reruns} of them a task run again after a kill")
    assert reruns > 0, "no kill landed while a task was running: the test proved nothing"

    for state in states:
        n, eid = state.input["n"], state.id
        failing = n % 5 == 0
        assert state.status == ("failed" if failing else "completed"), (n, state.status)
        steps = state.steps
        assert steps["reserve"].attempts == 1
        assert steps["charge"].attempts == 1
        assert steps["finish"].attempts == (2 if failing else 1)
        for step_id in ("reserve", "charge", "finish"):
            expected = set(range(1, steps[step_id].attempts + 1))
            assert seen[(eid, step_id, "function")] == expected, (n, step_id)
        compensations = tasks.get((eid, "reserve", "compensation"), set())
        if failing:
            assert str(steps["reserve"].status) == "compensated", n
            assert len(compensations) == 1, (n, compensations)
        else:
            assert not compensations
