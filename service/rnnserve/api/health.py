"""Liveness, readiness and the Prometheus exposition (never behind the API key)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from rnnserve.api.deps import MetricsDep, ServiceDep, SettingsDep
from rnnserve.api.edge import dumps
from rnnserve.errors import Unauthorized
from rnnserve.metrics import CONTENT_TYPE
from rnnserve.settings import Settings
from rnnserve.tenants import tenants_for

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/readyz")
async def readyz(request: Request, service: ServiceDep, settings: SettingsDep) -> Response:
    """200 once every model has loaded and the session store answers; else 503 (also while a model failed,
    unless `serve_partial`). Why a model failed (its error, which may name files) is shown only to a request with a
    valid API key, on a server with keys; the log has it always."""
    models = {m.name: m.status for m in service.models()}
    store_ok = await service.store_ready()
    failed = {m.name: m.error for m in service.models() if m.status == "failed"}
    ready = service.models_ready and store_ok and (not failed or settings.serve_partial)
    body: dict[str, object] = {
        "status": "ready" if ready else "not ready",
        "models": models,
        "store": "ok" if store_ok else "down",
    }
    if failed and _has_key(settings, request.headers.get("authorization")):
        body["failed"] = failed
    headers = None if ready else {"Retry-After": "1"}
    return Response(dumps(body), status_code=200 if ready else 503, media_type="application/json", headers=headers)


def _has_key(settings: Settings, authorization: str | None) -> bool:
    """Whether a request carries a valid API key (never, on a server without keys)."""
    tenants = tenants_for(settings)
    if tenants is None:
        return False
    try:
        tenants.tenant_of(authorization)
    except Unauthorized:
        return False
    return True


@router.get("/metrics")
async def metrics(service: ServiceDep, metrics: MetricsDep) -> Response:
    try:
        metrics.sessions_active.set(await service.session_count())
    except Exception as exc:  # a store outage must not hide the other metrics
        log.warning("cannot count sessions for /metrics: %s", exc)
    return Response(metrics.render(), media_type=CONTENT_TYPE)
