"""Liveness, readiness and the Prometheus exposition (never behind the API key)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from starlette.responses import Response

from service.api.deps import MetricsDep, ServiceDep
from service.api.edge import dumps
from service.metrics import CONTENT_TYPE

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/readyz")
async def readyz(service: ServiceDep) -> Response:
    """200 once every model has loaded (or failed, reported here) and the session store answers; else 503."""
    models = {m.name: m.status for m in service.models()}
    store_ok = await service.store_ready()
    ready = service.models_ready and store_ok
    body: dict[str, object] = {
        "status": "ready" if ready else "not ready",
        "models": models,
        "store": "ok" if store_ok else "down",
    }
    failed = {m.name: m.error for m in service.models() if m.status == "failed"}
    if failed:
        body["failed"] = failed
    return Response(dumps(body), status_code=200 if ready else 503, media_type="application/json")


@router.get("/metrics")
async def metrics(service: ServiceDep, metrics: MetricsDep) -> Response:
    try:
        metrics.sessions_active.set(await service.session_count())
    except Exception as exc:  # a store outage must not hide the other metrics
        log.warning("cannot count sessions for /metrics: %s", exc)
    return Response(metrics.render(), media_type=CONTENT_TYPE)
