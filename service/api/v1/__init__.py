"""The /v1 API (see the HTTP contract; JSON and binary tensors): models, predict, sessions and the WebSocket stream.

Each router carries its full path prefix, so a route's template (the metrics label) is its public path.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.api.v1 import models, sessions
from service.api.v1.hotpath import HotPathApp

routers: tuple[APIRouter, ...] = (models.router, sessions.router)

__all__ = ["HotPathApp", "routers"]
