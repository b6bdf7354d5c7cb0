"""What routes receive by type: the data plane, the settings, a size-limited body, and the API-key check.

The app-wide objects live in one `Serving` on the app (`app.serving`), read with plain attribute lookups: the
plain ASGI endpoints read it on every request, where a lookup on Starlette's `app.state` (a failed normal lookup,
then `State.__getattr__`) costs ~0.9 us each. The dependencies are `async def` although most never await: FastAPI
runs plain `def` dependencies in a worker thread, which costs more than the rest of a step.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection, Request

from service.errors import PayloadTooLarge, Unauthorized
from service.inference import InferenceService
from service.metrics import Metrics
from service.settings import Settings


@dataclass(slots=True)
class Serving:
    """The app's settings and metrics, and the data plane once the lifespan has opened its resources."""

    settings: Settings
    metrics: Metrics
    service: InferenceService = None  # type: ignore[assignment]  # set by the lifespan before any request


def serving(conn: HTTPConnection) -> Serving:
    return conn.app.serving  # type: ignore[no-any-return]


def check_api_key(conn: HTTPConnection) -> None:
    """`Unauthorized` unless the connection carries `Authorization: Bearer <api_key>` (when a key is set)."""
    key = serving(conn).settings.api_key
    if key is None:
        return
    scheme, _, token = conn.headers.get("authorization", "").partition(" ")
    valid = secrets.compare_digest(token.strip().encode(), key.get_secret_value().encode())
    if scheme.lower() != "bearer" or not valid:
        raise Unauthorized("this server needs an API key: send 'Authorization: Bearer <key>'")


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
    limit = serving(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body has {int(declared)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


ServiceDep = Annotated[InferenceService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
BodyDep = Annotated[bytes, Depends(read_body)]
AuthDep = Depends(require_api_key)
"""Add to a router's `dependencies=[...]` to protect it with the API key."""
