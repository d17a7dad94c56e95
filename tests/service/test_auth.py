"""Who may call what: every endpoint x admin / operator / viewer / no key / revoked key /
unknown key / malformed header; the open endpoints; health behind a key; auth off."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from magicflow.service import Engine
from magicflow.service.app import create_app
from magicflow.service.auth import UNAUTHORIZED
from magicflow.service.keys import KeyCache, Role, create_key
from magicflow.service.settings import ServiceSettings
from tests.service.conftest import GREET, YAML, register, wait_status

READ, OPERATE, ADMIN = "read", "operate", "admin"
ALLOWED = {
    "admin": {READ, OPERATE, ADMIN},
    "operator": {READ, OPERATE},
    "viewer": {READ},
}
ENDPOINTS = [
    (READ, "GET", "/api/v1/workflows", None),
    (READ, "GET", "/api/v1/workflows/greet", None),
    (READ, "GET", "/api/v1/workflows/greet/versions", None),
    (READ, "GET", "/api/v1/workflows/greet/versions/1.0.0", None),
    (READ, "GET", "/api/v1/executions", None),
    (READ, "GET", "/api/v1/executions/{id}", None),
    (READ, "GET", "/api/v1/executions/{id}/events", None),
    (OPERATE, "POST", "/api/v1/workflows/greet/executions", {"input": {"name": "x"}}),
    (OPERATE, "POST", "/api/v1/executions/{id}/cancel", None),
    (OPERATE, "POST", "/api/v1/executions/{id}/pause", None),
    (OPERATE, "POST", "/api/v1/executions/{id}/resume", None),
    (OPERATE, "POST", "/api/v1/executions/{id}/retry", None),
    (OPERATE, "POST", "/api/v1/executions/{id}/signals/go", {"payload": 1}),
    (ADMIN, "POST", "/api/v1/workflows", GREET),
    (ADMIN, "DELETE", "/api/v1/workflows/other", None),
    (ADMIN, "DELETE", "/api/v1/workflows/other/versions/1.0.0", None),
    (ADMIN, "POST", "/api/v1/webhooks", {"url": "http://127.0.0.1:9/", "events": ["*"]}),
    (ADMIN, "GET", "/api/v1/webhooks", None),
    (ADMIN, "DELETE", "/api/v1/webhooks/wh_x", None),
    (ADMIN, "GET", "/api/v1/webhooks/wh_x/deliveries", None),
    (ADMIN, "POST", "/api/v1/event-streams", {"queue": "q", "events": ["*"]}),
    (ADMIN, "GET", "/api/v1/event-streams", None),
    (ADMIN, "DELETE", "/api/v1/event-streams/es_x", None),
    (ADMIN, "GET", "/api/v1/event-streams/es_x/deliveries", None),
    (READ, "GET", "/api/v1/workflows/greet/schedules", None),
    (OPERATE, "POST", "/api/v1/workflows/greet/schedules", {"cron": "0 0 * * *"}),
    (OPERATE, "DELETE", "/api/v1/workflows/greet/schedules/sch_x", None),
    (READ, "GET", "/api/v1/workflows/greet/triggers", None),
    (READ, "GET", "/api/v1/triggers", None),
    (READ, "GET", "/api/v1/triggers/tr_x", None),
    (ADMIN, "POST", "/api/v1/workflows/greet/triggers", {"queue": "q", "idempotency_key": "key"}),
    (ADMIN, "DELETE", "/api/v1/triggers/tr_x", None),
]
MALFORMED = [
    "Bearer",
    "Bearer ",
    "Basic YWRtaW46YWRtaW4=",
    "{key}",
    "Token {key}",
    "Bearer " + "a" * 5000,
]


@pytest.fixture
async def execution_id(admin: httpx.AsyncClient) -> str:
    await register(admin, GREET)
    started = await admin.post(
        "/api/v1/workflows/greet/executions", json={"input": {"name": "ada"}}
    )
    execution_id: str = started.json()["execution_id"]
    await wait_status(admin, execution_id, "completed")
    return execution_id


async def call(
    client: httpx.AsyncClient, method: str, path: str, body: object, headers: dict[str, str]
) -> httpx.Response:
    if isinstance(body, str):
        return await client.request(method, path, content=body, headers={**headers, **YAML})
    return await client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("permission", "method", "path", "body"), ENDPOINTS)
async def test_every_endpoint_by_role(
    anonymous: httpx.AsyncClient,
    keys: dict[str, str],
    execution_id: str,
    permission: str,
    method: str,
    path: str,
    body: object,
) -> None:
    path = path.replace("{id}", execution_id)
    for role, granted in ALLOWED.items():
        response = await call(
            anonymous, method, path, body, {"Authorization": f"Bearer {keys[role]}"}
        )
        if permission in granted:
            assert response.status_code not in (401, 403), (role, response.text)
        else:
            assert response.status_code == 403, (role, response.text)
            assert f"the {role} role may not" in response.json()["detail"]
    refusals: list[dict[str, str]] = [{}] + [
        {"Authorization": f"Bearer {keys[name]}"} for name in ("revoked", "unknown")
    ]
    refusals += [{"Authorization": h.format(key=keys["admin"])} for h in MALFORMED]
    for headers in refusals:
        response = await call(anonymous, method, path, body, headers)
        assert response.status_code == 401, headers
        assert response.json() == {"detail": UNAUTHORIZED}
        assert response.headers["www-authenticate"] == "Bearer"


async def test_the_bearer_scheme_is_case_insensitive(
    anonymous: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await anonymous.get(
        "/api/v1/workflows", headers={"Authorization": f"bearer {keys['viewer']}"}
    )
    assert response.status_code == 200


async def test_docs_openapi_and_liveness_need_no_key(anonymous: httpx.AsyncClient) -> None:
    for path in ("/openapi.json", "/docs", "/health/live", "/health", "/health/ready"):
        response = await anonymous.get(path)
        assert response.status_code == 200, path


@pytest.fixture
def protected_health_app(engine: Engine) -> FastAPI:
    return create_app(engine, ServiceSettings(open_health=False))


async def test_health_can_be_put_behind_a_key(
    protected_health_app: FastAPI, keys: dict[str, str]
) -> None:
    transport = httpx.ASGITransport(app=protected_health_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in ("/health", "/health/ready"):
            assert (await client.get(path)).status_code == 401
            viewer = {"Authorization": f"Bearer {keys['viewer']}"}
            assert (await client.get(path, headers=viewer)).status_code == 200
        assert (await client.get("/health/live")).status_code == 200


@pytest.fixture
async def open_client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(engine, ServiceSettings(auth=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_without_auth_everything_is_allowed(open_client: httpx.AsyncClient) -> None:
    assert (await register(open_client, GREET)).status_code == 201
    started = await open_client.post(
        "/api/v1/workflows/greet/executions", json={"input": {"name": "x"}}
    )
    assert started.status_code == 201
    assert (await open_client.delete("/api/v1/workflows/greet")).status_code == 200


async def test_the_matrix_walks_every_operation_of_the_api(anonymous: httpx.AsyncClient) -> None:
    paths = (await anonymous.get("/openapi.json")).json()["paths"]
    documented = {
        (method.upper(), template)
        for template, operations in paths.items()
        if template.startswith("/api/v1/")
        for method in operations
    }

    def template_of(method: str, path: str) -> str:
        parts = path.split("/")
        (found,) = [
            template
            for verb, template in documented
            if verb == method
            and len(template.split("/")) == len(parts)
            and all(
                a == b or a.startswith("{") for a, b in zip(template.split("/"), parts, strict=True)
            )
        ]
        return found

    walked = {(method, template_of(method, path)) for _, method, path, _ in ENDPOINTS}
    assert walked == documented


async def test_a_revoked_key_is_refused_once_the_cache_time_has_passed(
    app: FastAPI, engine: Engine
) -> None:
    """Verified keys are trusted ``key_cache_seconds`` without reading the store: a revocation
    takes effect within that time, never later; a refusal is not remembered."""
    now = [1000.0]
    service = app.state.service
    service.keys = KeyCache(ttl=service.settings.key_cache_seconds, clock=lambda: now[0])
    key, record = await create_key(engine.store, Role.VIEWER)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=headers
    ) as client:
        assert (await client.get("/api/v1/workflows")).status_code == 200
        await engine.store.revoke_api_key(record.id, 1.0)
        now[0] += service.settings.key_cache_seconds - 0.1
        assert (await client.get("/api/v1/workflows")).status_code == 200  # cached
        now[0] += 0.2
        assert (await client.get("/api/v1/workflows")).status_code == 401
        now[0] += 1000
        assert (await client.get("/api/v1/workflows")).status_code == 401


async def test_the_key_cache_is_bounded_and_can_be_off(engine: Engine) -> None:
    keys = [await create_key(engine.store, Role.VIEWER) for _ in range(3)]
    cache = KeyCache(ttl=60, size=2)
    for key, _ in keys:
        assert await cache.authenticate(engine.store, key) is not None
    assert len(cache._verified) == 2
    off = KeyCache(ttl=0)
    await off.authenticate(engine.store, keys[0][0])
    await engine.store.revoke_api_key(keys[0][1].id, 1.0)
    assert await off.authenticate(engine.store, keys[0][0]) is None
