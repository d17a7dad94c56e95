"""The engine workloads W1-W4, run embedded (durable SQLite store + in-process broker).

W1  N one-step workflows started concurrently: workflows/s end to end.
W2  N ten-step chains started concurrently: workflows/s and steps/s.
W3  one workflow fanning out to 50 parallel steps and joining: ms.
W4  a one-step workflow on an idle engine, one at a time: latency median and p99.

Nothing is skipped to get a number: every transition is committed to SQLite (WAL,
synchronous=NORMAL) before its tasks are published.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magicflow.dsl import compile_workflow
from magicflow.executor import Registry
from magicflow.service.engine import Engine

ONE_STEP = """
name: bench-one
version: "1"
steps:
  - id: only
    function: noop
"""


def chain_yaml(length: int) -> str:
    steps = ["  - id: s0\n    function: noop\n"]
    steps += [
        f"  - id: s{n}\n    function: noop\n    depends_on: [s{n - 1}]\n" for n in range(1, length)
    ]
    return f'name: bench-chain\nversion: "1"\nsteps:\n{"".join(steps)}'


def fan_out_yaml(width: int) -> str:
    steps = ["  - id: root\n    function: noop\n"]
    steps += [f"  - id: p{n}\n    function: noop\n    depends_on: [root]\n" for n in range(width)]
    joins = ", ".join(f"p{n}" for n in range(width))
    steps.append(f"  - id: join\n    function: noop\n    depends_on: [{joins}]\n")
    return f'name: bench-fan\nversion: "1"\nsteps:\n{"".join(steps)}'


async def noop(ctx: Any) -> dict[str, bool]:
    return {"ok": True}


@dataclass
class Row:
    workload: str
    measure: str
    value: float
    unit: str
    note: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)

    def add(self, workload: str, measure: str, value: float, unit: str, note: str = "") -> None:
        self.rows.append(Row(workload, measure, value, unit, note))


@asynccontextmanager
async def embedded_engine(directory: Path) -> AsyncIterator[Engine]:
    registry = Registry()
    registry.register("noop", noop)
    async with Engine(
        store=f"sqlite:///{directory / 'bench.db'}", broker="memory://", registry=registry
    ) as engine:
        await register_workloads(engine)
        yield engine


async def register_workloads(engine: Engine) -> None:
    for text in (ONE_STEP, chain_yaml(10), fan_out_yaml(50)):
        await engine.register(compile_workflow(text, "bench.yaml"))


async def _run_many(engine: Engine, workflow: str, count: int) -> float:
    """Start ``count`` executions at once and wait for all; seconds taken."""
    began = time.perf_counter()
    ids = await asyncio.gather(*(engine.start(workflow, {}) for _ in range(count)))
    results = await asyncio.gather(*(engine.wait(execution_id) for execution_id in ids))
    elapsed = time.perf_counter() - began
    failed = [r for r in results if r["status"] != "completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} {workflow} executions did not complete: {failed[0]}")
    return elapsed


async def run_all(w1: int, w2: int, w4: int) -> Results:
    results = Results()
    with tempfile.TemporaryDirectory() as tmp:
        async with embedded_engine(Path(tmp)) as engine:
            await run_workloads(engine, results, w1=w1, w2=w2, w4=w4)
        results.add("all", "peak RSS", _rss_mb(), "MB")
    return results


async def run_workloads(engine: Engine, results: Results, *, w1: int, w2: int, w4: int) -> None:
    """W1-W4 on an engine with the workloads registered and something running ``noop``."""
    await _run_many(engine, "bench-one", min(200, w1))  # warm up caches and the thread pool
    results.add("base", "RSS after start", _rss_mb(), "MB")

    elapsed = await _run_many(engine, "bench-one", w1)
    results.add("W1", f"{w1} one-step workflows", w1 / elapsed, "workflows/s")

    elapsed = await _run_many(engine, "bench-chain", w2)
    results.add("W2", f"{w2} ten-step chains", w2 / elapsed, "workflows/s")
    results.add("W2", "steps", w2 * 10 / elapsed, "steps/s")
    results.add("W2", "overhead per step", elapsed / (w2 * 10) * 1000, "ms", "wall / steps")

    samples = []
    for _ in range(5):
        samples.append(await _run_many(engine, "bench-fan", 1) * 1000)
    results.add("W3", "fan-out 50 + join", statistics.median(samples), "ms", "median of 5")

    latencies = []
    for _ in range(w4):
        began = time.perf_counter()
        await engine.wait(await engine.start("bench-one", {}))
        latencies.append((time.perf_counter() - began) * 1000)
    results.add("W4", "latency median", statistics.median(latencies), "ms")
    results.add("W4", "latency p99", percentile(latencies, 0.99), "ms")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * q) - 1)]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
