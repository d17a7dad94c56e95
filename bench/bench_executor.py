"""Executor throughput: tasks/s through MemoryBroker → Executor → results queue.

Plain script: ``python bench/bench_executor.py [N]``. Publishes N tasks up front, runs one
Executor until N results are on the results queue (a consumer takes and acks them as they
come), and prints wall-clock tasks/s and CPU time per task, for a trivial async and a
trivial sync function.
"""

from __future__ import annotations

import asyncio
import sys
import time

from magicflow.brokers.base import RESULTS_QUEUE
from magicflow.brokers.memory import MemoryBroker
from magicflow.executor import Executor, Registry, StepContext
from magicflow.messages import TaskMessage, encode

registry = Registry()


@registry.function
async def trivial_async(ctx: StepContext) -> dict[str, int]:
    return {"n": ctx.input["n"] + 1}


@registry.function
def trivial_sync(ctx: StepContext) -> dict[str, int]:
    return {"n": ctx.input["n"] + 1}


async def measure(function: str, count: int) -> tuple[float, float]:
    """Wall-clock tasks/s and CPU microseconds per task."""
    broker = MemoryBroker()
    now = time.time()
    bodies = [
        encode(
            TaskMessage(
                id=f"task-{i}",
                workflow_id="bench@1",
                execution_id=f"exec-{i}",
                step_id="step",
                function=function,
                input={"n": i},
                attempt=1,
                created_at=now,
            )
        )
        for i in range(count)
    ]
    await broker.publish("default", bodies)
    wall, cpu = time.perf_counter(), time.process_time()
    received = 0
    async with Executor(broker, registry, concurrency=100):
        while received < count:
            deliveries = await broker.receive(RESULTS_QUEUE, 1000, 5.0)
            if not deliveries:
                raise RuntimeError(f"stalled after {received} results")
            received += len(deliveries)
            await broker.ack(deliveries)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count / wall, cpu / count * 1e6


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(f"executor throughput, MemoryBroker, concurrency 100, {count} tasks each")
    print(f"{'function':<16}{'tasks/s':>10}{'CPU µs/task':>14}")
    for function, n in (("trivial_async", count), ("trivial_sync", count // 2)):
        asyncio.run(measure(function, min(n, 1000)))  # warm-up
        rate, cpu_us = asyncio.run(measure(function, n))
        print(f"{function:<16}{rate:>10,.0f}{cpu_us:>14.1f}")


if __name__ == "__main__":
    main()
