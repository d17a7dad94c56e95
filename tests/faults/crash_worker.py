"""The child process of ``test_sqlite_crash``: runs COUNT executions against a SQLite file.

    python tests/faults/crash_worker.py DB LEDGER COUNT

Every business function appends what it did to LEDGER (one JSON line, O_APPEND: a line
written before a SIGKILL is kept). Starts use idempotency keys, so a restarted worker starts
only what its killed predecessor had not; then it waits for every execution and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from typing import Any

from magicflow.dsl import compile_workflow
from magicflow.executor import Registry
from magicflow.service import Engine

WORKFLOW = """
name: crashy
version: "1"
steps:
  - id: reserve
    function: reserve
    input: {n: "${input.n}"}
    compensation: {function: release}
  - id: charge
    function: charge
    depends_on: [reserve]
    input: {n: "${input.n}"}
  - id: finish
    function: finish
    depends_on: [charge]
    input: {n: "${input.n}"}
    retry_config: {strategy: fixed, max_attempts: 2, initial_interval: 20ms, jitter: false}
"""


def registry(ledger: int) -> Registry:
    def record(ctx: Any) -> None:
        line = [ctx.execution_id, ctx.step_id, ctx.step_type, ctx.attempt, ctx.task_id]
        os.write(ledger, (json.dumps(line) + "\n").encode())

    async def step(ctx: Any) -> dict[str, Any]:
        record(ctx)  # the side effect happens first: a kill now means it happens again
        await asyncio.sleep(random.uniform(0.01, 0.3))
        return {"n": ctx.input["n"]}

    async def finish(ctx: Any) -> dict[str, Any]:
        record(ctx)
        await asyncio.sleep(random.uniform(0.01, 0.3))
        if ctx.input["n"] % 5 == 0:
            raise RuntimeError("declined")
        return {"n": ctx.input["n"]}

    functions = Registry()
    functions.register("reserve", step)
    functions.register("charge", step)
    functions.register("finish", finish)
    functions.register("release", step)
    return functions


async def main(db: str, ledger_path: str, count: int) -> None:
    ledger = os.open(ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    async with Engine(
        store=f"sqlite:///{db}", registry=registry(ledger), concurrency=20, shutdown_grace=1
    ) as engine:
        await engine.register(compile_workflow(WORKFLOW, "crashy.yaml"))
        ids = []
        for first in range(0, count, 50):
            ids += await asyncio.gather(
                *(
                    engine.start("crashy", {"n": n}, idempotency_key=f"n{n}")
                    for n in range(first, min(first + 50, count))
                )
            )
        results = await asyncio.gather(*(engine.wait(i) for i in ids))
    statuses = [r["status"] for r in results]
    print(json.dumps({s: statuses.count(s) for s in set(statuses)}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
