"""Every route of the app: the hot routes, declared once here, and FastAPI's routers.

`HOT_ROUTES` is the one table of the routes served by plain ASGI endpoints before FastAPI's routing
(`rnnserve.api.edge.EdgeApp`): the dispatcher matches it, FastAPI's routing registers it (so that other methods
answer 405 and the app serves the same without the dispatcher), and the OpenAPI schema describes it. The routers
carry the other routes, each with its full path prefix, so a route's template (the metrics label) is its public
path.
"""

from __future__ import annotations

from fastapi import APIRouter

from rnnserve.api import health, v1, v2
from rnnserve.api.edge import V2, HotRoute
from rnnserve.api.v1.handlers import predict_endpoint, step_endpoint
from rnnserve.api.v1.stream import stream_endpoint
from rnnserve.api.v1.streams import streams_endpoint
from rnnserve.api.v2.endpoint import infer_endpoint

_JSON = "application/json"
_BINARY = (_JSON, "application/octet-stream")

HOT_ROUTES: tuple[HotRoute, ...] = (
    HotRoute(
        "POST",
        "/v1/sessions/{session_id}/step",
        step_endpoint,
        "Step a session: the next timesteps, JSON or raw tensor bytes",
        ("sessions",),
        accepts=_BINARY,
        answers=_BINARY,
    ),
    HotRoute(
        "POST",
        "/v1/models/{model}/predict",
        predict_endpoint,
        "Predict whole sequences, JSON or raw tensor bytes",
        ("models",),
        accepts=_BINARY,
        answers=_BINARY,
    ),
    HotRoute("WS", "/v1/sessions/{session_id}/stream", stream_endpoint, "Stream a session's steps", ("sessions",)),
    HotRoute("WS", "/v1/streams", streams_endpoint, "Many sessions' steps on one stream, batched", ("sessions",)),
    HotRoute(
        "POST",
        "/v2/models/{model}/infer",
        infer_endpoint,
        "Infer (Open Inference Protocol), with binary tensor data and sequences",
        ("v2",),
        errors=V2,
        accepts=_BINARY,
        answers=_BINARY,
    ),
    HotRoute(
        "POST",
        "/v2/models/{model}/versions/{version}/infer",
        infer_endpoint,
        "Infer with one version of a model (Open Inference Protocol)",
        ("v2",),
        errors=V2,
        accepts=_BINARY,
        answers=_BINARY,
    ),
)

ROUTERS: tuple[APIRouter, ...] = (health.router, *v1.routers, *v2.routers)
