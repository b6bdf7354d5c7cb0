"""`HotPathApp`: the FastAPI application, with the hottest routes dispatched before its routing.

POST /v1/sessions/{id}/step, POST /v1/models/{model}/predict, WS /v1/sessions/{id}/stream and the /v2 infer
routes (POST /v2/models/{model}[/versions/{version}]/infer) are matched by string tests and handed straight to
their plain ASGI endpoints (`handlers`, `stream`, `service.api.v2.endpoint`), skipping FastAPI's
middleware stack, router and dependency injection, which cost more per request than a whole batched step. The
endpoints do what those layers would: API key, body limit, the error form of their API, and the request metrics (counted
here under the same route templates as `MetricsMiddleware` counts other routes). Everything else goes to FastAPI.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from service.api.deps import Serving
from service.api.v1.handlers import PredictEndpoint, StepEndpoint
from service.api.v1.stream import StreamEndpoint
from service.api.v2.endpoint import InferEndpoint, infer_endpoint

Endpoint = Callable[[Scope, Receive, Send], Awaitable[int]]

SESSIONS = "/v1/sessions/"
MODELS = "/v1/models/"
V2_MODELS = "/v2/models/"

step_endpoint = StepEndpoint()
predict_endpoint = PredictEndpoint()
stream_endpoint = StreamEndpoint()


def match(scope: Scope) -> tuple[Endpoint, str, dict[str, str]] | None:
    """(endpoint, route template, path parameters) of a hot request, else None."""
    path: str = scope["path"]
    kind = scope["type"]
    if kind == "http":
        if scope["method"] != "POST":
            return None
        if path.startswith(SESSIONS) and path.endswith("/step"):
            session_id = path[len(SESSIONS) : -len("/step")]
            if session_id and "/" not in session_id:
                return step_endpoint, StepEndpoint.route, {"session_id": session_id}
        elif path.startswith(MODELS) and path.endswith("/predict"):
            model = path[len(MODELS) : -len("/predict")]
            if model and "/" not in model:
                return predict_endpoint, PredictEndpoint.route, {"model": model}
        elif path.startswith(V2_MODELS) and path.endswith("/infer"):
            parts = path[len(V2_MODELS) : -len("/infer")].split("/")
            if len(parts) == 1 and parts[0]:
                return infer_endpoint, InferEndpoint.route, {"model": parts[0]}
            if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
                return infer_endpoint, InferEndpoint.version_route, {"model": parts[0], "version": parts[2]}
    elif kind == "websocket" and path.startswith(SESSIONS) and path.endswith("/stream"):
        session_id = path[len(SESSIONS) : -len("/stream")]
        if session_id and "/" not in session_id:
            return stream_endpoint, StreamEndpoint.route, {"session_id": session_id}
    return None


class HotPathApp(FastAPI):
    """A FastAPI app whose hot routes bypass the framework (same behaviour, a fraction of the cost)."""

    serving: Serving  # set by `create_app`

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = match(scope) if scope["type"] != "lifespan" and not self.root_path else None
        if hot is None:
            await super().__call__(scope, receive, send)
            return
        endpoint, route, params = hot
        scope["app"] = self
        scope["path_params"] = params
        if scope["type"] == "websocket":
            await endpoint(scope, receive, send)  # the stream counts its messages itself
            return
        started = time.perf_counter()
        status = await endpoint(scope, receive, send)
        self.serving.metrics.observe(route, "POST", status, time.perf_counter() - started)
