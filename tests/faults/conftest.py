"""Fixtures of the fault suite: private servers (one of each kind per test session, started
when first needed), the store × broker pairs every scenario runs over, and clusters of
``magic-flow`` processes that are shut down after their test.

To run the suite over another pair, add one line to ``PAIRS`` (a new kind of server also
needs its ``PrivateServer`` in ``servers.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .checker import REPORTS
from .harness import Cluster, namespaced
from .servers import PrivateServer, start_server, stop_server


@dataclass(frozen=True)
class Pair:
    store: str
    broker: str

    def __str__(self) -> str:
        return f"{self.store}+{self.broker}"


PAIRS = [
    Pair("postgresql", "rabbitmq"),
    Pair("postgresql", "redis"),
    Pair("redis", "redis"),
    Pair("postgresql", "nats"),
    Pair("postgresql", "kafka"),
]


VISIBILITY_TIMEOUT = 4.0
TIMEOUTS = {"redis", "nats", "kafka"}  # brokers with a visibility timeout


def one_per(kind: str) -> list[Pair]:
    """The first pair of each ``broker`` (or ``store``): for the scenarios that test one."""
    seen: dict[str, Pair] = {}
    for pair in PAIRS:
        seen.setdefault(getattr(pair, kind), pair)
    return list(seen.values())


class Servers:
    """The session's private servers, by kind."""

    def __init__(self) -> None:
        self.running: dict[str, PrivateServer] = {}

    def __getitem__(self, kind: str) -> PrivateServer:
        if kind not in self.running:
            self.running[kind] = start_server(kind)
        server = self.running[kind]
        if server.process is None or server.process.poll() is not None:
            server.start()  # a test that failed while it was down
        return server

    def stop(self) -> None:
        for server in self.running.values():
            stop_server(server)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    pool = Servers()
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture(params=PAIRS, ids=str)
def pair(request: pytest.FixtureRequest) -> Pair:
    value: Pair = request.param
    return value


MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(servers: Servers, pair: Pair, tmp_path: Path) -> Iterator[MakeCluster]:
    """``make_cluster()``: a run on ``pair``. ``visibility_timeout``: seconds before a message
    taken by a process that died is delivered again (Redis and NATS; RabbitMQ delivers it
    again as soon as the connection of the dead process is gone, Kafka once the group has
    dropped the dead member: a session timeout of 2 s, then a rebalance)."""
    made: list[Cluster] = []

    def make(visibility_timeout: float = VISIBILITY_TIMEOUT) -> Cluster:
        workdir = tmp_path / f"run{len(made)}"
        workdir.mkdir()
        options = [f"visibility_timeout={visibility_timeout:g}"] if pair.broker in TIMEOUTS else []
        if pair.broker == "kafka":  # a dead member's partitions move after its session timeout
            options.append("session_timeout=2")
        store = namespaced(pair.store, servers[pair.store], "store")
        broker = namespaced(pair.broker, servers[pair.broker], "broker", options)
        cluster = Cluster(workdir, store, broker)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.shutdown()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault suite")
    for line in REPORTS:
        terminalreporter.write_line(line)
    path = os.environ.get("MAGICFLOW_FAULTS_REPORT")
    if path:
        with Path(path).open("a") as file:
            file.write("".join(f"{line}\n" for line in REPORTS))
