"""Workflow definitions: register (YAML or JSON), read, list versions, soft delete."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from magicflow.dsl import ValidationResult, parse_workflow
from magicflow.service.auth import CanAdminister, CanRead
from magicflow.service.schemas import (
    DefinitionOut,
    Deleted,
    InvalidProblem,
    Problem,
    VersionList,
    VersionOut,
    WorkflowList,
    WorkflowOut,
)
from magicflow.service.state import engine_of, timestamp
from magicflow.stores.base import DefinitionRecord

router = APIRouter(tags=["definitions"])

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"application/json"})
_SOURCE_NAME = "<request>"
_decode = msgspec.json.Decoder(dict[str, Any]).decode

Name = Annotated[str, Path(max_length=200)]
Version = Annotated[str, Path(max_length=200)]
IncludeDeleted = Annotated[bool, Query(description="List soft-deleted versions too.")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
}


def _summary(record: DefinitionRecord) -> dict[str, Any]:
    description = _decode(record.document).get("description")
    return {
        "name": record.name,
        "version": record.version,
        "description": description if isinstance(description, str) else None,
        "digest": record.digest,
        "created_at": timestamp(record.created_at),
        "deleted": record.deleted,
    }


def _definition(record: DefinitionRecord) -> DefinitionOut:
    return DefinitionOut(
        **_summary(record), document=_decode(record.document), source=record.source
    )


async def _parse(body: bytes) -> ValidationResult:
    if len(body) < 65536:
        return parse_workflow(body, _SOURCE_NAME)
    return await asyncio.to_thread(parse_workflow, body, _SOURCE_NAME)


@router.post(
    "/workflows",
    status_code=201,
    dependencies=[CanAdminister],
    response_model=DefinitionOut,
    responses={
        200: {"model": DefinitionOut, "description": "This very document was registered."},
        409: {"model": Problem, "description": "Same name and version, other content."},
        413: {"model": Problem},
        415: {"model": Problem},
        422: {"model": InvalidProblem, "description": "Invalid: the diagnostics of `validate`."},
        **_ERRORS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/yaml": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
async def register_workflow(request: Request, response: Response) -> Any:
    """Register the version a workflow document names (YAML, or the same as JSON)."""
    content_type = request.headers.get("content-type", "application/yaml")
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in YAML_TYPES | JSON_TYPES:
        raise HTTPException(
            415, f"send the workflow as application/yaml or application/json, not {media!r}"
        )
    body = await request.body()
    if not body.strip():
        raise HTTPException(422, "the request body is empty: send a workflow document")
    result = await _parse(body)
    if result.plan is None or not result.valid:
        first = result.diagnostics[0].format() if result.diagnostics else "invalid"
        more = len(result.diagnostics) - 1
        problem = InvalidProblem(
            detail=f"invalid workflow definition: {first}"
            + (f" (and {more} more)" if more > 0 else ""),
            diagnostics=[d.to_dict() for d in result.diagnostics],  # type: ignore[misc]
        )
        return JSONResponse(problem.model_dump(), status_code=422)
    engine = engine_of(request)
    created = await engine.register(result.plan, body.decode("utf-8", "replace"))
    record = await engine.store.get_definition(result.plan.name, result.plan.version)
    if record is None:  # deleted again in between
        raise HTTPException(409, "the definition was deleted while being registered")
    response.status_code = 201 if created else 200
    return _definition(record)


@router.get("/workflows", dependencies=[CanRead], responses=_ERRORS)
async def list_workflows(request: Request, include_deleted: IncludeDeleted = False) -> WorkflowList:
    """Every workflow with its versions (natural order) and its latest version."""
    records = await engine_of(request).store.list_definitions(include_deleted=include_deleted)
    by_name: dict[str, list[DefinitionRecord]] = {}
    for record in records:
        by_name.setdefault(record.name, []).append(record)
    items = []
    for name, versions in by_name.items():
        live = [r for r in versions if not r.deleted] or versions
        items.append(
            WorkflowOut(
                name=name,
                latest_version=live[-1].version,
                description=_summary(live[-1])["description"],
                versions=[r.version for r in versions],
            )
        )
    return WorkflowList(items=items)


@router.get("/workflows/{name}", dependencies=[CanRead], responses=_ERRORS)
async def get_workflow(request: Request, name: Name) -> DefinitionOut:
    """The latest version of a workflow (not deleted)."""
    record = await engine_of(request).store.get_definition(name)
    if record is None:
        raise HTTPException(404, f"workflow {name} is not registered")
    return _definition(record)


@router.get("/workflows/{name}/versions", dependencies=[CanRead], responses=_ERRORS)
async def list_versions(
    request: Request, name: Name, include_deleted: IncludeDeleted = False
) -> VersionList:
    """The versions of a workflow, oldest first (natural order: 1.9.0 < 1.10.0)."""
    store = engine_of(request).store
    records = await store.list_definitions(name, include_deleted=include_deleted)
    if not records:
        raise HTTPException(404, f"workflow {name} is not registered")
    return VersionList(items=[VersionOut(**_summary(r)) for r in records])


@router.get("/workflows/{name}/versions/{version}", dependencies=[CanRead], responses=_ERRORS)
async def get_version(request: Request, name: Name, version: Version) -> DefinitionOut:
    """One version of a workflow (a deleted one too: it says ``deleted: true``)."""
    store = engine_of(request).store
    record = await store.get_definition(name, version, include_deleted=True)
    if record is None:
        raise HTTPException(404, f"workflow {name}@{version} is not registered")
    return _definition(record)


@router.delete("/workflows/{name}", dependencies=[CanAdminister], responses=_ERRORS)
async def delete_workflow(request: Request, name: Name) -> Deleted:
    """Soft-delete every version: no new executions; running ones finish."""
    return await _delete(request, name, None)


@router.delete(
    "/workflows/{name}/versions/{version}", dependencies=[CanAdminister], responses=_ERRORS
)
async def delete_version(request: Request, name: Name, version: Version) -> Deleted:
    """Soft-delete one version: no new executions of it; running ones finish."""
    return await _delete(request, name, version)


async def _delete(request: Request, name: str, version: str | None) -> Deleted:
    engine = engine_of(request)
    count = await engine.store.delete_definition(name, version)
    if count == 0:
        what = name if version is None else f"{name}@{version}"
        raise HTTPException(404, f"workflow {what} is not registered (or already deleted)")
    engine.catalog.forget_latest(name)
    return Deleted(name=name, version=version, deleted=count)
