"""The /v1 API (see the HTTP contract; JSON and binary tensors): models, predict, sessions and the WebSocket stream.

Each router carries its full path prefix, so a route's template (the metrics label) is its public path. Step,
predict and the stream are plain ASGI endpoints (`handlers`, `stream`), hot routes of `rnnserve.api.routes`.
"""

from __future__ import annotations

from fastapi import APIRouter

from rnnserve.api.v1 import models, sessions

routers: tuple[APIRouter, ...] = (models.router, sessions.router)
