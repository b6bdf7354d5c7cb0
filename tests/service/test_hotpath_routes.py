"""The hot path (`EdgeApp`): step, predict and the stream are served before FastAPI's routing, yet behave as
ordinary routes do: the same answers through FastAPI's own routing, 405 and 404 for other methods and paths, the
API key, the body limit, and the request and model-call metrics."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from app_harness import Routed, ServerThread
from app_harness import in_process as app_in_process
from service_client import as_list, assert_problem, open_session
from service_models import FEATURES
from service_server import settings_for
from starlette.types import Receive, Scope, Send

from rnnserve.api.edge import EdgeApp, HotRoute, HotRoutes
from rnnserve.api.routes import HOT_ROUTES
from rnnserve.app import create_app
from rnnserve.settings import Settings

match = HotRoutes(HOT_ROUTES).match
KEY = "hot-key"


@pytest.mark.parametrize(
    ("kind", "method", "path", "hot"),
    [
        ("http", "POST", "/v1/sessions/abc/step", ("/v1/sessions/{session_id}/step", {"session_id": "abc"})),
        ("http", "POST", "/v1/models/gru/predict", ("/v1/models/{model}/predict", {"model": "gru"})),
        ("websocket", "GET", "/v1/sessions/abc/stream", ("/v1/sessions/{session_id}/stream", {"session_id": "abc"})),
        ("http", "GET", "/v1/sessions/abc/step", None),
        ("http", "POST", "/v1/sessions/a/b/step", None),
        ("http", "POST", "/v1/sessions//step", None),
        ("http", "POST", "/v1/sessions/abc/reset", None),
        ("http", "POST", "/v1/models/gru/predict/x", None),
        ("http", "GET", "/v1/sessions/abc/stream", None),
        ("websocket", "GET", "/v1/sessions/abc/step", None),
    ],
)
def test_match_picks_exactly_the_hot_routes(kind: str, method: str, path: str, hot: tuple | None) -> None:
    found = match({"type": kind, "method": method, "path": path})
    assert (found[1:] if found else None) == hot


@pytest.mark.parametrize(
    ("path", "hot"),
    [
        ("/a/x/b", ("/a/{p}/b", {"p": "x"})),
        ("/a/x/b/y", ("/a/{p}/b/{q}", {"p": "x", "q": "y"})),
        ("/a/x/c/y/d", ("/a/{p}/c/{q}/d", {"p": "x", "q": "y"})),
        ("/a/x/c//d", None),
        ("/a/x/e/y/d", None),
        ("/a/x/b/", None),
        ("/plain", ("/plain", {})),
        ("/plain/", None),
        ("/plainer", None),
        ("/", None),
    ],
)
def test_the_table_takes_any_segment_template(path: str, hot: tuple | None) -> None:
    async def endpoint(scope: Scope, receive: Receive, send: Send) -> int:
        return 200

    templates = ("/a/{p}/b", "/a/{p}/b/{q}", "/a/{p}/c/{q}/d", "/plain")
    table = HotRoutes([HotRoute("POST", template, endpoint, "", ()) for template in templates])
    found = table.match({"type": "http", "method": "POST", "path": path})
    assert (found[1:] if found else None) == hot


def test_one_table_gives_the_dispatcher_fastapis_routing_and_the_openapi_schema(client: httpx.Client) -> None:
    app = create_app(Settings(models=Path("unused")))
    routed = {(getattr(r, "path", None), m) for r in app.routes for m in (getattr(r, "methods", None) or {"WS"})}
    schema = client.get("/openapi.json").json()
    for route in HOT_ROUTES:
        concrete = re.sub(r"\{(\w+)\}", r"x\1", route.path)
        kind = "websocket" if route.method == "WS" else "http"
        assert match({"type": kind, "method": "GET" if kind == "websocket" else route.method, "path": concrete}) == (
            route, route.path, {name: f"x{name}" for name in re.findall(r"\{(\w+)\}", route.path)}
        )  # fmt: skip
        assert (route.path, route.method) in routed
        if route.method == "POST":
            operation = schema["paths"][route.path]["post"]
            path_params = [p["name"] for p in operation["parameters"] if p["in"] == "path"]
            assert path_params == re.findall(r"\{(\w+)\}", route.path)
            errors = "application/json" if route.path.startswith("/v2/") else "application/problem+json"
            statuses = [status for status in operation["responses"] if int(status) >= 400]
            assert statuses and all(list(operation["responses"][s]["content"]) == [errors] for s in statuses)
            assert "application/octet-stream" in operation["requestBody"]["content"]
        else:  # a WebSocket: a path item with no operation, described by its x-websocket extension
            assert "x-websocket" in schema["paths"][route.path]
    assert "/v1/sessions" in schema["paths"]  # FastAPI's own routes stay in it


def test_other_methods_and_deeper_paths_are_ordinary_problems(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/sessions/abc/step"), 405, contains="GET")
    assert_problem(client.get("/v1/models/gru/predict"), 405)
    assert_problem(client.post("/v1/sessions/a/b/step", json={}), 404, contains="no route")


def test_hot_requests_are_counted_under_their_route_templates(client: httpx.Client) -> None:
    sid = open_session(client, "gru")["session_id"]
    assert client.post(f"/v1/sessions/{sid}/step", json={"inputs": [[[0.1, 0.2, 0.3]]]}).status_code == 200
    assert client.post("/v1/sessions/missing/step", json={"inputs": [[[0.1, 0.2, 0.3]]]}).status_code == 404
    assert client.post("/v1/models/gru/predict", json={"inputs": [[[0.1, 0.2, 0.3]]]}).status_code == 200
    text = client.get("/metrics").text
    for route, status in (("/v1/sessions/{session_id}/step", 200), ("/v1/sessions/{session_id}/step", 404),
                          ("/v1/models/{model}/predict", 200)):  # fmt: skip
        assert f'rnnserve_requests_total{{method="POST",route="{route}",status="{status}"}}' in text
    assert 'rnnserve_request_seconds_bucket{le="+Inf",method="POST",route="/v1/sessions/{session_id}/step"}' in text
    calls = re.search(r'^rnnserve_model_calls_total\{model="gru"\} (\S+)$', text, re.M)
    assert calls is not None and float(calls.group(1)) >= 2
    assert 'rnnserve_batch_rows_bucket{le="1.0",model="gru"}' in text
    assert re.search(r'^rnnserve_session_steps_total\{model="gru"\} [1-9]', text, re.M)


def test_the_api_key_guards_the_hot_routes(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(api_key=KEY)
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url) as client:
        sid = client.post("/v1/sessions", json={"model": "gru"}, headers=auth).json()["session_id"]
        body = {"inputs": [[[0.1, 0.2, 0.3]]]}
        for path in (f"/v1/sessions/{sid}/step", "/v1/models/gru/predict"):
            refused = client.post(path, json=body)
            assert_problem(refused, 401, contains="Bearer")
            assert refused.headers["www-authenticate"] == "Bearer"
            assert_problem(client.post(path, json=body, headers={"Authorization": "Bearer nope"}), 401)
            assert client.post(path, json=body, headers=auth).status_code == 200
        assert client.get(f"/v1/sessions/{sid}", headers=auth).json()["step"] == 1


def test_the_body_limit_holds_on_the_hot_routes(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(max_body_bytes=2048)
    big = {"inputs": [[[0.25, 0.5, 0.75]] * 200]}
    with httpx.Client(base_url=server.url) as client:
        sid = open_session(client, "gru")["session_id"]
        assert_problem(client.post(f"/v1/sessions/{sid}/step", json=big), 413, contains="2048")
        chunks = iter([b"[" + b"0," * 2000])  # sent chunked, without Content-Length: the limit counts what arrives
        streamed = client.post("/v1/models/gru/predict", content=chunks, headers={"content-type": "application/json"})
        assert_problem(streamed, 413, contains="2048")
        assert client.get(f"/v1/sessions/{sid}").json()["step"] == 0


# ---- the same answers without the hot path ----------------------------------------------------------------------


@pytest.fixture
async def in_process(models_dir: Path, executor: str) -> AsyncIterator[EdgeApp]:
    async with app_in_process(settings_for(models_dir, executor=executor)) as app:
        yield app


async def test_the_hot_path_and_fastapi_routing_answer_alike(in_process: EdgeApp, rng: np.random.Generator) -> None:
    hot = httpx.AsyncClient(transport=httpx.ASGITransport(app=in_process), base_url="http://hot")
    routed = httpx.AsyncClient(transport=httpx.ASGITransport(app=Routed(in_process)), base_url="http://routed")
    x = rng.normal(size=(2, 3, FEATURES)).astype(np.float32)
    async with hot, routed:
        answers = []
        for client in (hot, routed):
            sid = (await client.post("/v1/sessions", json={"model": "lstm", "batch_size": 2})).json()["session_id"]
            json_step = await client.post(f"/v1/sessions/{sid}/step", json={"inputs": as_list(x), "seq": 0})
            binary_step = await client.post(
                f"/v1/sessions/{sid}/step", content=x.tobytes(),
                headers={"content-type": "application/octet-stream", "x-shape": "2,3,3", "x-return-state": "1"},
            )  # fmt: skip
            predict = await client.post("/v1/models/lstm/predict", json={"inputs": as_list(x), "return_state": True})
            bad = await client.post(f"/v1/sessions/{sid}/step", json={"inputs": [[[1.0]]]})
            missing = await client.post("/v1/sessions/nope/step", json={"inputs": as_list(x)})
            answers.append([json_step, binary_step, predict, bad, missing])
    for via_hot, via_routing in zip(*answers, strict=True):
        assert via_hot.status_code == via_routing.status_code
        assert via_hot.headers["content-type"] == via_routing.headers["content-type"]
        assert via_hot.headers.get("x-step") == via_routing.headers.get("x-step")
        assert via_hot.headers.get("x-tensors") == via_routing.headers.get("x-tensors")
        if via_hot.headers["content-type"] == "application/octet-stream":
            assert via_hot.content == via_routing.content
        else:
            hot_body, routed_body = via_hot.json(), via_routing.json()
            if "detail" in hot_body:  # problems name the session, which differs
                assert (hot_body["status"], hot_body["title"]) == (routed_body["status"], routed_body["title"])
            else:
                assert hot_body == routed_body


async def _asgi(app: EdgeApp, scope: dict[str, Any], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What `app` sends for one connection that receives `messages`."""
    incoming, sent = iter(messages), []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_under_a_root_path_fastapi_serves_the_hot_routes_and_they_are_counted(in_process: EdgeApp) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=in_process), base_url="http://hot") as client:
        sid = (await client.post("/v1/sessions", json={"model": "gru"})).json()["session_id"]
    prefix, body = "/behind/a/proxy", b'{"inputs": [[[0.1, 0.2, 0.3]]]}'
    common = {"asgi": {"version": "3.0"}, "root_path": prefix, "query_string": b"", "server": ("hot", 80)}
    path = f"{prefix}/v1/sessions/{sid}/step"
    headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
    http = {**common, "type": "http", "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
            "headers": headers}  # fmt: skip
    sent = await _asgi(in_process, http, [{"type": "http.request", "body": body}])
    assert (sent[0]["status"], orjson.loads(sent[1]["body"])["step"]) == (200, 1)
    ws = {
        **common,
        "type": "websocket",
        "path": f"{prefix}/v1/sessions/{sid}/stream",
        "headers": [],
        "subprotocols": [],
    }
    messages = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": body.decode()}]
    sent = await _asgi(in_process, ws, [*messages, {"type": "websocket.disconnect", "code": 1000}])
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send"]
    assert orjson.loads(sent[1]["text"])["step"] == 2
    text = in_process.serving.metrics.render().decode()
    for method in ("POST", "WS"):
        route = f"/v1/sessions/{{session_id}}/{'step' if method == 'POST' else 'stream'}"
        assert f'rnnserve_requests_total{{method="{method}",route="{route}",status="200"}} 1.0' in text
