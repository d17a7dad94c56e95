"""Definitions over HTTP: register (YAML, JSON), read, versions, soft delete, and errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import yaml

from tests.service.conftest import GREET, YAML, register


async def test_registering_creates_then_returns_the_same_then_refuses_other_content(
    admin: httpx.AsyncClient,
) -> None:
    created = await register(admin, GREET)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["version"], body["description"]) == ("greet", "1.0.0", "Say hello")
    assert body["source"] == GREET
    assert body["created_at"].endswith("Z")
    again = await register(admin, GREET)
    assert again.status_code == 200
    assert again.json()["digest"] == body["digest"]
    other = await register(admin, GREET.replace("Say hello", "Say hi"))
    assert other.status_code == 409
    assert "already registered" in other.json()["detail"]


async def test_a_json_document_registers_too(admin: httpx.AsyncClient) -> None:
    document = yaml.safe_load(GREET)
    response = await admin.post("/api/v1/workflows", json=document)
    assert response.status_code == 201, response.text
    assert response.json()["document"]["name"] == "greet"


async def test_an_invalid_document_gets_the_diagnostics_of_validate(
    admin: httpx.AsyncClient,
) -> None:
    text = GREET.replace("function: hello", "function: hello\n    depend_on: [x]")
    response = await register(admin, text)
    assert response.status_code == 422
    body = response.json()
    assert body["detail"].startswith("invalid workflow definition: <request>:11:5: error:")
    (diagnostic,) = body["diagnostics"]
    assert diagnostic["line"] == 11
    assert "did you mean 'depends_on'" in diagnostic["message"]
    assert set(diagnostic) == {"file", "line", "col", "severity", "message", "path"}


async def test_bad_bodies_are_4xx_with_a_reason(admin: httpx.AsyncClient) -> None:
    cases = [
        (b"name: [unclosed", YAML, 422),
        (b"{not json", {"Content-Type": "application/json"}, 422),
        (b"", YAML, 422),
        (b"- just\n- a list\n", YAML, 422),
        (b"\xff\xfe\x00garbage", YAML, 422),
        (GREET.encode(), {"Content-Type": "text/html"}, 415),
        (b"x" * (5 * 1024 * 1024), YAML, 413),
    ]
    for content, headers, status in cases:
        response = await admin.post("/api/v1/workflows", content=content, headers=headers)
        assert response.status_code == status, (content[:20], response.text)
        assert response.json()["detail"]


async def test_a_huge_body_without_a_length_is_refused(admin: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"#" * 65536

    response = await admin.post("/api/v1/workflows", content=chunks(), headers=YAML)
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


async def test_workflows_are_listed_with_their_versions(admin: httpx.AsyncClient) -> None:
    for version in ("1.0.0", "1.10.0", "1.9.0"):
        assert (await register(admin, GREET.replace("1.0.0", version))).status_code == 201
    listed = (await admin.get("/api/v1/workflows")).json()["items"]
    assert listed == [
        {
            "name": "greet",
            "latest_version": "1.10.0",
            "description": "Say hello",
            "versions": ["1.0.0", "1.9.0", "1.10.0"],
        }
    ]
    latest = (await admin.get("/api/v1/workflows/greet")).json()
    assert latest["version"] == "1.10.0"
    versions = (await admin.get("/api/v1/workflows/greet/versions")).json()["items"]
    assert [v["version"] for v in versions] == ["1.0.0", "1.9.0", "1.10.0"]
    one = (await admin.get("/api/v1/workflows/greet/versions/1.9.0")).json()
    assert (one["version"], one["deleted"]) == ("1.9.0", False)


async def test_unknown_workflows_and_versions_are_404(admin: httpx.AsyncClient) -> None:
    await register(admin, GREET)
    for path in (
        "/api/v1/workflows/nope",
        "/api/v1/workflows/nope/versions",
        "/api/v1/workflows/greet/versions/9.9.9",
    ):
        response = await admin.get(path)
        assert response.status_code == 404, path
        assert "not registered" in response.json()["detail"]
    assert (await admin.delete("/api/v1/workflows/nope")).status_code == 404
    assert (await admin.get("/api/v1/nothing-here")).status_code == 404


async def test_delete_is_soft(admin: httpx.AsyncClient) -> None:
    await register(admin, GREET)
    await register(admin, GREET.replace("1.0.0", "2.0.0"))
    deleted = await admin.delete("/api/v1/workflows/greet/versions/2.0.0")
    assert deleted.json() == {"name": "greet", "version": "2.0.0", "deleted": 1}
    assert (await admin.get("/api/v1/workflows/greet")).json()["version"] == "1.0.0"
    kept = (await admin.get("/api/v1/workflows/greet/versions/2.0.0")).json()
    assert kept["deleted"] is True
    start = await admin.post(
        "/api/v1/workflows/greet/executions", json={"input": {"name": "a"}, "version": "2.0.0"}
    )
    assert start.status_code == 404
    everything = await admin.delete("/api/v1/workflows/greet")
    assert everything.json()["deleted"] == 1
    assert (await admin.get("/api/v1/workflows")).json()["items"] == []
    listed = (await admin.get("/api/v1/workflows?include_deleted=true")).json()["items"]
    assert listed[0]["versions"] == ["1.0.0", "2.0.0"]
    start = await admin.post("/api/v1/workflows/greet/executions", json={"input": {"name": "a"}})
    assert start.status_code == 404
    # registering the same content again brings it back
    assert (await register(admin, GREET)).status_code == 200
    assert json.loads((await admin.get("/api/v1/workflows/greet")).text)["version"] == "1.0.0"
