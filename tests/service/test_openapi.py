"""The OpenAPI document says what the app does (found by tests/service/test_openapi_fuzz.py)."""

from __future__ import annotations

import httpx
import pytest

from magicflow.service.settings import ServiceSettings


async def test_a_wrong_method_names_every_method_of_the_path(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.request("OPTIONS", "/api/v1/workflows")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    named = await anonymous.request("PUT", "/api/v1/workflows/greet/versions/1.0.0")
    assert named.headers["allow"] == "DELETE, GET"


async def test_request_errors_are_documented_as_answered(anonymous: httpx.AsyncClient) -> None:
    document = (await anonymous.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    get_execution = document["paths"]["/api/v1/executions/{execution_id}"]["get"]
    ref = get_execution["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/RequestProblem")
    assert schemas["RequestProblem"]["properties"]["detail"]["type"] == "string"


async def test_open_health_and_metrics_need_no_key_in_the_document(
    anonymous: httpx.AsyncClient,
) -> None:
    paths = (await anonymous.get("/openapi.json")).json()["paths"]
    for path in ("/health", "/health/ready", "/metrics", "/health/live"):
        assert "security" not in paths[path]["get"], path
    assert paths["/api/v1/executions"]["get"]["security"]


@pytest.mark.parametrize("settings", [ServiceSettings(open_health=False)])
async def test_protected_health_and_metrics_say_so(anonymous: httpx.AsyncClient) -> None:
    paths = (await anonymous.get("/openapi.json")).json()["paths"]
    for path in ("/health", "/health/ready", "/metrics"):
        assert paths[path]["get"]["security"], path
        assert "401" in paths[path]["get"]["responses"]
    assert "security" not in paths["/health/live"]["get"]
