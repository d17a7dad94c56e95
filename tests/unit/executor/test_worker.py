"""The executor end to end against the real in-process broker."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from magicflow.brokers.base import RESULTS_QUEUE, Delivery
from magicflow.brokers.memory import MemoryBroker
from magicflow.errors import BrokerError, StepCancelled
from magicflow.executor import Executor, Registry, StepContext
from magicflow.messages import encode

from .helpers import collect_results, eventually, make_task, no_results


class RecordingBroker(MemoryBroker):
    """The in-process broker, noting the order of publishes and settlements."""

    def __init__(self, visibility_timeout: float = 30.0) -> None:
        super().__init__(visibility_timeout)
        self.calls: list[tuple[str, int]] = []
        self.fail_publishes = 0

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        if queue == RESULTS_QUEUE:
            if self.fail_publishes:
                self.fail_publishes -= 1
                raise BrokerError("broker unavailable")
            self.calls.append(("publish", len(bodies)))
        await super().publish(queue, bodies)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries and deliveries[0].queue != RESULTS_QUEUE:
            self.calls.append(("ack", len(deliveries)))
        await super().ack(deliveries)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        self.calls.append(("extend", len(deliveries)))
        await super().extend(deliveries, seconds)


class DyingBroker:
    """A view of a broker from a process that can die: once dead, nothing it sends arrives."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.visibility_timeout = broker.visibility_timeout
        self.dead = False

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        if not self.dead:
            await self.broker.publish(queue, bodies)

    async def receive(self, queue: str, max_messages: int, wait: float) -> list[Delivery]:
        return await self.broker.receive(queue, max_messages, wait)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not self.dead:
            await self.broker.ack(deliveries)

    async def nack(
        self, deliveries: Sequence[Delivery], *, requeue: bool = True, delay: float = 0.0
    ) -> None:
        if not self.dead:
            await self.broker.nack(deliveries, requeue=requeue, delay=delay)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        if not self.dead:
            await self.broker.extend(deliveries, seconds)

    async def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        if not self.dead:
            await self.broker.dead_letter(deliveries, reason)

    async def dead_letters(self, queue: str, limit: int = 100) -> list[tuple[bytes, str]]:
        return await self.broker.dead_letters(queue, limit)


@pytest.fixture
def registry() -> Registry:
    registry = Registry()

    @registry.function
    async def echo(ctx: StepContext) -> Any:
        return ctx.input

    @registry.function
    def sync_echo(ctx: StepContext) -> Any:
        return ctx.input

    @registry.function
    def boom(ctx: StepContext) -> None:
        raise ValueError("boom")

    return registry


async def publish(broker: MemoryBroker, *tasks: Any, queue: str = "default") -> None:
    await broker.publish(queue, [encode(task) for task in tasks])


# ------------------------------------------------------------------ end to end


async def test_n_tasks_give_n_results(registry: Registry) -> None:
    broker = RecordingBroker()
    tasks = [make_task("echo" if i % 2 else "sync_echo", {"i": i}) for i in range(200)]
    tasks.append(make_task("boom"))
    await publish(broker, *tasks)
    async with Executor(broker, registry, executor_id="ex-1"):
        results = await collect_results(broker, len(tasks))
    by_task = {r.task_id: r for r in results}
    assert len(by_task) == len(tasks)
    for task in tasks[:-1]:
        result = by_task[task.id]
        assert (result.status, result.output, result.executor_id) == (
            "completed",
            task.input,
            "ex-1",
        )
    failed = by_task[tasks[-1].id]
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.type == "ValueError"
    assert broker.depth("default") == 0  # every task delivery was acked
    # results go out in batches, each publish before the acks of its deliveries
    publishes = [n for call, n in broker.calls if call == "publish"]
    assert sum(publishes) == len(tasks)
    assert len(publishes) < len(tasks)
    published = acked = 0
    for call, n in broker.calls:
        if call == "publish":
            published += n
        elif call == "ack":
            acked += n
            assert acked <= published


async def test_several_queues(registry: Registry) -> None:
    broker = MemoryBroker()
    first, second = make_task("echo", 1, queue="default"), make_task("echo", 2, queue="email")
    await publish(broker, first)
    await publish(broker, second, queue="email")
    async with Executor(broker, registry, queues=["default", "email"], concurrency=4):
        results = await collect_results(broker, 2)
    assert {r.task_id for r in results} == {first.id, second.id}


async def test_concurrency_limit(registry: Registry) -> None:
    active = peak = 0

    @registry.function
    async def busy(ctx: StepContext) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1

    broker = MemoryBroker()
    await publish(broker, *(make_task("busy") for _ in range(40)))
    async with Executor(broker, registry, concurrency=5) as executor:
        await collect_results(broker, 40)
        assert executor.held <= 5
    assert peak == 5


async def test_async_tasks_run_concurrently_by_default(registry: Registry) -> None:
    @registry.function
    async def nap(ctx: StepContext) -> None:
        await asyncio.sleep(0.3)

    broker = MemoryBroker()
    await publish(broker, *(make_task("nap") for _ in range(100)))
    started = time.monotonic()
    async with Executor(broker, registry):
        await collect_results(broker, 100)
    assert time.monotonic() - started < 2.5


async def test_publish_failure_is_retried_before_acking(registry: Registry) -> None:
    broker = RecordingBroker()
    broker.fail_publishes = 2
    task = make_task("echo", "x")
    await publish(broker, task)
    async with Executor(broker, registry):
        [result] = await collect_results(broker, 1)
    assert result.task_id == task.id
    assert broker.depth("default") == 0


async def test_same_task_delivered_twice_while_running_runs_once(registry: Registry) -> None:
    calls = 0

    @registry.function
    async def once(ctx: StepContext) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return calls

    broker = MemoryBroker()
    task = make_task("once")
    await publish(broker, task, task)  # re-dispatched with the same task id
    async with Executor(broker, registry):
        [result] = await collect_results(broker, 1)
        await eventually(lambda: broker.depth("default") == 0)  # both deliveries acked
    assert (result.task_id, result.output, calls) == (task.id, 1, 1)
    assert await no_results(broker, 0.05)


async def test_step_raising_step_cancelled_gets_a_failed_result(registry: Registry) -> None:
    @registry.function
    def gives_up(ctx: StepContext) -> None:
        raise StepCancelled("not worth it")

    broker = MemoryBroker()
    await publish(broker, make_task("gives_up"))
    async with Executor(broker, registry):
        [result] = await collect_results(broker, 1)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "StepCancelled"


# ------------------------------------------------------------------ bad messages


async def test_undecodable_message_is_dead_lettered(registry: Registry) -> None:
    broker = MemoryBroker()
    await broker.publish("default", [b"not json", b'{"id": 1}'])
    good = make_task("echo", "fine")
    await publish(broker, good)
    async with Executor(broker, registry):
        [result] = await collect_results(broker, 1)
        await eventually(lambda: broker.depth("default") == 0)
    assert result.task_id == good.id
    dead = await broker.dead_letters("default")
    assert sorted(body for body, _ in dead) == [b"not json", b'{"id": 1}']
    assert all(reason.startswith("undecodable task message: ") for _, reason in dead)
    assert await no_results(broker, 0.05)


async def test_poison_message(registry: Registry) -> None:
    broker = MemoryBroker()
    task = make_task("echo", "never runs")
    await publish(broker, task)
    for _ in range(2):  # two deliveries that "crashed" their consumer
        deliveries = await broker.receive("default", 1, 0.1)
        await broker.nack(deliveries)
    async with Executor(broker, registry, max_deliveries=2):
        [result] = await collect_results(broker, 1)
        await eventually(lambda: broker.depth("default") == 0)
    assert result.task_id == task.id
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "PoisonMessage"
    assert result.error.non_retryable
    [(body, reason)] = await broker.dead_letters("default")
    assert body == encode(task)
    assert "delivered 3 times" in reason
    assert "max_deliveries is 2" in reason


# ------------------------------------------------------------------ heartbeats and redelivery


async def test_heartbeats_keep_a_long_task_invisible(registry: Registry) -> None:
    @registry.function
    async def long(ctx: StepContext) -> str:
        await asyncio.sleep(0.8)
        return "done"

    broker = RecordingBroker(visibility_timeout=0.3)
    task = make_task("long")
    await publish(broker, task)
    async with Executor(broker, registry) as executor:
        await eventually(lambda: executor.running == 1)
        # another consumer sees nothing while the task runs past the visibility timeout
        assert await broker.receive("default", 10, 0.7) == []
        [result] = await collect_results(broker, 1)
    assert result.output == "done"
    assert ("extend", 1) in broker.calls


async def test_redelivery_after_a_worker_dies(registry: Registry) -> None:
    calls = 0
    started = asyncio.Event()

    @registry.function
    async def fragile(ctx: StepContext) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            await asyncio.Event().wait()  # the first worker never finishes
        return calls

    broker = MemoryBroker(visibility_timeout=0.3)
    task = make_task("fragile")
    await publish(broker, task)
    dying = DyingBroker(broker)
    first = Executor(dying, registry, executor_id="doomed")
    async with asyncio.TaskGroup() as tg:
        life = tg.create_task(first.run_until_stopped())
        await started.wait()
        dying.dead = True  # nothing it sends arrives any more: no ack, no nack
        life.cancel()
    assert life.cancelled()  # the cancellation went through the executor unchanged
    assert broker.depth("default") == 1  # still in flight, unacknowledged
    async with Executor(broker, registry, executor_id="survivor"):
        [result] = await collect_results(broker, 1)
    assert (result.task_id, result.output, result.executor_id) == (task.id, 2, "survivor")
    assert broker.depth("default") == 0


# ------------------------------------------------------------------ cancel(task_id)


async def test_cancel_a_running_async_task(registry: Registry) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @registry.function
    async def forever(ctx: StepContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    broker = MemoryBroker()
    task = make_task("forever")
    await publish(broker, task)
    async with Executor(broker, registry) as executor:
        await started.wait()
        assert executor.cancel("no-such-task") is False
        assert executor.cancel(task.id) is True
        await cancelled.wait()
        await eventually(lambda: broker.depth("default") == 0)  # acked, not redelivered
        assert executor.running == 0
    assert await no_results(broker)


async def test_cancel_a_running_sync_task_abandons_it(registry: Registry) -> None:
    started = threading.Event()
    noticed = threading.Event()

    @registry.function
    def grind(ctx: StepContext) -> str:
        started.set()
        for _ in range(500):
            if ctx.cancelled:
                noticed.set()
                break
            time.sleep(0.01)
        return "finished anyway"

    broker = MemoryBroker()
    task = make_task("grind")
    await publish(broker, task)
    async with Executor(broker, registry) as executor:
        assert await asyncio.to_thread(started.wait, 5)
        assert executor.cancel(task.id)
        await eventually(lambda: broker.depth("default") == 0)
        assert await asyncio.to_thread(noticed.wait, 5)
    assert await no_results(broker)


# ------------------------------------------------------------------ shutdown


async def test_graceful_shutdown_finishes_running_tasks(registry: Registry) -> None:
    @registry.function
    async def short(ctx: StepContext) -> str:
        await asyncio.sleep(0.2)
        return "finished"

    broker = MemoryBroker()
    tasks = [make_task("short") for _ in range(3)]
    await publish(broker, *tasks)
    async with Executor(broker, registry, shutdown_grace=5) as executor:
        await eventually(lambda: executor.running == 3)
    # on exit the running tasks were allowed to finish, and their results were published
    results = await collect_results(broker, 3, within=0.5)
    assert {r.output for r in results} == {"finished"}
    assert broker.depth("default") == 0


async def test_shutdown_cancels_what_outlives_the_grace_period(registry: Registry) -> None:
    @registry.function
    async def very_long(ctx: StepContext) -> None:
        await asyncio.sleep(10)

    @registry.function
    def very_long_sync(ctx: StepContext) -> None:
        time.sleep(10)

    broker = MemoryBroker()
    tasks = [make_task("very_long"), make_task("very_long_sync")]
    await publish(broker, *tasks)
    started = time.monotonic()
    async with Executor(broker, registry, shutdown_grace=0.2) as executor:
        await eventually(lambda: executor.running == 2)
    assert time.monotonic() - started < 3
    assert await no_results(broker, 0.05)
    # nacked: ready to run again elsewhere at once
    redelivered = await broker.receive("default", 10, 0.1)
    assert sorted(d.body for d in redelivered) == sorted(encode(t) for t in tasks)
    assert {d.delivery_count for d in redelivered} == {2}


async def test_an_error_in_the_body_gives_running_tasks_back(registry: Registry) -> None:
    @registry.function
    async def very_long(ctx: StepContext) -> None:
        await asyncio.sleep(10)

    broker = MemoryBroker()
    task = make_task("very_long")
    await publish(broker, task)

    async def caller() -> None:
        async with Executor(broker, registry, shutdown_grace=30) as executor:
            await eventually(lambda: executor.running == 1)
            raise RuntimeError("caller failed")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="caller failed"):
        await caller()
    assert time.monotonic() - started < 3
    [delivery] = await broker.receive("default", 10, 0.1)  # nacked at once, no grace period
    assert delivery.body == encode(task)


async def test_run_until_stopped(registry: Registry) -> None:
    broker = MemoryBroker()
    executor = Executor(broker, registry, receive_wait=0.05)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(executor.run_until_stopped())
        task = make_task("echo", 1)
        await publish(broker, task)
        [result] = await collect_results(broker, 1)
        executor.stop()
    assert result.task_id == task.id
    with pytest.raises(RuntimeError, match="only once"):
        async with executor:
            pass


def test_bad_arguments(registry: Registry) -> None:
    broker = MemoryBroker()
    with pytest.raises(ValueError, match="queue"):
        Executor(broker, registry, queues=())
    with pytest.raises(ValueError, match="concurrency"):
        Executor(broker, registry, concurrency=0)
    with pytest.raises(ValueError, match="heartbeat_fraction"):
        Executor(broker, registry, heartbeat_fraction=1.5)
    assert Executor(broker, registry).visibility_timeout == broker.visibility_timeout
