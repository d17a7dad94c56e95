"""``GET /metrics``: Prometheus text format (open unless ``open_health`` is off, as /health)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from magicflow.service.metrics import CONTENT_TYPE
from magicflow.service.state import service_of

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE.split(";", 1)[0]: {"schema": {"type": "string"}}},
            "description": "Every `magicflow_` metric, in the Prometheus text format.",
        }
    },
)
async def metrics(request: Request) -> Response:
    """Executions, steps, retries, timeouts, breakers, queue depth, outbox lag."""
    service = service_of(request)
    body = await service.metrics.render(service.engine)
    return Response(body, media_type=CONTENT_TYPE)
