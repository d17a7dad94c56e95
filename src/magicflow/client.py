"""``magicflow.Client``: the workflow service's HTTP API from Python (httpx, async).

    async with Client("http://127.0.0.1:8080", api_key="mf_...") as client:
        await client.register(Path("onboarding.yaml").read_text())
        execution_id = await client.start("user-onboarding", {"email": "a@b.c"})
        result = await client.wait(execution_id)     # the SPEC §3 document, once it ended

Errors come out as Magic Flow's own (``magicflow.errors``): 404 ``NotFoundError``, 409
``ConflictError``, 422 ``WorkflowValidationError`` (with the service's diagnostics), 401 and
403 ``AuthError``, anything else (and a service that cannot be reached) ``MagicFlowError``.
``wait`` follows the execution's event stream (server-sent events), it does not poll.
``SyncClient`` is the same API for code that is not async.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import quote

import httpx

from magicflow.dsl.diagnostics import Diagnostic
from magicflow.errors import (
    AuthError,
    ConflictError,
    MagicFlowError,
    NotFoundError,
    WorkflowValidationError,
)

__all__ = ["Client", "SyncClient"]

DEFAULT_URL = "http://127.0.0.1:8080"
STREAM_END = "stream.end"
_API = "/api/v1"
_YAML = {"Content-Type": "application/yaml"}


class Client:
    """An async client of one workflow service. ``api_key``: ``Authorization: Bearer``.
    ``transport``: an httpx transport (``httpx.ASGITransport(app)`` calls an app in process).
    ``reconnect_delay``: pause before an event stream that broke is opened again (at the
    event after the last one received)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        reconnect_delay: float = 0.5,
        max_reconnects: int = 10,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.reconnect_delay = reconnect_delay
        self.max_reconnects = max_reconnects

    async def __aenter__(self) -> Client:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ plumbing

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise MagicFlowError(f"cannot reach the workflow service: {exc}") from exc
        if response.is_error:
            _raise(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._call(method, path, **kwargs)
        return _object(response)

    # ------------------------------------------------------------------ definitions

    async def register(self, document: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
        """Register the version a workflow document names: YAML text, or the document as a
        mapping (sent as JSON). The same document again returns the stored one."""
        if isinstance(document, Mapping):
            return await self._json("POST", f"{_API}/workflows", json=dict(document))
        content = document.encode() if isinstance(document, str) else document
        return await self._json("POST", f"{_API}/workflows", content=content, headers=_YAML)

    async def register_file(self, path: str | Path) -> dict[str, Any]:
        """Register a YAML (or JSON) workflow file."""
        text = await asyncio.to_thread(Path(path).read_bytes)
        return await self.register(text)

    async def list_workflows(self, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every workflow: ``name``, ``latest_version``, ``description``, ``versions``."""
        params = {"include_deleted": include_deleted}
        body = await self._json("GET", f"{_API}/workflows", params=params)
        return list(body["items"])

    async def get_workflow(self, name: str, version: str | None = None) -> dict[str, Any]:
        """The latest version of a workflow (or ``version``, deleted or not)."""
        path = f"{_API}/workflows/{_seg(name)}"
        if version is not None:
            path += f"/versions/{_seg(version)}"
        return await self._json("GET", path)

    async def list_versions(
        self, name: str, *, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        """The versions of a workflow, oldest first."""
        params = {"include_deleted": include_deleted}
        body = await self._json("GET", f"{_API}/workflows/{_seg(name)}/versions", params=params)
        return list(body["items"])

    async def delete_workflow(self, name: str, version: str | None = None) -> int:
        """Soft-delete a workflow (every version) or one version; how many were deleted."""
        path = f"{_API}/workflows/{_seg(name)}"
        if version is not None:
            path += f"/versions/{_seg(version)}"
        return int((await self._json("DELETE", path))["deleted"])

    # ------------------------------------------------------------------ executions

    async def start(
        self,
        workflow: str,
        input: Any = None,
        *,
        version: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Start an execution; its id. The same ``idempotency_key`` gives the same execution."""
        body: dict[str, Any] = {"input": input}
        if version is not None:
            body["version"] = version
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        path = f"{_API}/workflows/{_seg(workflow)}/executions"
        return str((await self._json("POST", path, json=body))["execution_id"])

    async def get(self, execution_id: str) -> dict[str, Any]:
        """The execution as committed now (the SPEC §3 document)."""
        return await self._json("GET", f"{_API}/executions/{_seg(execution_id)}")

    async def list_executions(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page, newest first: ``{"items": [...], "next_cursor": ...}``."""
        params: dict[str, Any] = {"limit": limit}
        for key, value in (("workflow", workflow), ("status", status), ("cursor", cursor)):
            if value is not None:
                params[key] = value
        return await self._json("GET", f"{_API}/executions", params=params)

    async def iter_executions(
        self, *, workflow: str | None = None, status: str | None = None, page_size: int = 100
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Every execution (newest first), fetching page after page with the cursor."""
        cursor: str | None = None
        while True:
            page = await self.list_executions(
                workflow=workflow, status=status, limit=page_size, cursor=cursor
            )
            for item in page["items"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def cancel(self, execution_id: str, reason: str | None = None) -> None:
        body = {"reason": reason} if reason is not None else None
        await self._call("POST", f"{_API}/executions/{_seg(execution_id)}/cancel", json=body)

    async def pause(self, execution_id: str) -> None:
        await self._call("POST", f"{_API}/executions/{_seg(execution_id)}/pause")

    async def resume(self, execution_id: str) -> None:
        await self._call("POST", f"{_API}/executions/{_seg(execution_id)}/resume")

    async def retry(self, execution_id: str) -> None:
        """Run a failed, cancelled or timed-out execution again from its unfinished steps."""
        await self._call("POST", f"{_API}/executions/{_seg(execution_id)}/retry")

    async def signal(self, execution_id: str, name: str, payload: Any = None) -> None:
        """Deliver a signal (the ``wait_for`` step's output is its payload)."""
        path = f"{_API}/executions/{_seg(execution_id)}/signals/{_seg(name)}"
        await self._call("POST", path, json={"payload": payload})

    async def events(
        self, execution_id: str, *, after: int | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The execution's events, recorded then live, until it ends: each is the event's
        data (``kind``, ``step_id``, ``version``, ``at``, ``data``); the last one is
        ``{"kind": "stream.end", "status": ...}``. A stream that breaks is opened again after
        the last event received (``max_reconnects`` times in a row at most)."""
        path = f"{_API}/executions/{_seg(execution_id)}/events"
        last = after
        failures = 0
        while True:
            progress = False
            try:
                async for event_id, event in self._stream(path, last):
                    progress = True
                    if event_id is not None:
                        last = event_id
                    yield event
                    if event["kind"] == STREAM_END:
                        return
            except httpx.TransportError as exc:
                failures = 0 if progress else failures + 1
                if failures > self.max_reconnects:
                    raise MagicFlowError(
                        f"the event stream of {execution_id} broke: {exc}"
                    ) from exc
            else:
                failures = 0 if progress else failures + 1
                if failures > self.max_reconnects:
                    raise MagicFlowError(f"the event stream of {execution_id} keeps ending early")
            await asyncio.sleep(self.reconnect_delay)

    async def _stream(
        self, path: str, after: int | None
    ) -> AsyncIterator[tuple[int | None, dict[str, Any]]]:
        headers = {"Accept": "text/event-stream"}
        if after is not None:
            headers["Last-Event-ID"] = str(after)
        async with self._http.stream("GET", path, headers=headers, timeout=None) as response:
            if response.is_error:
                await response.aread()
                _raise(response)
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line:
                    if not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                    continue
                if "data" in fields:
                    yield _event(fields)
                fields = {}

    async def wait(
        self,
        execution_id: str,
        timeout: float | None = None,  # noqa: ASYNC109 - as Engine.wait
    ) -> dict[str, Any]:
        """The execution's document once it has ended (followed on its event stream).
        TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            async for event in self.events(execution_id):
                if event["kind"] == STREAM_END:
                    break
        return await self.get(execution_id)

    async def run(
        self,
        workflow: str,
        input: Any = None,
        *,
        version: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Start an execution and wait for its document."""
        execution_id = await self.start(
            workflow, input, version=version, idempotency_key=idempotency_key
        )
        return await self.wait(execution_id, timeout)

    # ------------------------------------------------------------------ webhooks, schedules

    async def create_webhook(
        self,
        url: str,
        events: Sequence[str] = ("*",),
        *,
        workflow: str | None = None,
        secret: str | None = None,
    ) -> dict[str, Any]:
        """Subscribe ``url`` to the lifecycle events ``events`` (of ``workflow``, or all);
        this answer, and no later one, shows the signing ``secret``."""
        body = {"url": url, "events": list(events)} | _given(workflow=workflow, secret=secret)
        return await self._json("POST", f"{_API}/webhooks", json=body)

    async def list_webhooks(self) -> list[dict[str, Any]]:
        return list((await self._json("GET", f"{_API}/webhooks"))["items"])

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._call("DELETE", f"{_API}/webhooks/{_seg(webhook_id)}")

    async def webhook_deliveries(self, webhook_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """A webhook's delivery log, newest first."""
        path = f"{_API}/webhooks/{_seg(webhook_id)}/deliveries"
        return list((await self._json("GET", path, params={"limit": limit}))["items"])

    async def create_schedule(
        self,
        workflow: str,
        cron: str,
        input: Any = None,
        *,
        version: str | None = None,
        missed: str = "skip",
        enabled: bool = True,
    ) -> dict[str, Any]:
        """Start an execution of ``workflow`` at each tick of ``cron`` (five fields, UTC)."""
        body = {"cron": cron, "missed": missed, "enabled": enabled}
        body |= _given(input=input, version=version)
        path = f"{_API}/workflows/{_seg(workflow)}/schedules"
        return await self._json("POST", path, json=body)

    async def list_schedules(self, workflow: str) -> list[dict[str, Any]]:
        path = f"{_API}/workflows/{_seg(workflow)}/schedules"
        return list((await self._json("GET", path))["items"])

    async def delete_schedule(self, workflow: str, schedule_id: str) -> None:
        path = f"{_API}/workflows/{_seg(workflow)}/schedules/{_seg(schedule_id)}"
        await self._call("DELETE", path)

    # ------------------------------------------------------------------ triggers, event streams

    async def create_trigger(
        self,
        workflow: str,
        queue: str,
        *,
        idempotency_key: str,
        input: str = "message",
        broker: str | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        """Start an execution of ``workflow`` for each message on ``queue``: its idempotency
        key and input are parts of the message (``"message.order.id"``, ``"key"``...)."""
        body = {"queue": queue, "idempotency_key": idempotency_key, "input": input}
        body |= _given(broker=broker, version=version)
        path = f"{_API}/workflows/{_seg(workflow)}/triggers"
        return await self._json("POST", path, json=body)

    async def list_triggers(self, workflow: str | None = None) -> list[dict[str, Any]]:
        """The triggers of ``workflow`` (of every workflow when None), oldest first."""
        path = (
            f"{_API}/triggers"
            if workflow is None
            else f"{_API}/workflows/{_seg(workflow)}/triggers"
        )
        return list((await self._json("GET", path))["items"])

    async def get_trigger(self, trigger_id: str) -> dict[str, Any]:
        return await self._json("GET", f"{_API}/triggers/{_seg(trigger_id)}")

    async def delete_trigger(self, trigger_id: str) -> None:
        await self._call("DELETE", f"{_API}/triggers/{_seg(trigger_id)}")

    async def create_event_stream(
        self,
        queue: str,
        events: Sequence[str] = ("*",),
        *,
        workflow: str | None = None,
        broker: str | None = None,
    ) -> dict[str, Any]:
        """Publish the lifecycle events ``events`` (of ``workflow``, or all) to ``queue``."""
        body = {"queue": queue, "events": list(events)} | _given(workflow=workflow, broker=broker)
        return await self._json("POST", f"{_API}/event-streams", json=body)

    async def list_event_streams(self) -> list[dict[str, Any]]:
        return list((await self._json("GET", f"{_API}/event-streams"))["items"])

    async def delete_event_stream(self, stream_id: str) -> None:
        await self._call("DELETE", f"{_API}/event-streams/{_seg(stream_id)}")

    async def event_stream_deliveries(
        self, stream_id: str, limit: int = 100
    ) -> list[dict[str, Any]]:
        """An event stream's delivery log, newest first."""
        path = f"{_API}/event-streams/{_seg(stream_id)}/deliveries"
        return list((await self._json("GET", path, params={"limit": limit}))["items"])

    # ------------------------------------------------------------------ health

    async def health(self) -> dict[str, Any]:
        """``/health``: every check and the overall status (also when it is unhealthy)."""
        try:
            response = await self._http.get("/health")
        except httpx.TransportError as exc:
            raise MagicFlowError(f"cannot reach the workflow service: {exc}") from exc
        if response.is_error and response.status_code != 503:
            _raise(response)
        return _object(response)

    async def live(self) -> bool:
        """The process answers."""
        try:
            return (await self._http.get("/health/live")).status_code == 200
        except httpx.TransportError:
            return False

    async def ready(self) -> bool:
        """The service takes requests (its store answers, it is not shutting down)."""
        try:
            response = await self._http.get("/health/ready")
        except httpx.TransportError:
            return False
        if response.status_code in (401, 403):
            _raise(response)
        return response.status_code == 200

    async def metrics(self) -> str:
        """``/metrics``, the Prometheus text."""
        return (await self._call("GET", "/metrics")).text


def _given(**fields: Any) -> dict[str, Any]:
    """The optional fields of a body that were given."""
    return {name: value for name, value in fields.items() if value is not None}


def _seg(value: str) -> str:
    """A path segment (``/``, ``?`` and the like escaped)."""
    return quote(value, safe="")


def _object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise MagicFlowError(f"the service answered something other than a JSON object: {body!r}")
    return body


def _event(fields: dict[str, str]) -> tuple[int | None, dict[str, Any]]:
    data: dict[str, Any] = json.loads(fields["data"])
    data.setdefault("kind", fields.get("event", "message"))
    event_id = fields.get("id", "")
    return (int(event_id) if event_id.isdigit() else None), data


def _raise(response: httpx.Response) -> NoReturn:
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    message = str(detail or response.reason_phrase or f"HTTP {response.status_code}")
    status = response.status_code
    if status in (401, 403):
        raise AuthError(message, status)
    if status == 404:
        raise NotFoundError(message)
    if status == 409:
        raise ConflictError(message)
    if status == 422:
        raise WorkflowValidationError(_diagnostics(body, message))
    raise MagicFlowError(f"{message} (HTTP {status})")


def _diagnostics(body: Any, message: str) -> list[Diagnostic]:
    found = body.get("diagnostics") if isinstance(body, dict) else None
    if not found:
        return [Diagnostic("<request>", 1, 1, message)]
    return [
        Diagnostic(
            file=str(d.get("file", "<request>")),
            line=int(d.get("line", 1)),
            col=int(d.get("col", 1)),
            message=str(d.get("message", "")),
            severity=str(d.get("severity", "error")),
            path=tuple(d.get("path", ())),
        )
        for d in found
    ]


class SyncClient:
    """``Client`` for code that is not async: each call runs on a private event loop.

    with SyncClient("http://127.0.0.1:8080", api_key="mf_...") as client:
        result = client.run("user-onboarding", {"email": "a@b.c"})
    """

    def __init__(self, base_url: str = DEFAULT_URL, **options: Any) -> None:
        self._runner = asyncio.Runner()
        self._client = Client(base_url, **options)

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._runner.run(self._client.aclose())
        finally:
            self._runner.close()

    def register(self, document: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
        return self._runner.run(self._client.register(document))

    def register_file(self, path: str | Path) -> dict[str, Any]:
        return self._runner.run(self._client.register_file(path))

    def list_workflows(self, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        return self._runner.run(self._client.list_workflows(include_deleted=include_deleted))

    def get_workflow(self, name: str, version: str | None = None) -> dict[str, Any]:
        return self._runner.run(self._client.get_workflow(name, version))

    def list_versions(self, name: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        return self._runner.run(self._client.list_versions(name, include_deleted=include_deleted))

    def delete_workflow(self, name: str, version: str | None = None) -> int:
        return self._runner.run(self._client.delete_workflow(name, version))

    def start(
        self,
        workflow: str,
        input: Any = None,
        *,
        version: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        return self._runner.run(
            self._client.start(workflow, input, version=version, idempotency_key=idempotency_key)
        )

    def get(self, execution_id: str) -> dict[str, Any]:
        return self._runner.run(self._client.get(execution_id))

    def list_executions(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        return self._runner.run(
            self._client.list_executions(
                workflow=workflow, status=status, limit=limit, cursor=cursor
            )
        )

    def iter_executions(
        self, *, workflow: str | None = None, status: str | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        return self._iterate(
            self._client.iter_executions(workflow=workflow, status=status, page_size=page_size)
        )

    def cancel(self, execution_id: str, reason: str | None = None) -> None:
        self._runner.run(self._client.cancel(execution_id, reason))

    def pause(self, execution_id: str) -> None:
        self._runner.run(self._client.pause(execution_id))

    def resume(self, execution_id: str) -> None:
        self._runner.run(self._client.resume(execution_id))

    def retry(self, execution_id: str) -> None:
        self._runner.run(self._client.retry(execution_id))

    def signal(self, execution_id: str, name: str, payload: Any = None) -> None:
        self._runner.run(self._client.signal(execution_id, name, payload))

    def events(self, execution_id: str, *, after: int | None = None) -> Iterator[dict[str, Any]]:
        return self._iterate(self._client.events(execution_id, after=after))

    def wait(self, execution_id: str, timeout: float | None = None) -> dict[str, Any]:
        return self._runner.run(self._client.wait(execution_id, timeout))

    def run(
        self,
        workflow: str,
        input: Any = None,
        *,
        version: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        return self._runner.run(
            self._client.run(
                workflow,
                input,
                version=version,
                idempotency_key=idempotency_key,
                timeout=timeout,
            )
        )

    def create_webhook(
        self,
        url: str,
        events: Sequence[str] = ("*",),
        *,
        workflow: str | None = None,
        secret: str | None = None,
    ) -> dict[str, Any]:
        return self._runner.run(
            self._client.create_webhook(url, events, workflow=workflow, secret=secret)
        )

    def list_webhooks(self) -> list[dict[str, Any]]:
        return self._runner.run(self._client.list_webhooks())

    def delete_webhook(self, webhook_id: str) -> None:
        self._runner.run(self._client.delete_webhook(webhook_id))

    def webhook_deliveries(self, webhook_id: str, limit: int = 100) -> list[dict[str, Any]]:
        return self._runner.run(self._client.webhook_deliveries(webhook_id, limit))

    def create_schedule(
        self,
        workflow: str,
        cron: str,
        input: Any = None,
        *,
        version: str | None = None,
        missed: str = "skip",
        enabled: bool = True,
    ) -> dict[str, Any]:
        return self._runner.run(
            self._client.create_schedule(
                workflow, cron, input, version=version, missed=missed, enabled=enabled
            )
        )

    def list_schedules(self, workflow: str) -> list[dict[str, Any]]:
        return self._runner.run(self._client.list_schedules(workflow))

    def delete_schedule(self, workflow: str, schedule_id: str) -> None:
        self._runner.run(self._client.delete_schedule(workflow, schedule_id))

    def create_trigger(
        self,
        workflow: str,
        queue: str,
        *,
        idempotency_key: str,
        input: str = "message",
        broker: str | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        return self._runner.run(
            self._client.create_trigger(
                workflow,
                queue,
                idempotency_key=idempotency_key,
                input=input,
                broker=broker,
                version=version,
            )
        )

    def list_triggers(self, workflow: str | None = None) -> list[dict[str, Any]]:
        return self._runner.run(self._client.list_triggers(workflow))

    def get_trigger(self, trigger_id: str) -> dict[str, Any]:
        return self._runner.run(self._client.get_trigger(trigger_id))

    def delete_trigger(self, trigger_id: str) -> None:
        self._runner.run(self._client.delete_trigger(trigger_id))

    def create_event_stream(
        self,
        queue: str,
        events: Sequence[str] = ("*",),
        *,
        workflow: str | None = None,
        broker: str | None = None,
    ) -> dict[str, Any]:
        return self._runner.run(
            self._client.create_event_stream(queue, events, workflow=workflow, broker=broker)
        )

    def list_event_streams(self) -> list[dict[str, Any]]:
        return self._runner.run(self._client.list_event_streams())

    def delete_event_stream(self, stream_id: str) -> None:
        self._runner.run(self._client.delete_event_stream(stream_id))

    def event_stream_deliveries(self, stream_id: str, limit: int = 100) -> list[dict[str, Any]]:
        return self._runner.run(self._client.event_stream_deliveries(stream_id, limit))

    def health(self) -> dict[str, Any]:
        return self._runner.run(self._client.health())

    def live(self) -> bool:
        return self._runner.run(self._client.live())

    def ready(self) -> bool:
        return self._runner.run(self._client.ready())

    def metrics(self) -> str:
        return self._runner.run(self._client.metrics())

    def _iterate(self, source: AsyncGenerator[dict[str, Any], None]) -> Iterator[dict[str, Any]]:
        try:
            while True:
                try:
                    yield self._runner.run(_next(source))
                except StopAsyncIteration:
                    return
        finally:
            self._runner.run(source.aclose())


async def _next(source: AsyncGenerator[dict[str, Any], None]) -> dict[str, Any]:
    return await anext(source)
