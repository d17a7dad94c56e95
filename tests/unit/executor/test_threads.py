from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from magicflow.executor import DaemonThreadPool

from .helpers import eventually

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@pytest.fixture
def pool() -> object:
    pool = DaemonThreadPool(4)
    yield pool
    pool.shutdown()


async def test_result_exception_and_contextvars(pool: DaemonThreadPool) -> None:
    assert await pool.submit(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        await pool.submit(lambda: 1 / 0)
    request_id.set("r-1")
    assert await pool.submit(request_id.get) == "r-1"


async def test_threads_are_daemons_started_on_demand(pool: DaemonThreadPool) -> None:
    assert pool.threads == 0
    thread = await pool.submit(threading.current_thread)
    assert thread.daemon
    assert pool.threads == 1
    # an idle thread is reused
    assert await pool.submit(threading.current_thread) is thread


async def test_at_most_max_workers_at_once(pool: DaemonThreadPool) -> None:
    lock = threading.Lock()
    active, peak = 0, 0
    release = threading.Event()

    def work() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        release.wait(5)
        with lock:
            active -= 1

    futures = [pool.submit(work) for _ in range(10)]
    await eventually(lambda: peak == 4)
    await asyncio.sleep(0.05)
    assert peak == 4
    release.set()
    await asyncio.gather(*futures)
    assert peak == 4
    assert pool.threads == 4


async def test_cancelled_future_abandons_a_running_call(pool: DaemonThreadPool) -> None:
    release = threading.Event()
    finished = threading.Event()

    started: list[int] = []

    def stuck() -> str:
        started.append(1)
        release.wait(5)
        finished.set()
        return "late"

    futures = [pool.submit(stuck) for _ in range(4)]
    await eventually(lambda: len(started) == 4)
    for future in futures:
        future.cancel()
    await eventually(lambda: pool.abandoned == 4)
    # the pool still has capacity: a replacement thread runs new work
    assert await asyncio.wait_for(pool.submit(lambda: "fresh"), 2) == "fresh"
    release.set()
    assert await asyncio.to_thread(finished.wait, 2)
    await eventually(lambda: pool.abandoned == 0)


async def test_cancelled_before_it_started_never_runs() -> None:
    pool = DaemonThreadPool(1)
    release = threading.Event()
    ran: list[str] = []
    try:
        first = pool.submit(release.wait, 5)
        second = pool.submit(ran.append, "second")
        second.cancel()
        await asyncio.sleep(0.01)
        release.set()
        await first
        assert await pool.submit(lambda: "after") == "after"
        assert ran == []
    finally:
        pool.shutdown()


async def test_shutdown_refuses_new_work() -> None:
    pool = DaemonThreadPool(2)
    await pool.submit(lambda: None)
    pool.shutdown()
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: None)
    await eventually(lambda: pool.threads == 0)


def test_bad_size() -> None:
    with pytest.raises(ValueError, match="max_workers"):
        DaemonThreadPool(0)
