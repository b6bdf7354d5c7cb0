"""/v2 infer on the hot path (`EdgeApp`): served before FastAPI's routing by `rnnserve.api.v2.endpoint`, yet
answering exactly as the FastAPI route does: the same bodies and headers for good and bad requests, 405 for other
methods, the API key, the body limit (413 in the /v2 error form) and the metrics under the same route templates."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from app_harness import Routed, ServerThread
from app_harness import in_process as app_in_process
from test_http_protocol import assert_error, x_tensor
from v2_models import FEATURES
from v2_server import settings_for

from rnnserve.api.edge import EdgeApp, HotRoutes
from rnnserve.api.routes import HOT_ROUTES
from rnnserve.api.v2.tensors import HEADER_LENGTH

match = HotRoutes(HOT_ROUTES).match
KEY = "v2-hot-key"
INFER = "/v2/models/{model}/infer"
VERSION_INFER = "/v2/models/{model}/versions/{version}/infer"


@pytest.mark.parametrize(
    ("method", "path", "hot"),
    [
        ("POST", "/v2/models/gru/infer", (INFER, {"model": "gru"})),
        ("POST", "/v2/models/gru/versions/1/infer", (VERSION_INFER, {"model": "gru", "version": "1"})),
        ("POST", "/v2/models/gru/versions/7/infer", (VERSION_INFER, {"model": "gru", "version": "7"})),
        ("POST", "/v2/models/versions/infer", (INFER, {"model": "versions"})),
        ("GET", "/v2/models/gru/infer", None),
        ("POST", "/v2/models//infer", None),
        ("POST", "/v2/models/infer", None),
        ("POST", "/v2/models/a/b/infer", None),
        ("POST", "/v2/models/gru/versions//infer", None),
        ("POST", "/v2/models//versions/1/infer", None),
        ("POST", "/v2/models/gru/versions/1/2/infer", None),
        ("POST", "/v2/models/gru/other/1/infer", None),
        ("POST", "/v2/models/gru/infer/x", None),
        ("POST", "/v2/models/gru/ready", None),
    ],
)
def test_match_picks_exactly_the_infer_routes(method: str, path: str, hot: tuple | None) -> None:
    found = match({"type": "http", "method": method, "path": path})
    assert (found[1:] if found else None) == hot


@pytest.fixture
async def in_process(models_dir: Path) -> AsyncIterator[EdgeApp]:
    async with app_in_process(settings_for(models_dir, max_body_bytes=4096)) as app:
        yield app


async def _requests(client: httpx.AsyncClient, x: np.ndarray, sequence_id: int) -> list[httpx.Response]:
    body = orjson.dumps({"id": "r1", "inputs": [x_tensor(x)]})
    binary_out = orjson.dumps({"inputs": [x_tensor(x)], "parameters": {"binary_data_output": True}})
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": list(x.shape), "parameters": {"binary_data_size": x.nbytes}}
            ]
        }
    )
    sequence = orjson.dumps(
        {
            "inputs": [x_tensor(x)],
            "parameters": {"sequence_id": sequence_id, "sequence_start": True, "sequence_end": True},
        }
    )
    post = client.post
    return [
        # good
        await post("/v2/models/gru/infer", content=body),
        await post("/v2/models/gru/versions/1/infer", content=body),
        await post("/v2/models/gru/infer", content=binary_out),
        await post("/v2/models/gru/infer", content=header + x.tobytes(), headers={HEADER_LENGTH: str(len(header))}),
        await post("/v2/models/gru/infer", content=gzip.compress(body), headers={"content-encoding": "gzip"}),
        await post("/v2/models/gru/infer", content=sequence),
        # bad
        await post("/v2/models/gru/infer", content=b"{not json"),
        await post("/v2/models/gru/infer", content=orjson.dumps({"inputs": [x_tensor(x[..., :2])]})),
        await post("/v2/models/nope/infer", content=body),
        await post("/v2/models/gru/versions/2/infer", content=body),
        await post("/v2/models/broken/infer", content=body),
        await post("/v2/models/gru/infer", content=body, headers={"content-encoding": "br"}),
        await post("/v2/models/gru/infer", content=b"{}" + b" " * 5000),
        await post("/v2/models/gru/infer", content=gzip.compress(b" " * 5000), headers={"content-encoding": "gzip"}),
        await post("/v2/models/gru/infer", content=body, headers={HEADER_LENGTH: "99999"}),
    ]


async def test_the_hot_path_and_fastapi_routing_answer_alike(in_process: EdgeApp, rng: np.random.Generator) -> None:
    hot = httpx.AsyncClient(transport=httpx.ASGITransport(app=in_process), base_url="http://hot")
    routed = httpx.AsyncClient(transport=httpx.ASGITransport(app=Routed(in_process)), base_url="http://routed")
    x = rng.normal(size=(1, 3, FEATURES)).astype(np.float32)
    async with hot, routed:
        via_hot = await _requests(hot, x, 101)
        via_routing = await _requests(routed, x, 102)
    statuses = [r.status_code for r in via_hot]
    assert statuses[:6] == [200] * 6 and all(s >= 400 for s in statuses[6:]), statuses
    assert {413, 404, 400, 503} <= set(statuses)
    for a, b in zip(via_hot, via_routing, strict=True):
        assert a.status_code == b.status_code, (a.text, b.text)
        assert dict(a.headers) == dict(b.headers)
        if a.status_code == 200 and b"sequence_id" in a.content:
            assert a.content.replace(b"101", b"102") == b.content
        else:
            assert a.content == b.content
    text = (
        await httpx.AsyncClient(transport=httpx.ASGITransport(app=in_process), base_url="http://m").get("/metrics")
    ).text
    for route, status in ((INFER, 200), (INFER, 400), (INFER, 413), (VERSION_INFER, 200), (VERSION_INFER, 404)):
        line = f'rnnserve_requests_total{{method="POST",route="{route}",status="{status}"}}'
        assert line in text, line


def test_other_methods_answer_405_in_the_v2_form(make_server: Callable[..., ServerThread]) -> None:
    server = make_server()
    with httpx.Client(base_url=server.url) as client:
        assert_error(client.get("/v2/models/gru/infer"), 405, contains="GET")
        assert_error(client.put("/v2/models/gru/versions/1/infer"), 405)
        assert_error(client.post("/v2/models/a/b/infer", content=b"{}"), 404, contains="no route")


def test_the_api_key_and_the_body_limit_guard_the_hot_infer_route(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(api_key=KEY, max_body_bytes=2048)
    auth = {"Authorization": f"Bearer {KEY}"}
    body = orjson.dumps({"inputs": [x_tensor(np.zeros((1, 2, FEATURES), np.float32))]})
    with httpx.Client(base_url=server.url) as client:
        refused = client.post("/v2/models/gru/infer", content=body)
        assert_error(refused, 401, contains="Bearer")
        assert refused.headers["www-authenticate"] == "Bearer"
        assert_error(client.post("/v2/models/gru/infer", content=body, headers={"Authorization": "Bearer no"}), 401)
        assert client.post("/v2/models/gru/infer", content=body, headers=auth).status_code == 200
        assert_error(client.post("/v2/models/gru/infer", content=b" " * 3000, headers=auth), 413, contains="2048")
        chunks = iter([b"{" + b" " * 3000])  # chunked, without Content-Length: the limit counts what arrives
        assert_error(client.post("/v2/models/gru/infer", content=chunks, headers=auth), 413, contains="2048")
