"""Real processes for the fault tests: ``magic-flow server`` instances (no handlers) and
``magic-flow executor`` processes over one store and one broker, driven through the HTTP API.

A ``Cluster`` is one run: a fresh PostgreSQL schema or Redis key prefix, a task queue of its
own, a ledger file the handlers append to, and the processes. It starts, kills (SIGKILL),
stops (SIGSTOP) and continues processes, starts executions with idempotency keys (retrying
each start until the service answers: the same key is the same execution), and waits for
every execution to end by reading the store itself, so it sees the truth while the service
is down.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from magicflow.client import Client
from magicflow.errors import MagicFlowError
from magicflow.stores import Store, store_from_url

from .servers import PrivateServer, free_port

HANDLERS = Path(__file__).with_name("handlers.py")
# seconds a killed instance's partitions stay held (default 10): a restarted or surviving
# instance takes them over after that, so it bounds the recovery times the suite reports
LEASE_TTL = 3.0


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGICFLOW_")}
    env.update(extra)
    return env


@dataclass
class Process:
    """A ``magic-flow`` process of the run; its output goes to ``log``."""

    role: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    port: int | None = None
    supervised: bool = False  # started again by ``Cluster.respawn`` when it dies
    starts: int = 0

    def start(self, extra_env: Mapping[str, str] | None = None) -> None:
        env = dict(self.env)
        env.update(extra_env or {})
        with self.log.open("ab") as log:
            log.write(f"--- start {self.starts + 1} {time.time():.3f} {extra_env}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "magicflow", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(signum)

    def kill(self) -> None:
        if self.popen is not None:
            if self.popen.poll() is None:
                self.popen.kill()
            self.popen.wait(timeout=30)

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=30)
        return self.popen.returncode

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Cluster:
    workdir: Path
    store_url: str
    broker_url: str
    queue: str = field(default_factory=lambda: f"faults-{uuid.uuid4().hex[:10]}")
    services: list[Process] = field(default_factory=list)
    executors: list[Process] = field(default_factory=list)
    faults: list[tuple[str, float]] = field(default_factory=list)  # (what, epoch seconds)

    @property
    def ledger(self) -> Path:
        return self.workdir / "ledger.jsonl"

    # ------------------------------------------------------------------ processes

    def add_service(self) -> Process:
        port = free_port()
        args = ["server", "--no-auth", "--store", self.store_url, "--broker", self.broker_url]
        args += ["--port", str(port), "--log-level", "warning"]
        index = len(self.services)
        env = _env({"MAGICFLOW_LEASE_TTL": f"{LEASE_TTL:g}"})
        service = Process("service", args, env, self.workdir / f"service{index}.log", port=port)
        self.services.append(service)
        return service

    def add_executor(self, concurrency: int = 50) -> Process:
        args = ["executor", "--handlers", str(HANDLERS), "--broker", self.broker_url]
        args += ["--queue", self.queue, "--concurrency", str(concurrency)]
        args += ["--shutdown-grace", "2"]
        index = len(self.executors)
        env = _env({"MAGICFLOW_FAULTS_LEDGER": str(self.ledger)})
        executor = Process("executor", args, env, self.workdir / f"executor{index}.log")
        self.executors.append(executor)
        return executor

    async def start_service(
        self, service: Process, crash_at: str | None = None, within: float = 60.0
    ) -> None:
        """Start ``service`` (crashing at ``crash_at``, ``POINT:N``) and wait until it answers
        (or, armed, until it crashed: the point may come before the HTTP server is up)."""
        service.start({"MAGICFLOW_CRASH_AT": crash_at} if crash_at else None)
        deadline = time.monotonic() + within
        async with httpx.AsyncClient() as http:
            while True:
                if not service.alive():
                    assert service.popen is not None
                    if crash_at and service.popen.returncode == -signal.SIGKILL:
                        return
                    raise AssertionError(f"the service exited at start:\n{service.tail()}")
                try:
                    response = await http.get(f"{self.url(service)}/health/live", timeout=2)
                    if response.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"the service did not answer:\n{service.tail()}")
                await asyncio.sleep(0.1)

    def url(self, service: Process) -> str:
        return f"http://127.0.0.1:{service.port}"

    def respawn(self) -> int:
        """Start again the supervised processes that died (as systemd would); how many."""
        count = 0
        for process in self.executors:
            if process.supervised and not process.alive():
                process.start()
                count += 1
        return count

    def fault(self, what: str) -> None:
        self.faults.append((what, time.time()))

    def shutdown(self) -> None:
        for process in [*self.executors, *self.services]:
            process.terminate(timeout=15)

    def logs(self) -> str:
        return "\n".join(
            f"== {p.role} {p.log.name} ==\n{p.tail(1500)}"
            for p in [*self.services, *self.executors]
        )

    # ------------------------------------------------------------------ executions

    async def start_executions(
        self,
        service: Process | list[Process],
        workflow: str,
        inputs: Mapping[str, Any],
        *,
        parallel: int = 20,
        within: float = 120.0,
    ) -> dict[str, str]:
        """Start one execution per key (its idempotency key) through the HTTP API; a start
        that fails (the service is down, or dies during the call) is tried again with the
        same key for ``within`` seconds. Several services: the keys are spread over them."""
        services = service if isinstance(service, list) else [service]
        ids: dict[str, str] = {}
        gate = asyncio.Semaphore(parallel)
        deadline = time.monotonic() + within
        clients = [Client(self.url(s), timeout=10.0) for s in services]

        async def start(index: int, key: str) -> None:
            client = clients[index % len(clients)]
            async with gate:
                while True:
                    try:
                        ids[key] = await client.start(workflow, inputs[key], idempotency_key=key)
                        return
                    except MagicFlowError:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.2)

        try:
            await asyncio.gather(*(start(i, key) for i, key in enumerate(inputs)))
        finally:
            for client in clients:
                await client.aclose()
        return ids

    async def register(self, service: Process, document: str) -> None:
        async with Client(self.url(service)) as client:
            await client.register(document)

    async def wait_until_done(
        self, count: int, within: float, *, respawn: bool = False
    ) -> float | None:
        """Wait until ``count`` executions exist and none is live; the time (epoch) it was
        so, or None after ``within`` seconds."""
        store = await open_store(self.store_url)
        try:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                if respawn:
                    self.respawn()
                try:
                    live = await store.non_terminal_executions()
                    total = await count_executions(store, at_least=count)
                except Exception:  # the store's server is down (a test restarts it): wait
                    live, total = [""], 0
                if not live and total >= count:
                    return time.time()
                await asyncio.sleep(0.25)
            return None
        finally:
            await store.close()

    async def wait_for_ledger(self, lines: int, within: float = 60.0) -> None:
        """Wait until the handlers made at least ``lines`` calls."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.ledger.exists() and count_lines(self.ledger) >= lines:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the handlers made fewer than {lines} calls:\n{self.logs()}")


def count_lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for _ in file)


async def open_store(url: str) -> Store:
    store = store_from_url(url)
    await store.open()
    return store


async def count_executions(store: Store, at_least: int | None = None) -> int:
    """How many executions the store holds (stops counting at ``at_least``, when given)."""
    total, cursor = 0, None
    while True:
        page = await store.list_executions(limit=1000, cursor=cursor)
        total += len(page.items)
        if page.next_cursor is None or (at_least is not None and total >= at_least):
            return total
        cursor = page.next_cursor


def namespaced(kind: str, server: PrivateServer, role: str, options: Iterable[str] = ()) -> str:
    """A URL on ``server`` isolated for one run: a PostgreSQL schema or a Redis key prefix of
    its own for a store; a broker URL with ``options`` (``visibility_timeout=3``)."""
    tag = uuid.uuid4().hex[:10]
    query = list(options)
    if role == "store" and kind == "postgresql":
        query.append(f"schema=faults_{tag}")
    elif role == "store" and kind == "redis":
        query.append(f"prefix=faults:{tag}:")
    return server.url + (("?" + "&".join(query)) if query else "")
