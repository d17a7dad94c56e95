"""HTTP benchmark: ``magic-flow server`` under 200 concurrent clients.

Run: ``python -m bench.bench_http`` (about 20 s; ``--clients``, ``--duration``, ``--processes``).
It starts ``magic-flow server`` on a free loopback port (a temporary SQLite store, an in-process
executor with a trivial function, an admin key made by ``magic-flow keys create``), registers
a one-step workflow, then runs the clients for a bounded time: each starts an execution
(``POST /api/v1/workflows/{name}/executions``) and reads it back (``GET
/api/v1/executions/{id}``), again and again. It prints p50/p99 per endpoint, requests per
second and the machine's load, then stops the server (SIGTERM). Targets: p99
under 100 ms for start-execution and under 50 ms for get-execution.

The load generator runs on the same machine (in ``--processes`` processes, each an event loop
of httpx clients, one connection each), so its CPU competes with the server's; read the load
average with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.http_client import HttpError, RawClient

TARGET_P99_MS = {"start": 100.0, "get": 50.0}
WORKFLOW = """\
name: bench-http
version: "1.0.0"
steps:
  - id: noop
    function: noop
"""
HANDLERS = """\
import magicflow

@magicflow.function
def noop(ctx):
    return {"ok": True}
"""


@dataclass
class Sample:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"start": [], "get": []})
    errors: dict[str, int] = field(default_factory=dict)
    cpu: float = 0.0  # seconds of CPU the load generator's process spent driving


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def magic_flow(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "magicflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def start_server(workdir: Path, store: str, port: int) -> subprocess.Popen[bytes]:
    (workdir / "handlers.py").write_text(HANDLERS)
    command = [sys.executable, "-m", "magicflow", "server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--store", store, "--handlers", "handlers.py"]
    with (workdir / "server.log").open("wb") as log:
        return subprocess.Popen(
            [*command, "--log-level", "warning"],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def wait_live(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server stopped (exit {process.returncode})")
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the server did not start within 30 s")
        time.sleep(0.05)


START_PATH = "/api/v1/workflows/bench-http/executions"
START_BODY = json.dumps({"input": {"n": 1}}).encode()


async def one_client(
    send: Callable[[str, str, bytes | None], Awaitable[tuple[int, bytes]]],
    until: float,
    sample: Sample,
) -> None:
    """Start an execution, read it back, again and again until ``until``."""
    while time.monotonic() < until:
        began = time.perf_counter()
        try:
            status, body = await send("POST", START_PATH, START_BODY)
        except (HttpError, httpx.HTTPError) as exc:
            _error(sample, "start", str(exc) or type(exc).__name__)
            continue
        took = time.perf_counter() - began
        if status != 201:
            _error(sample, "start", str(status))
            continue
        sample.latencies["start"].append(took)
        execution_id = json.loads(body)["execution_id"]
        began = time.perf_counter()
        try:
            status, body = await send("GET", f"/api/v1/executions/{execution_id}", None)
        except (HttpError, httpx.HTTPError) as exc:
            _error(sample, "get", str(exc) or type(exc).__name__)
            continue
        if status != 200:
            _error(sample, "get", str(status))
            continue
        sample.latencies["get"].append(time.perf_counter() - began)


def _error(sample: Sample, endpoint: str, what: str) -> None:
    key = f"{endpoint}:{what}"
    sample.errors[key] = sample.errors.get(key, 0) + 1


async def drive(url: str, key: str, clients: int, duration: float, client: str) -> Sample:
    """``clients`` clients, one connection each, all made before the clock starts."""
    if client == "httpx":
        return await _drive_httpx(url, key, clients, duration)
    sample = Sample()
    raws = [RawClient(url, key) for _ in range(clients)]
    try:
        until = time.monotonic() + duration
        async with asyncio.TaskGroup() as group:
            for raw in raws:
                group.create_task(one_client(raw.request, until, sample))
    finally:
        for raw in raws:
            await raw.close()
    return sample


async def _drive_httpx(url: str, key: str, clients: int, duration: float) -> Sample:
    """As ``drive``, with httpx clients (each would load the CA bundle, ~50 ms of CPU, inside
    the measured window if it were made there)."""
    sample = Sample()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    tls = ssl.create_default_context()  # unused on http://, shared so it is made once
    async with contextlib.AsyncExitStack() as stack:
        https = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url, headers=headers, limits=limits, timeout=30, verify=tls
                )
            )
            for _ in range(clients)
        ]

        def sender(http: httpx.AsyncClient) -> Callable[..., Awaitable[tuple[int, bytes]]]:
            async def send(method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
                response = await http.request(method, path, content=body)
                return response.status_code, response.content

            return send

        until = time.monotonic() + duration
        async with asyncio.TaskGroup() as group:
            for http in https:
                group.create_task(one_client(sender(http), until, sample))
    return sample


def load_process(url: str, key: str, clients: int, duration: float, client: str) -> Sample:
    began = time.process_time()
    sample = asyncio.run(drive(url, key, clients, duration, client))
    sample.cpu = time.process_time() - began
    return sample


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(samples: list[Sample], duration: float, clients: int, server_cpu: float) -> bool:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"magic-flow server (SQLite + memory broker + in-process executor), "
        f"Python {platform.python_version()}, {os.cpu_count()} cores; {clients} clients, "
        f"{duration:g} s; load average after the run {load}"
    )
    print("| endpoint | requests | req/s | p50 ms | p99 ms | max ms | target p99 |")
    print("|---|---:|---:|---:|---:|---:|---|")
    ok = True
    total = 0
    names = {"start": "POST start-execution", "get": "GET execution"}
    for endpoint, name in names.items():
        values = [v for s in samples for v in s.latencies[endpoint]]
        total += len(values)
        p50, p99 = percentile(values, 0.50) * 1000, percentile(values, 0.99) * 1000
        target = TARGET_P99_MS[endpoint]
        met = p99 < target
        ok = ok and met
        print(
            f"| {name} | {len(values):,} | {len(values) / duration:,.0f} | {p50:.1f} | "
            f"{p99:.1f} | {max(values, default=0) * 1000:.1f} | "
            f"< {target:g} ms {'met' if met else 'MISSED'} |"
        )
    errors: dict[str, int] = {}
    for s in samples:
        for what, count in s.errors.items():
            errors[what] = errors.get(what, 0) + count
    per_request = server_cpu * 1000 / max(total, 1)
    generator = sum(s.cpu for s in samples) * 1000 / max(total, 1)
    print(
        f"all requests: {total / duration:,.0f} req/s; server CPU {per_request:.2f} ms per request"
        f" (busy {server_cpu / duration:.0%} of a core), load generator {generator:.2f} ms; "
        f"errors: {errors or 'none'}"
    )
    return ok and not errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_http", description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load")
    parser.add_argument("--processes", type=int, default=1, help="load generator processes")
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="raw: a minimal keep-alive client (little CPU); httpx: a real-world client",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        store = f"sqlite:///{workdir / 'bench.db'}"
        key = magic_flow("keys", "create", "--role", "admin", "--store", store, cwd=workdir)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(workdir, store, port)
        try:
            wait_live(server, url)
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/yaml"}
            registered = httpx.post(f"{url}/api/v1/workflows", content=WORKFLOW, headers=headers)
            registered.raise_for_status()
            asyncio.run(drive(url, key, 10, 1.0, args.client))  # warm up: connections, caches
            cpu_before = cpu_seconds(server.pid)
            per_process = [args.clients // args.processes] * args.processes
            per_process[0] += args.clients - sum(per_process)
            if args.processes == 1:
                samples = [load_process(url, key, args.clients, args.duration, args.client)]
            else:
                with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
                    samples = pool.starmap(
                        load_process,
                        [(url, key, n, args.duration, args.client) for n in per_process],
                    )
            server_cpu = cpu_seconds(server.pid) - cpu_before
            ok = report(samples, args.duration, args.clients, server_cpu)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
