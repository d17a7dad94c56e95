"""Executions over HTTP: start, read, list, control, signal, and their errors."""

from __future__ import annotations

import httpx

from tests.service.conftest import APPROVAL, BROKEN, GREET, register, wait_status

START = "/api/v1/workflows/{}/executions"


async def test_start_then_read_the_result_document(admin: httpx.AsyncClient) -> None:
    await register(admin, GREET)
    started = await admin.post(START.format("greet"), json={"input": {"name": "ada"}})
    assert started.status_code == 201, started.text
    execution_id = started.json()["execution_id"]
    document = await wait_status(admin, execution_id, "completed")
    assert document["execution_id"] == execution_id
    assert document["workflow"] == {"name": "greet", "version": "1.0.0"}
    assert document["input"] == {"name": "ada"}
    assert document["output"] == {"hello": {"greeting": "hello ada"}}
    assert document["error"] is None
    step = document["steps"]["hello"]
    assert (step["status"], step["attempts"], step["fallback_used"]) == ("completed", 1, False)
    assert document["started_at"].endswith("Z")


async def test_the_same_idempotency_key_gives_the_same_execution(
    admin: httpx.AsyncClient,
) -> None:
    await register(admin, GREET)
    body = {"input": {"name": "ada"}, "idempotency_key": "order-1"}
    first = (await admin.post(START.format("greet"), json=body)).json()["execution_id"]
    second = (await admin.post(START.format("greet"), json=body)).json()["execution_id"]
    assert first == second
    other = await admin.post(START.format("greet"), json={**body, "idempotency_key": "order-2"})
    assert other.json()["execution_id"] != first


async def test_starting_with_bad_input_or_an_unknown_workflow_is_refused(
    admin: httpx.AsyncClient,
) -> None:
    await register(admin, GREET)
    invalid = await admin.post(START.format("greet"), json={"input": {"name": 42}})
    assert invalid.status_code == 422
    assert invalid.json()["detail"] == "invalid input: input.name: 42 is not of type 'string'"
    assert invalid.json()["diagnostics"]
    missing = await admin.post(START.format("greet"), json={"input": {}})
    assert missing.status_code == 422
    assert "name" in missing.json()["detail"]
    assert (await admin.post(START.format("nope"), json={})).status_code == 404
    unknown_version = await admin.post(START.format("greet"), json={"version": "9"})
    assert unknown_version.status_code == 404
    for bad in (b"{", b"[1, 2]", b'{"input": {}, "surprise": 1}', b'{"version": 3}'):
        response = await admin.post(
            START.format("greet"), content=bad, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, bad
        assert response.json()["detail"].startswith("invalid request")
    assert (await admin.get("/api/v1/executions")).json()["items"] == []


async def test_reading_an_unknown_execution_is_404(admin: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/api/v1/executions/nope"),
        ("GET", "/api/v1/executions/nope/events"),
        ("POST", "/api/v1/executions/nope/cancel"),
        ("POST", "/api/v1/executions/nope/signals/approve"),
    ):
        response = await admin.request(method, path)
        assert response.status_code == 404, path
        assert "nope" in response.json()["detail"]


async def test_executions_are_listed_newest_first_a_page_at_a_time(
    admin: httpx.AsyncClient,
) -> None:
    await register(admin, GREET)
    await register(admin, BROKEN)
    ids = []
    for n in range(5):
        response = await admin.post(START.format("greet"), json={"input": {"name": f"n{n}"}})
        ids.append(response.json()["execution_id"])
    broken = (await admin.post(START.format("broken"), json={})).json()["execution_id"]
    await wait_status(admin, broken, "failed")
    for execution_id in ids:
        await wait_status(admin, execution_id, "completed")
    page = (await admin.get("/api/v1/executions?workflow=greet&limit=2")).json()
    assert [item["execution_id"] for item in page["items"]] == ids[:-3:-1]
    seen = [item["execution_id"] for item in page["items"]]
    while page["next_cursor"] is not None:
        page = (
            await admin.get(
                f"/api/v1/executions?workflow=greet&limit=2&cursor={page['next_cursor']}"
            )
        ).json()
        seen += [item["execution_id"] for item in page["items"]]
    assert seen == ids[::-1]
    failed = (await admin.get("/api/v1/executions?status=failed")).json()["items"]
    assert [item["execution_id"] for item in failed] == [broken]
    assert failed[0]["error"]["message"] == "boom"
    for query in (
        "status=weird",
        "limit=0",
        "limit=100000",
        "limit=x",
        "cursor=abc",
        "cursor=99999999999999999999999",
    ):
        response = await admin.get(f"/api/v1/executions?{query}")
        assert response.status_code == 422, query
        assert response.json()["detail"]


async def test_pause_resume_cancel_retry_and_conflicts(admin: httpx.AsyncClient) -> None:
    await register(admin, APPROVAL)
    execution_id = (await admin.post(START.format("approval"), json={})).json()["execution_id"]
    base = f"/api/v1/executions/{execution_id}"
    await wait_status(admin, execution_id, "running")
    resume = await admin.post(f"{base}/resume")
    assert resume.status_code == 409
    assert "running" in resume.json()["detail"]
    assert (await admin.post(f"{base}/retry")).status_code == 409
    paused = await admin.post(f"{base}/pause")
    assert paused.status_code == 202
    assert paused.json() == {"execution_id": execution_id, "action": "pause"}
    await wait_status(admin, execution_id, "paused")
    assert (await admin.post(f"{base}/pause")).status_code == 409
    assert (await admin.post(f"{base}/resume")).status_code == 202
    await wait_status(admin, execution_id, "running")
    cancelled = await admin.post(f"{base}/cancel", json={"reason": "changed my mind"})
    assert cancelled.status_code == 202
    document = await wait_status(admin, execution_id, "cancelled")
    assert document["steps"]["done"]["status"] == "cancelled"
    assert (await admin.post(f"{base}/cancel")).status_code == 409
    assert (await admin.post(f"{base}/signals/approve", json={"payload": {}})).status_code == 409
    assert (await admin.post(f"{base}/retry")).status_code == 202
    await wait_status(admin, execution_id, "running")
    signalled = await admin.post(f"{base}/signals/approve", json={"payload": {"by": "bob"}})
    assert signalled.status_code == 202
    done = await wait_status(admin, execution_id, "completed")
    assert done["steps"]["ask"]["output"] == {"by": "bob"}
    assert done["output"] == {"done": {"greeting": "hello bob"}}


async def test_the_openapi_document_describes_the_api(admin: httpx.AsyncClient) -> None:
    document = (await admin.get("/openapi.json")).json()
    paths = document["paths"]
    for path in (
        "/api/v1/workflows",
        "/api/v1/workflows/{name}/executions",
        "/api/v1/executions/{execution_id}/events",
        "/health",
    ):
        assert path in paths
    assert "HTTPBearer" in document["components"]["securitySchemes"]
    docs = await admin.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_a_string_that_is_not_valid_unicode_is_refused(admin: httpx.AsyncClient) -> None:
    await register(admin, APPROVAL)
    surrogate = '{"input": {"name": "\\ud800"}}'  # valid JSON, but no UTF-8 encoder takes it
    json_type = {"Content-Type": "application/json"}
    response = await admin.post(START.format("approval"), content=surrogate, headers=json_type)
    assert response.status_code == 422
    assert "cannot be stored" in response.json()["detail"]
    execution_id = (await admin.post(START.format("approval"), json={})).json()["execution_id"]
    await wait_status(admin, execution_id, "running")
    signal = await admin.post(
        f"/api/v1/executions/{execution_id}/signals/approve",
        content='{"payload": "\\udc00"}',
        headers=json_type,
    )
    assert signal.status_code == 422
    document = await wait_status(admin, execution_id, "running")
    assert document["steps"]["ask"]["status"] == "waiting"
