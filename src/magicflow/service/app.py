"""The HTTP API: ``create_app(engine, settings)`` builds the ASGI application.

The app does not own the engine: whoever runs it (``magic-flow server``, a test) enters the
engine first and leaves it after the server has stopped. Routes live in ``service/routes/``
by concern; request and response bodies in ``service/schemas.py``; who may call what in
``service/auth.py``. Every error is JSON with a ``detail`` that says why.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from magicflow import __version__
from magicflow.errors import (
    BrokerError,
    ConflictError,
    MagicFlowError,
    NotFoundError,
    StoreError,
    WorkflowValidationError,
)
from magicflow.service.auth import CanRead
from magicflow.service.engine import Engine
from magicflow.service.events import EventHub
from magicflow.service.hooks import install as install_hooks
from magicflow.service.keys import KeyCache
from magicflow.service.metrics import Metrics
from magicflow.service.routes import definitions, executions, health, metrics
from magicflow.service.schemas import Problem, RequestProblem
from magicflow.service.settings import ServiceSettings
from magicflow.service.state import ServiceState

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Magic Flow's workflow service: register YAML workflow definitions, start and control their
executions, watch them as server-sent events.

Authenticate with `Authorization: Bearer <API key>` (`magic-flow keys create --role ...`).
Roles: **admin** (everything), **operator** (start, control, signal, read), **viewer** (read).
"""


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": Problem}, 403: {"model": Problem}}
# documented on every API route (FastAPI's own 422 schema is not what we answer)
REQUEST_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The request cannot be carried out as sent."},
    422: {"model": RequestProblem, "description": "A parameter or the body is invalid."},
}


def create_app(engine: Engine, settings: ServiceSettings | None = None) -> FastAPI:
    """The ASGI app serving ``engine`` (already entered: ``async with engine``)."""
    settings = settings or ServiceSettings()
    hub = EventHub()
    engine.driver.add_listener(hub.notify)
    recorder = Metrics()
    engine.driver.add_listener(recorder.record)
    app = FastAPI(
        title="Magic Flow",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    keys = KeyCache(ttl=settings.key_cache_seconds)
    app.state.service = ServiceState(engine, settings, hub, recorder, keys)
    # routes are tried in order: the busiest first (no two routers' paths overlap)
    app.include_router(executions.router, prefix="/api/v1", responses=REQUEST_ERRORS)
    app.include_router(definitions.router, prefix="/api/v1", responses=REQUEST_ERRORS)
    app.include_router(health.live_router)
    guard: dict[str, Any] = {}
    if not settings.open_health:
        guard = {"dependencies": [CanRead], "responses": AUTH_ERRORS}
    app.include_router(health.router, **guard)
    app.include_router(metrics.router, **guard)
    install_hooks(app, engine, REQUEST_ERRORS)  # webhooks and schedules
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def _problem(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg"))}
            for error in exc.errors()
        ]
        reasons = "; ".join(
            f"{'.'.join(e['loc'][1:] if len(e['loc']) > 1 else e['loc'])}: {e['msg']}"
            for e in errors[:5]
        )
        return _problem(422, f"invalid request: {reasons}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _problem(exc.status_code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if exc.status_code == 405:  # Starlette names the methods of one route of the path only
            response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response

    @app.exception_handler(WorkflowValidationError)
    async def invalid(request: Request, exc: WorkflowValidationError) -> JSONResponse:
        diagnostics = [d.to_dict() for d in exc.diagnostics]
        return _problem(422, str(exc), diagnostics=diagnostics)

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return _problem(404, str(exc))

    @app.exception_handler(ConflictError)
    async def conflict(request: Request, exc: ConflictError) -> JSONResponse:
        return _problem(409, str(exc))

    @app.exception_handler(StoreError)
    @app.exception_handler(BrokerError)
    async def unavailable(request: Request, exc: MagicFlowError) -> JSONResponse:
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
        return _problem(503, f"the service cannot serve this now: {exc}")

    @app.exception_handler(MagicFlowError)
    async def refused(request: Request, exc: MagicFlowError) -> JSONResponse:
        return _problem(400, str(exc))


def _allowed_methods(request: Request) -> list[str]:
    """Every method that some operation of the request's path answers (from the OpenAPI
    document: it lists every route, and FastAPI caches it)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    got = raw.decode("latin-1").split("?", 1)[0].strip("/").split("/")
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        want = template.strip("/").split("/")
        if len(want) == len(got) and all(
            w == g or (w.startswith("{") and w.endswith("}"))
            for w, g in zip(want, got, strict=True)
        ):
            methods.update(method.upper() for method in operations)
    return sorted(methods)


class _TooLarge(BaseException):
    """Raised from ``receive`` when a body without Content-Length grows past the limit (a
    BaseException, so that no body parser turns it into a 400 on its way out)."""


class BodyLimit:
    """413 for a request body over ``max_bytes`` (announced by Content-Length, or counted)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except* _TooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        detail = f"the request body is larger than {self.max_bytes:,} bytes"
        response = _problem(413, detail)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})
