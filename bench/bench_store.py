"""Transitions per second through a store, at several group-commit sizes.

``python -m bench.bench_store [--count N] [--store URL]``: a temporary SQLite file by default;
``--store postgresql://postgres@127.0.0.1:5432/test?schema=bench`` or
``--store redis://127.0.0.1:6379/0?prefix=bench:`` measures those (the rows are left there,
under ids unique to the run: point it at a scratch schema or prefix). Each transition is what a
one-step workflow's start writes: a new execution state (~600 bytes), one outbox message, one
event record; then a second transition per execution completes it (state update, outbox rows
deleted).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from magicflow.stores import Transition, store_from_url

STATE = (
    b'{"id":"x","workflow":"bench","version":"1","status":"running",' + b'"x":' + b"1" * 520 + b"}"
)
TASK = b'{"id":"t","workflow_id":"bench@1","execution_id":"x","step_id":"only","function":"noop"}'


def _creates(prefix: str, count: int) -> list[Transition]:
    return [
        Transition(
            execution_id=f"{prefix}{n:08d}",
            expected_version=0,
            state=STATE,
            workflow="bench",
            workflow_version="1",
            status="running",
            parent_id=None,
            created_at=1.0,
            updated_at=1.0,
            outbox=[("default", TASK)],
            events=b'[{"kind":"execution.started"}]',
        )
        for n in range(count)
    ]


def _completes(prefix: str, count: int) -> list[Transition]:
    return [
        Transition(
            execution_id=f"{prefix}{n:08d}",
            expected_version=1,
            state=STATE,
            workflow="bench",
            workflow_version="1",
            status="completed",
            parent_id=None,
            created_at=1.0,
            updated_at=2.0,
            events=b'[{"kind":"execution.completed"}]',
        )
        for n in range(count)
    ]


async def measure(url: str, count: int, batch: int) -> float:
    """Transitions per second: ``count`` creates then ``count`` completions, ``batch`` a commit."""
    store = store_from_url(url)
    await store.open()
    prefix = f"{uuid.uuid4().hex[:8]}-b{batch}-"
    creates, completes = _creates(prefix, count), _completes(prefix, count)
    began = time.perf_counter()
    done: list[int] = []
    for start in range(0, count, batch):
        result = await store.commit(creates[start : start + batch], done)
        done = [m.id for m in result.outbox]
    for start in range(0, count, batch):
        await store.commit(completes[start : start + batch], done)
        done = []
    elapsed = time.perf_counter() - began
    await store.close()
    return 2 * count / elapsed


async def main(count: int, store: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"store: {store or 'sqlite (temporary file)'}")
        for batch in (1, 10, 100, 1000):
            n = count // 10 if batch == 1 else count
            url = store or f"sqlite:///{Path(tmp) / f'store-{batch}.db'}"
            rate = await measure(url, n, batch)
            print(f"batch {batch:>5}: {rate:>10,.0f} transitions/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.bench_store", description=__doc__)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--store", help="store URL (default: a temporary SQLite file)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.count, arguments.store))
