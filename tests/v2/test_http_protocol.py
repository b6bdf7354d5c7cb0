"""The protocol on the wire (httpx): error bodies, binary bodies and headers, parameters a client library would
not let through, health codes, limits, the API key and the metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from app_harness import ServerThread
from v2_models import FEATURES

from rnnserve.api.v2.tensors import HEADER_LENGTH


@pytest.fixture(scope="module")
def http(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


def x_tensor(x: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist(), **extra}


def post_infer(http: httpx.Client, body: dict[str, Any], model: str = "gru", **kw: Any) -> httpx.Response:
    """stdlib json, which writes integers of any size (orjson stops at 64 bits)."""
    return http.post(f"/v2/models/{model}/infer", content=json.dumps(body).encode(), **kw)


def assert_error(response: httpx.Response, status: int, contains: str = "") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    assert contains.lower() in body["error"].lower(), body["error"]
    return str(body["error"])


def test_health_answers_the_protocols_json_bodies(http: httpx.Client) -> None:
    expected = {
        "/v2/health/live": {"live": True},
        "/v2/health/ready": {"ready": True},
        "/v2/models/gru/ready": {"name": "gru", "ready": True},
        "/v2/models/gru/versions/1/ready": {"name": "gru", "ready": True},
    }
    for path, body in expected.items():
        response = http.get(path)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json", path
        assert response.json() == body, path


def test_binary_inputs_with_json_outputs_and_binary_outputs_with_json_inputs(
    http: httpx.Client, rng: np.random.Generator
) -> None:
    x = rng.normal(size=(1, 3, FEATURES)).astype(np.float32)
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, 3, FEATURES], "parameters": {"binary_data_size": 36}}
            ]
        }
    )
    binary_in = http.post(
        "/v2/models/gru/infer", content=header + x.tobytes(), headers={HEADER_LENGTH: str(len(header))}
    )
    assert binary_in.status_code == 200 and HEADER_LENGTH not in binary_in.headers
    assert binary_in.headers["content-type"] == "application/json"
    as_json = binary_in.json()["outputs"][0]
    y = np.array(as_json["data"], dtype=np.float32).reshape(as_json["shape"])

    binary_out = post_infer(http, {"inputs": [x_tensor(x)], "parameters": {"binary_data_output": True}})
    assert binary_out.status_code == 200 and binary_out.headers["content-type"] == "application/octet-stream"
    length = int(binary_out.headers[HEADER_LENGTH])
    meta = orjson.loads(binary_out.content[:length])
    assert meta["model_name"] == "gru" and meta["model_version"] == "1"
    assert meta["outputs"] == [
        {"name": "dense", "datatype": "FP32", "shape": [1, 3, 2], "parameters": {"binary_data_size": 24}}
    ]
    np.testing.assert_array_equal(np.frombuffer(binary_out.content[length:], dtype="<f4").reshape(1, 3, 2), y)


def test_nested_json_data_is_accepted(http: httpx.Client, rng: np.random.Generator) -> None:
    x = rng.normal(size=(1, 2, FEATURES)).astype(np.float32)
    flat = post_infer(http, {"inputs": [x_tensor(x)]}).json()
    nested = post_infer(http, {"inputs": [x_tensor(x, data=x.tolist())]}).json()
    assert flat["outputs"] == nested["outputs"]


@pytest.mark.parametrize(
    ("body", "status", "contains"),
    [
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2, 3], "data": [1.0] * 5}]}, 400, "needs 6 values"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 0, 3], "data": []}]}, 400, "no timesteps"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 3], "data": [1, 2, 3]}]}, 200, ""),
        ({"inputs": []}, 400, "non-empty 'inputs'"),
        ({"inputs": [{"name": "x", "datatype": "STRING", "shape": [1], "data": [1]}]}, 400, "unsupported datatype"),
    ],
)
def test_malformed_bodies_are_400_errors(http: httpx.Client, body: dict[str, Any], status: int, contains: str) -> None:
    response = post_infer(http, body)
    if status == 200:
        assert response.status_code == 200, response.text
    else:
        assert_error(response, status, contains)


def test_a_body_that_is_not_json_is_a_400_error(http: httpx.Client) -> None:
    assert_error(http.post("/v2/models/gru/infer", content=b"\x00\x01"), 400, "not valid JSON")
    assert_error(http.post("/v2/models/gru/infer", content=b"{}", headers={HEADER_LENGTH: "9"}), 400, "body has 2")
    assert_error(http.post("/v2/models/gru/infer", content=b"{}", headers={"content-encoding": "br"}), 400, "'br'")


@pytest.mark.parametrize(
    ("parameters", "contains"),
    [
        ({"sequence_id": -1, "sequence_start": True}, "must be in [1, 2**64 - 1]"),
        ({"sequence_id": 2**64, "sequence_start": True}, "unsigned 64-bit integer"),  # JSON parses it as a float
        ({"sequence_id": 1.5}, "unsigned 64-bit integer"),
        ({"sequence_id": "s" * 300, "sequence_start": True}, "1 to 256 characters"),
        ({"sequence_start": True}, "need a sequence_id"),
        ({"sequence_id": 3, "sequence_start": "true"}, "sequence_start must be true or false"),
    ],
)
def test_bad_sequence_parameters_are_400_errors(
    http: httpx.Client, rng: np.random.Generator, parameters: dict[str, Any], contains: str
) -> None:
    x = rng.normal(size=(1, 1, FEATURES)).astype(np.float32)
    assert_error(post_infer(http, {"inputs": [x_tensor(x)], "parameters": parameters}), 400, contains)


def test_unknown_paths_models_and_versions_are_404_errors(http: httpx.Client) -> None:
    assert_error(http.get("/v2/models/gru/stats"), 404, "no route GET /v2/models/gru/stats")
    assert_error(http.get("/v2/models/nope"), 404, "no model named 'nope'")
    assert_error(http.get("/v2/models/nope/ready"), 404, "no model named 'nope'")
    assert_error(http.get("/v2/models/gru/versions/0/ready"), 404, "no version '0'")
    assert_error(http.post("/v2/models/gru/versions/2/infer", content=b"{}"), 404, "no version '2'")
    assert_error(http.delete("/v2/models/gru"), 405, "DELETE is not allowed")


def test_a_body_over_the_limit_is_a_413_error(http: httpx.Client) -> None:
    big = b" " * (256 * 1024 + 1)
    assert_error(http.post("/v2/models/gru/infer", content=big), 413, "limit")


def test_v2_requests_count_in_the_metrics(http: httpx.Client, rng: np.random.Generator) -> None:
    x = rng.normal(size=(1, 2, FEATURES)).astype(np.float32)
    post_infer(http, {"inputs": [x_tensor(x)]})
    body = {"inputs": [x_tensor(x)], "parameters": {"sequence_id": "metrics", "sequence_start": True}}
    post_infer(http, body)
    post_infer(http, {"inputs": [{"name": "x"}]})
    http.get("/v2/models/gru")
    metrics = http.get("/metrics").text
    assert 'rnnserve_requests_total{method="POST",route="/v2/models/{model}/infer",status="200"}' in metrics
    assert 'rnnserve_requests_total{method="POST",route="/v2/models/{model}/infer",status="400"}' in metrics
    assert 'rnnserve_requests_total{method="GET",route="/v2/models/{model}",status="200"}' in metrics
    assert 'rnnserve_predictions_total{model="gru"}' in metrics
    assert 'rnnserve_session_steps_total{model="gru"}' in metrics


def test_the_api_key_guards_v2_but_not_its_health(make_server: Callable[..., ServerThread]) -> None:
    guarded = make_server(api_key="sesame")
    with httpx.Client(base_url=guarded.url) as http:
        assert http.get("/v2/health/live").status_code == 200 and http.get("/v2/health/ready").status_code == 200
        assert_error(http.get("/v2/models/gru"), 401, "API key")
        assert_error(http.get("/v2"), 401, "API key")
        assert http.get("/v2", headers={"Authorization": "Bearer sesame"}).status_code == 200


def test_a_model_that_failed_to_load_is_not_ready_and_answers_503(http: httpx.Client) -> None:
    assert http.get("/v2/health/ready").status_code == 200  # failed models are reported, not awaited
    ready = http.get("/v2/models/broken/ready")
    assert ready.status_code == 400 and ready.json() == {"name": "broken", "ready": False}
    assert_error(http.get("/v2/models/broken"), 503, "model 'broken' is failed")
    assert_error(post_infer(http, {"inputs": [x_tensor(np.zeros((1, 1, FEATURES)))]}, model="broken"), 503, "failed")


async def test_concurrent_starts_of_one_new_sequence_never_fail_inside(server: ServerThread) -> None:
    """Starts racing on one new id: each opens or restarts the sequence, or is told to retry (409); none is a
    500, and the sequence serves afterwards."""
    x = np.ones((1, 1, FEATURES), dtype=np.float32)
    body = json.dumps({"inputs": [x_tensor(x)], "parameters": {"sequence_id": "race", "sequence_start": True}})
    async with httpx.AsyncClient(base_url=server.url) as client:
        responses = await asyncio.gather(*(client.post("/v2/models/gru/infer", content=body) for _ in range(8)))
        assert {r.status_code for r in responses} <= {200, 409}, [r.text for r in responses]
        assert any(r.status_code == 200 for r in responses)
        for r in responses:
            if r.status_code == 409:
                assert_error(r, 409, "started by a concurrent request")
        after = await client.post(
            "/v2/models/gru/infer",
            content=json.dumps({"inputs": [x_tensor(x)], "parameters": {"sequence_id": "race"}}),
        )
        assert after.status_code == 200, after.text
