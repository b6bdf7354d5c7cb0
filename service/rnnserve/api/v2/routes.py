"""/v2: the Open Inference Protocol (KServe v2, as Triton serves it over HTTP) with the sequence extension.

Health answers the protocol's JSON bodies (`{"live": true}`, `{"ready": true}`; model readiness `{"name",
"ready"}`), with 200 for true and 400 for false as Triton does, and is never behind the API key, like /healthz.
`.../config` gives the parts of a Triton model configuration that apply. Every model path also answers under
`/versions/1/`. Errors are `{"error": "..."}` (rendered by the edge, `rnnserve.api.edge`, for every path under /v2).
Infer is a plain ASGI endpoint (`endpoint`), a hot route of `rnnserve.api.routes`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from rnnserve import __version__
from rnnserve.api.deps import AuthDep, ServiceDep, SettingsDep
from rnnserve.api.edge import dumps
from rnnserve.api.v2.binding import check_version, model_config, model_metadata, ready_model
from rnnserve.inference import InferenceService
from rnnserve.settings import Settings
from rnnserve.signature import ModelSignature

SERVER_NAME = "rnnserve"
EXTENSIONS = ("binary_tensor_data", "sequence")
JSON = "application/json"

health_router = APIRouter(prefix="/v2/health", tags=["v2"])
router = APIRouter(prefix="/v2", tags=["v2"], dependencies=[AuthDep])


def _json(body: Any) -> Response:
    return Response(dumps(body), media_type=JSON)


def _truth(key: str, value: bool, **extra: str) -> Response:
    return Response(dumps({**extra, key: value}), status_code=200 if value else 400, media_type=JSON)


# ---- health -------------------------------------------------------------------------------------------------------


@health_router.get("/live")
async def live() -> Response:
    return _truth("live", True)


@health_router.get("/ready")
async def ready(service: ServiceDep) -> Response:
    """True once every model has loaded (or failed) and the session store answers, as /readyz."""
    return _truth("ready", service.models_ready and await service.store_ready())


# ---- metadata -----------------------------------------------------------------------------------------------------


@router.get("")
async def server_metadata() -> Response:
    return _json({"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)})


@router.get("/models/{model}")
async def get_model(model: str, service: ServiceDep) -> Response:
    return _json(model_metadata(_signature(service, model, None)))


@router.get("/models/{model}/versions/{version}")
async def get_model_version(model: str, version: str, service: ServiceDep) -> Response:
    return _json(model_metadata(_signature(service, model, version)))


@router.get("/models/{model}/config")
async def get_model_config(model: str, service: ServiceDep, settings: SettingsDep) -> Response:
    return _config(service, settings, model, None)


@router.get("/models/{model}/versions/{version}/config")
async def get_model_version_config(model: str, version: str, service: ServiceDep, settings: SettingsDep) -> Response:
    return _config(service, settings, model, version)


@router.get("/models/{model}/ready")
async def model_ready(model: str, service: ServiceDep) -> Response:
    return _model_ready(service, model, None)


@router.get("/models/{model}/versions/{version}/ready")
async def model_version_ready(model: str, version: str, service: ServiceDep) -> Response:
    return _model_ready(service, model, version)


def _signature(service: InferenceService, model: str, version: str | None) -> ModelSignature:
    signature = ready_model(service, model, version).signature
    assert signature is not None
    return signature


def _config(service: InferenceService, settings: Settings, model: str, version: str | None) -> Response:
    """Triton's model configuration, the parts that apply (`binding.model_config`)."""
    signature = _signature(service, model, version)
    return _json(model_config(signature, max_batch=settings.max_request_batch, idle_s=settings.default_ttl_s))


def _model_ready(service: InferenceService, model: str, version: str | None) -> Response:
    """200 when the model serves, 400 while it loads or after it failed; unknown models and versions are 404."""
    loaded = service.model(model)
    check_version(loaded, version)
    return _truth("ready", loaded.status == "ready", name=loaded.name)
