"""``magic-flow executor`` as operators run it: a real process serving a real broker, with
``magic-flow run --no-local-executor`` (another process) orchestrating over the same broker.

Each test uses a queue of its own (removed afterwards), so runs don't collide.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from magicflow.brokers import broker_from_url

from ..tansu import kafka_url

__all__ = ["kafka_url"]  # a fixture

pytestmark = pytest.mark.services

BROKERS = {
    "redis": os.environ.get("MAGICFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("MAGICFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "nats": os.environ.get("MAGICFLOW_TEST_NATS_URL", "nats://127.0.0.1:4222"),
}

WORKFLOW = """\
name: distributed-{queue}
version: "1.0.0"
steps:
  - id: hello
    function: greet
    queue: {queue}
    input: {{name: "${{input.name}}"}}
  - id: shout
    function: shout
    queue: {queue}
    depends_on: [hello]
    input: {{text: "${{steps.hello.output.greeting}}", pause: "${{input.pause}}"}}
output:
  text: ${{steps.shout.output.text}}
  executor: ${{steps.hello.output.pid}}
"""

HANDLERS = """\
import os
import time

import magicflow


@magicflow.function
async def greet(ctx: magicflow.StepContext) -> dict[str, object]:
    return {"greeting": f"hello {ctx.input['name']}", "pid": os.getpid()}


@magicflow.function
def shout(ctx: magicflow.StepContext) -> dict[str, object]:
    open("shouting", "w").close()  # in the executor's working directory
    time.sleep(ctx.input["pause"])
    return {"text": ctx.input["text"].upper()}
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGICFLOW_")}
    env["TMPDIR"] = str(tmp_path)
    return env


@pytest.fixture(params=[*BROKERS, "kafka"])
def broker_url(request: pytest.FixtureRequest) -> str:
    if request.param == "kafka":  # a server the tests start
        return str(request.getfixturevalue("kafka_url"))
    return BROKERS[str(request.param)]


@pytest.fixture
async def queue(broker_url: str) -> AsyncIterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    yield name
    broker = broker_from_url(broker_url)
    await broker.connect()
    await broker.delete_queue(name)  # type: ignore[attr-defined]
    await broker.close()


@pytest.fixture
def project(tmp_path: Path, queue: str) -> Path:
    (tmp_path / "workflow.yaml").write_text(WORKFLOW.format(queue=queue), encoding="utf-8")
    (tmp_path / "handlers.py").write_text(HANDLERS, encoding="utf-8")
    return tmp_path


@pytest.fixture
def executor(project: Path, broker_url: str, queue: str) -> Iterator[subprocess.Popen[str]]:
    command = [sys.executable, "-m", "magicflow", "executor", "--handlers"]
    command += [str(project / "handlers.py"), "--broker", broker_url, "--queue", queue]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(project),
        cwd=project,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def run_command(project: Path, broker_url: str, name: str, pause: float) -> list[str]:
    command = [sys.executable, "-m", "magicflow", "run", str(project / "workflow.yaml")]
    command += ["--store", f"sqlite:///{project / 'flows.db'}", "--broker", broker_url]
    command += ["--no-local-executor", "--output", "json"]
    return [*command, "--input", json.dumps({"name": name, "pause": pause})]


def run(
    project: Path, broker_url: str, executor: subprocess.Popen[str]
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            run_command(project, broker_url, "ann", 0.0),
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(project),
            cwd=project,
        )
    except subprocess.TimeoutExpired as exc:
        executor.kill()
        _, executor_log = executor.communicate(timeout=30)
        raise AssertionError(f"run: {exc.stderr!r}\nexecutor: {executor_log}") from None


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=40)
    return process.returncode, stderr


def test_an_executor_process_runs_the_steps(
    project: Path, broker_url: str, executor: subprocess.Popen[str]
) -> None:
    done = run(project, broker_url, executor)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "completed"
    assert document["output"]["text"] == "HELLO ANN"
    assert document["output"]["executor"] == executor.pid  # not run in the `run` process
    code, stderr = stop(executor)
    assert code == 0, stderr
    assert "stopped" in stderr
    assert "Traceback" not in stderr


def test_sigterm_lets_the_running_step_finish(
    project: Path, broker_url: str, executor: subprocess.Popen[str]
) -> None:
    running = subprocess.Popen(
        run_command(project, broker_url, "bo", 2.0),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(project),
        cwd=project,
    )
    try:
        deadline = time.monotonic() + 30
        while not (project / "shouting").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (project / "shouting").exists(), "the executor never started `shout`"
        code, stderr = stop(executor)
        stdout, run_stderr = running.communicate(timeout=60)
    finally:
        if running.poll() is None:
            running.kill()
    assert code == 0, stderr
    assert "shutting down" in stderr
    assert running.returncode == 0, run_stderr
    assert json.loads(stdout)["output"]["text"] == "HELLO BO"


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "magicflow", "executor"]
    for args, message in [
        ([], "--handlers is required"),
        (["--handlers", "os", "--broker", "memory://"], "needs a shared --broker"),
        (["--handlers", "os", "--broker", "kafkaesque://x"], "unsupported broker URL"),
    ]:
        done = subprocess.run(
            base + args, capture_output=True, text=True, timeout=30, env=_env(tmp_path)
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert done.stderr.count("\n") == 1, done.stderr


def test_an_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS, encoding="utf-8")
    command = [sys.executable, "-m", "magicflow", "executor"]
    command += ["--handlers", str(tmp_path / "handlers.py"), "--broker", "redis://127.0.0.1:1/0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=_env(tmp_path))
    assert done.returncode == 1
    assert "magic-flow: error: redis broker:" in done.stderr
    assert "Traceback" not in done.stderr
