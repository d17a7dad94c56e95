"""W1-W4 over real stores and brokers: ``python -m bench distributed [--quick] [--pairs ...]``.

For each store + broker pair, on this machine: the orchestrator is an ``Engine`` in this process
(no local executor), and two ``magic-flow executor`` processes run the steps; both are started
and stopped here. Every run is isolated on the shared servers — a PostgreSQL schema or a Redis
key prefix of its own for the store, a broker namespace of its own (``?namespace=``) — and
removes them afterwards. Besides W1-W4 (see ``workloads.py``) each pair reports, on idle
servers before the workloads: the latency of committing one transition (a one-step workflow's
start) and of delivering one message (publish on one connection, receive on another).

Servers: ``MAGICFLOW_BENCH_POSTGRESQL_URL``, ``_REDIS_URL``, ``_AMQP_URL``, ``_NATS_URL``
(loopback defaults), ``_KAFKA_URL`` (default: a Tansu server started here, in-memory storage).
``--store URL --broker URL`` measures one pair of your own (the store and the broker's queues
are then left in place).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from bench.bench_broker import kafka_server
from bench.bench_store import _completes, _creates
from bench.workloads import Results, Row, percentile, register_workloads, run_workloads
from magicflow.brokers import RESULTS_QUEUE, broker_from_url
from magicflow.engine.partitions import DEFAULT_PARTITIONS, results_queue
from magicflow.service.engine import Engine
from magicflow.stores import store_from_url

SERVERS = {
    "postgresql": os.environ.get(
        "MAGICFLOW_BENCH_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "redis": os.environ.get("MAGICFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("MAGICFLOW_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "nats": os.environ.get("MAGICFLOW_BENCH_NATS_URL", "nats://127.0.0.1:4222"),
    "kafka": "",  # MAGICFLOW_BENCH_KAFKA_URL or a Tansu started for the run: see run_pairs
}
# column title -> (store server, broker server): adding a pair is one line here
PAIRS = {
    "PG+RabbitMQ": ("postgresql", "rabbitmq"),
    "PG+Redis": ("postgresql", "redis"),
    "Redis+Redis": ("redis", "redis"),
    "PG+NATS": ("postgresql", "nats"),
    "PG+Kafka": ("postgresql", "kafka"),
}
# (workload, measure) -> its target, shown in the last column
TARGETS = {
    ("store", "commit 1 transition, median"): "< 2 ms Redis, < 10 ms PostgreSQL",
    ("broker", "deliver 1 message, median"): "< 5 ms",
    ("W2", "steps per executor"): "> 1,000 steps/s",
}
EXECUTORS = 2
HANDLERS = """\
import magicflow


@magicflow.function
async def noop(ctx):
    return {"ok": True}
"""
LATENCY_SAMPLES = 200
# every queue a run may use: tasks, results (one queue per partition when the store has leases)
QUEUES = ("default", "latency", RESULTS_QUEUE, *map(results_queue, range(DEFAULT_PARTITIONS)))


@dataclass
class Pair:
    title: str
    store: str
    broker: str
    tag: str = ""  # the schema, key prefix and namespace made for the run ("": the user's own)


@asynccontextmanager
async def isolated(title: str, store_kind: str, broker_kind: str) -> AsyncIterator[Pair]:
    """URLs on the shared servers that nothing else uses; removed afterwards."""
    tag = f"bench_{uuid.uuid4().hex[:10]}"
    if store_kind == "postgresql":
        store = f"{SERVERS['postgresql']}?schema={tag}"
    else:
        store = f"{SERVERS[store_kind]}?prefix={tag}:"
    broker = f"{SERVERS[broker_kind]}?namespace={tag}"
    try:
        yield Pair(title, store, broker, tag)
    finally:
        try:
            await _drop_queues(broker)
        finally:
            await _drop_store(store_kind, tag)


async def _drop_queues(url: str) -> None:
    broker = broker_from_url(url)
    await broker.connect()
    try:
        for queue in QUEUES:
            await broker.delete_queue(queue)  # type: ignore[attr-defined]
    finally:
        await broker.close()


async def _drop_store(kind: str, tag: str) -> None:
    if kind == "postgresql":
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(SERVERS["postgresql"])
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')
        finally:
            await conn.close()
        return
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(SERVERS[kind])
    try:
        keys = [key async for key in client.scan_iter(match=f"{tag}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


async def store_latencies(url: str, samples: int) -> list[float]:
    """ms per commit of one transition (creates, then completions), one at a time."""
    store = store_from_url(url)
    await store.open()
    try:
        prefix = f"{uuid.uuid4().hex[:8]}-"
        took: list[float] = []
        for transitions in (_creates(prefix, samples // 2), _completes(prefix, samples // 2)):
            for transition in transitions:
                began = time.perf_counter()
                result = await store.commit([transition], [])
                took.append((time.perf_counter() - began) * 1000)
                if result.outbox:
                    await store.delete_outbox([m.id for m in result.outbox])
        return took
    finally:
        await store.close()


async def delivery_latencies(url: str, samples: int) -> list[float]:
    """ms from ``publish`` on one connection to ``receive`` on another, one message at a time."""
    sender, receiver = broker_from_url(url), broker_from_url(url)
    await sender.connect()
    await receiver.connect()
    try:
        await sender.publish("latency", [b"set-up"])  # the consumer exists (a Kafka one has
        await receiver.ack(await receiver.receive("latency", 1, 30.0))  # joined its group)
        took: list[float] = []
        for n in range(samples):
            began = time.perf_counter()
            await sender.publish("latency", [b"%d" % n])
            got = await receiver.receive("latency", 1, 5.0)
            took.append((time.perf_counter() - began) * 1000)
            if not got:
                raise RuntimeError(f"{url}: a message was not delivered within 5 s")
            await receiver.ack(got)
        return took
    finally:
        await sender.close()
        await receiver.close()


class Executors:
    """``magic-flow executor`` processes serving the pair's broker, stopped with SIGTERM."""

    def __init__(self, broker: str, count: int, workdir: Path) -> None:
        (workdir / "bench_handlers.py").write_text(HANDLERS, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAGICFLOW_")}
        command = [sys.executable, "-m", "magicflow", "executor", "--handlers"]
        command += ["bench_handlers.py", "--broker", broker, "--shutdown-grace", "5"]
        self.logs = [workdir / f"executor-{n}.log" for n in range(count)]
        self.processes = []
        for log in self.logs:
            with log.open("wb") as out:
                self.processes.append(subprocess.Popen(command, cwd=workdir, env=env, stderr=out))

    def check(self) -> None:
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"an executor exited ({process.returncode}):\n{tail}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def measure(pair: Pair, *, w1: int, w2: int, w4: int, samples: int) -> Results:
    results = Results()
    commits = await store_latencies(pair.store, samples)
    results.add("store", "commit 1 transition, median", percentile(commits, 0.5), "ms")
    results.add("store", "commit 1 transition, p99", percentile(commits, 0.99), "ms")
    deliveries = await delivery_latencies(pair.broker, samples)
    results.add("broker", "deliver 1 message, median", percentile(deliveries, 0.5), "ms")
    results.add("broker", "deliver 1 message, p99", percentile(deliveries, 0.99), "ms")
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        executors = Executors(pair.broker, EXECUTORS, Path(tmp))
        try:
            async with Engine(store=pair.store, broker=pair.broker, registry=None) as engine:
                await register_workloads(engine)
                watch = asyncio.create_task(_watch(executors))
                try:
                    await run_workloads(engine, results, w1=w1, w2=w2, w4=w4)
                finally:
                    watch.cancel()
        finally:
            executors.stop()
    steps = next(r.value for r in results.rows if r.workload == "W2" and r.measure == "steps")
    after_w2 = max(n for n, r in enumerate(results.rows) if r.workload == "W2") + 1
    per_executor = Row("W2", "steps per executor", steps / EXECUTORS, "steps/s")
    results.rows.insert(after_w2, per_executor)
    return results


async def _watch(executors: Executors) -> None:
    """Fail the run (instead of hanging) if an executor dies."""
    while True:
        await asyncio.sleep(1.0)
        executors.check()


async def run_pairs(
    pairs: dict[str, tuple[str, str]], *, w1: int, w2: int, w4: int, samples: int
) -> dict[str, Results]:
    measured: dict[str, Results] = {}
    async with servers_for(pairs):
        for title, (store_kind, broker_kind) in pairs.items():
            async with isolated(title, store_kind, broker_kind) as pair:
                measured[title] = await _bounded(pair, w1=w1, w2=w2, w4=w4, samples=samples)
    return measured


@asynccontextmanager
async def servers_for(pairs: dict[str, tuple[str, str]]) -> AsyncIterator[None]:
    """Servers the pairs need that are not always there (Kafka: a Tansu for the run)."""
    kafka = any(broker == "kafka" for _, broker in pairs.values())
    async with kafka_server() if kafka else nullcontext(None) as kafka_url:
        if kafka:
            if kafka_url is None:
                raise RuntimeError("no Kafka server: set MAGICFLOW_BENCH_KAFKA_URL")
            SERVERS["kafka"] = kafka_url
        yield


async def _bounded(pair: Pair, **counts: int) -> Results:
    async with asyncio.timeout(600):
        return await measure(pair, **counts)


def table(measured: dict[str, Results]) -> str:
    """One row per measure, one column per pair, then the target."""
    titles = list(measured)
    rows: dict[tuple[str, str], dict[str, str]] = {}
    units: dict[tuple[str, str], str] = {}
    for title, results in measured.items():
        for row in results.rows:
            key = (row.workload, row.measure)
            rows.setdefault(key, {})[title] = f"{row.value:,.1f}"
            units[key] = row.unit
    lines = [
        "| workload | measure | unit | " + " | ".join(titles) + " | target |",
        "|---|---|---|" + "---:|" * len(titles) + "---|",
    ]
    for key, values in rows.items():
        cells = " | ".join(values.get(title, "") for title in titles)
        lines.append(f"| {key[0]} | {key[1]} | {units[key]} | {cells} | {TARGETS.get(key, '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench distributed", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--pairs",
        help=f"comma-separated, of: {', '.join(PAIRS)} (default: all)",
        type=lambda text: [p.strip() for p in text.split(",") if p.strip()],
    )
    parser.add_argument("--store", help="a store URL of your own (with --broker)")
    parser.add_argument("--broker", help="a broker URL of your own (with --store)")
    args = parser.parse_args(argv)
    w1, w2, w4 = (300, 30, 30) if args.quick else (5_000, 500, 300)
    samples = 50 if args.quick else LATENCY_SAMPLES
    if (args.store is None) != (args.broker is None):
        parser.error("--store and --broker go together")
    unknown = sorted(set(args.pairs or []) - set(PAIRS))
    if unknown:
        parser.error(f"unknown pair {unknown[0]!r}: choose from {', '.join(PAIRS)}")
    if args.store is not None:
        pair = Pair("yours", args.store, args.broker)
        measured = {"yours": asyncio.run(_bounded(pair, w1=w1, w2=w2, w4=w4, samples=samples))}
    else:
        chosen = {title: PAIRS[title] for title in args.pairs or PAIRS}
        measured = asyncio.run(run_pairs(chosen, w1=w1, w2=w2, w4=w4, samples=samples))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"Magic Flow distributed: 1 orchestrator (this process) + {EXECUTORS} executor "
        f"processes, Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average {load}"
    )
    print(table(measured))
    return 0
