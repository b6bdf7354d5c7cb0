"""/openapi.json describes every route of the app (the hot routes too), each /v1 and /v2 operation with its
request and reply schemas, both content types of the tensor routes, every error status as problem+json (/v1) or
`{"error"}` (/v2), the session links, and the WebSocket streams; /docs and /redoc work with no network."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from app_harness import ServerThread

from rnnserve.settings import Settings

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from test_api_reference import app_routes  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DOC_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/", "/playground", "/docs/assets"}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    running = ServerThread(Settings(models=ROOT / "models")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def schema(http: httpx.Client) -> dict:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_every_route_of_the_app_is_in_the_openapi(schema: dict) -> None:
    paths = schema["paths"]
    assert schema["openapi"].startswith("3.1")
    for route in app_routes():
        method, path = route.split(" ", 1)
        if any(path == d or path.startswith(d + "/") for d in DOC_ROUTES):
            continue
        assert path in paths, route
        if method == "WS":
            assert "x-websocket" in paths[path], route
            assert paths[path]["x-websocket"]["messages"].startswith("docs/API.md#"), route
        else:
            assert method.lower() in paths[path], route


def test_the_tensor_routes_take_json_and_raw_bytes_with_their_options(schema: dict) -> None:
    for path, options in (
        ("/v1/models/{model}/predict", {"shape", "X-Shape", "return_state"}),
        ("/v1/sessions/{session_id}/step", {"shape", "X-Shape", "seq", "X-Seq"}),
        ("/v2/models/{model}/infer", {"Inference-Header-Content-Length", "Content-Encoding"}),
    ):
        operation = schema["paths"][path]["post"]
        assert set(operation["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
        assert set(operation["responses"]["200"]["content"]) == {"application/json", "application/octet-stream"}
        assert options <= {p["name"] for p in operation["parameters"]}, path
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].startswith("#/components")


def test_every_error_status_is_a_problem_on_v1_and_an_error_object_on_v2(schema: dict) -> None:
    step = schema["paths"]["/v1/sessions/{session_id}/step"]["post"]["responses"]
    assert {"400", "401", "404", "409", "413", "503"} <= set(step)
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method.startswith("x-") or not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, reply in operation["responses"].items():
                if int(status) < 400 or path == "/readyz" or (status == "400" and path.endswith("/ready")):
                    continue  # readiness answers "not ready" in its own body
                (content_type, body), *_ = reply["content"].items()
                expected = "V2Error" if path.startswith("/v2") else "Problem"
                assert body["schema"]["$ref"] == f"#/components/schemas/{expected}", (method, path, status)
                assert content_type == ("application/json" if path.startswith("/v2") else "application/problem+json")


def test_creating_a_session_links_to_its_other_routes(schema: dict) -> None:
    created = schema["paths"]["/v1/sessions"]["post"]["responses"]["201"]
    links = {link["operationId"] for link in created["links"].values()}
    assert links == {"step_session", "get_session", "reset_session", "delete_session"}
    operation_ids = {
        op["operationId"] for item in schema["paths"].values() for op in item.values() if isinstance(op, dict)
        and "operationId" in op
    }  # fmt: skip
    assert links <= operation_ids


def test_model_parameters_name_the_served_models(schema: dict) -> None:
    [model] = [p for p in schema["paths"]["/v1/models/{model}"]["get"]["parameters"] if p["name"] == "model"]
    assert set(model["schema"]["enum"]) == {"chargru", "forecaster", "orbit"}


def test_docs_and_redoc_load_every_asset_from_the_server(http: httpx.Client) -> None:
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        response = http.get(page)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
        assert sources, page
        for source in sources:
            assert source.startswith("/"), (page, source)  # nothing from another host
            assert http.get(source).status_code == 200, (page, source)
    assert "/openapi.json" in http.get("/docs").text and 'spec-url="/openapi.json"' in http.get("/redoc").text
