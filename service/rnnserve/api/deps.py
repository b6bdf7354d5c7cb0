"""What FastAPI's routes receive by type: the data plane, the settings, the metrics, a size-limited body, and the
API-key check, each done by the edge (`rnnserve.api.edge`) as it does them for the hot routes.

The dependencies are `async def` although most never await: FastAPI runs plain `def` dependencies in a worker
thread, which costs more than the rest of a step.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection, Request

from rnnserve.api.edge import Head, Serving, authorize, serving
from rnnserve.api.edge import read_body as read_limited
from rnnserve.inference import InferenceService
from rnnserve.metrics import Metrics
from rnnserve.settings import Settings

__all__ = ["AuthDep", "BodyDep", "MetricsDep", "ServiceDep", "Serving", "SettingsDep", "check_api_key", "serving"]


def check_api_key(conn: HTTPConnection) -> None:
    """`Unauthorized` unless the connection carries `Authorization: Bearer <api_key>` (when a key is set)."""
    authorize(serving(conn).settings, conn.headers.get("authorization"))


async def get_service(conn: HTTPConnection) -> InferenceService:
    return serving(conn).service


async def get_settings(conn: HTTPConnection) -> Settings:
    return serving(conn).settings


async def get_metrics(conn: HTTPConnection) -> Metrics:
    return serving(conn).metrics


async def require_api_key(conn: HTTPConnection) -> None:
    check_api_key(conn)


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `max_body_bytes` (declared or actual size)."""
    # the router's `AuthDep` has checked the key
    return await read_limited(request.receive, Head(request.scope), serving(request).settings, authorized=True)


ServiceDep = Annotated[InferenceService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
BodyDep = Annotated[bytes, Depends(read_body)]
AuthDep = Depends(require_api_key)
"""Add to a router's `dependencies=[...]` to protect it with the API key."""
