"""The /v1 JSON API (see the HTTP contract): models, predict, sessions and the WebSocket stream.

Each router carries its full path prefix, so a route's template (the metrics label) is its public path.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.api.v1 import models, sessions, stream

routers: tuple[APIRouter, ...] = (models.router, sessions.router, stream.router)
