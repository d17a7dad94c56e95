"""A small pool of daemon threads for sync business functions.

Why not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined at interpreter
exit, so one abandoned call (a sync step still running after its timeout, or one whose task
was cancelled) keeps the whole process alive until it returns. Here every thread is a daemon
and results come back to the event loop with ``loop.call_soon_threadsafe``: a process whose
abandoned call is still sleeping exits at once.

Capacity: ``max_workers`` threads run calls that someone still waits for. A thread running
an abandoned call does not count against that (a replacement is started when work waits),
up to ``max_abandoned`` such threads; past that, new work queues until one returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)

_PENDING: Final = 0
_RUNNING: Final = 1
_DONE: Final = 2
_CANCELLED: Final = 3


def _deliver(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Runs on the loop: hand the outcome to whoever still awaits it."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _WorkItem:
    __slots__ = ("abandoned", "call", "error", "future", "loop", "pool", "result", "state")

    def __init__(
        self,
        pool: DaemonThreadPool,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        call: Callable[[], Any],
    ) -> None:
        self.pool = pool
        self.loop = loop
        self.future = future
        self.call = call
        self.state = _PENDING
        self.abandoned = False
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> bool:
        """Runs in a pool thread; True when the outcome is to be delivered."""
        pool = self.pool
        with pool._lock:
            if self.state == _CANCELLED:
                return False
            self.state = _RUNNING
        try:
            self.result = self.call()
        except BaseException as exc:  # forwarded to the awaiting coroutine, not lost
            self.error = exc
        with pool._lock:
            self.state = _DONE
            if self.abandoned:
                pool._abandoned -= 1
                return False
        return True

    def deliver(self) -> None:
        """Runs in a pool thread: hand the outcome to the loop."""
        # RuntimeError: the loop is closed, nobody is waiting any more
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_deliver, self.future, self.result, self.error)

    def on_future_done(self, future: asyncio.Future[Any]) -> None:
        """Runs on the loop when the future settles; a cancelled future abandons the call."""
        if not future.cancelled():
            return
        pool = self.pool
        with pool._lock:
            if self.state == _PENDING:
                self.state = _CANCELLED
                return
            if self.state != _RUNNING:
                return
            self.abandoned = True
            pool._abandoned += 1
        logger.debug("abandoned a sync call still running in a pool thread")
        pool._adjust_thread_count()


class DaemonThreadPool:
    """Runs sync callables in daemon threads; ``submit`` returns an asyncio future."""

    def __init__(
        self,
        max_workers: int = 32,
        *,
        max_abandoned: int | None = None,
        thread_name_prefix: str = "magicflow-sync",
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.max_abandoned = max_workers if max_abandoned is None else max(max_abandoned, 0)
        self._prefix = thread_name_prefix
        self._queue: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Semaphore(0)
        self._threads = 0
        self._abandoned = 0
        self._closed = False
        self._counter = itertools.count(1)

    @property
    def threads(self) -> int:
        """Threads alive now (busy, idle or running an abandoned call)."""
        return self._threads

    @property
    def abandoned(self) -> int:
        """Threads still running a call nobody waits for."""
        return self._abandoned

    def submit(self, fn: Callable[..., T], /, *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` in a pool thread (with the caller's contextvars).

        Must be called from the event loop. Cancelling the returned future abandons the call:
        it keeps running in its thread, and its outcome is dropped.
        """
        if self._closed:
            raise RuntimeError("the thread pool is shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        item = _WorkItem(self, loop, future, call)
        future.add_done_callback(item.on_future_done)
        self._queue.put(item)
        self._adjust_thread_count()
        return future

    def _adjust_thread_count(self) -> None:
        if self._idle.acquire(blocking=False):
            return
        with self._lock:
            if self._closed:
                return
            counted = self._threads - min(self._abandoned, self.max_abandoned)
            if counted >= self.max_workers:
                return
            self._threads += 1
        name = f"{self._prefix}-{next(self._counter)}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                deliver = item.run()
                # idle before the outcome reaches the loop: work submitted in reaction to
                # it finds this thread instead of starting another
                self._idle.release()
                if deliver:
                    item.deliver()
                del item
        finally:
            with self._lock:
                self._threads -= 1

    def shutdown(self) -> None:
        """Let idle threads exit; busy ones exit after their call. Does not wait for them."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._queue.put(None)
