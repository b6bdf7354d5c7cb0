"""/v1/models: discovery and stateless predict (a plain ASGI endpoint, `handlers.PredictEndpoint`, normally
reached through `hotpath.HotPathApp` before routing and registered here so that routing knows its path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from fastapi import APIRouter
from starlette.responses import Response

from service.api.deps import AuthDep, ServiceDep
from service.api.v1 import codec
from service.api.v1.hotpath import predict_endpoint
from service.runtime.repository import LoadedModel

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[AuthDep])


def model_json(model: LoadedModel) -> dict[str, Any]:
    """MODEL: name, status, inputs/outputs/states ({name, shape, dtype}; null = free dimension), stateful, ..."""
    sig = model.signature
    body: dict[str, Any] = {
        "name": model.name,
        "status": model.status,
        "inputs": [t.to_dict() for t in sig.inputs] if sig else [],
        "outputs": [t.to_dict() for t in sig.outputs] if sig else [],
        "states": [t.to_dict() for t in sig.states] if sig else [],
        "stateful": sig.stateful if sig else False,
        "batch_size": sig.batch_size if sig else None,
        "time_major": sig.time_major if sig else False,
        "bidirectional": sig.bidirectional if sig else False,
        "sessions": sig.stream_capable if sig else False,
        "source": Path(model.source).name,
        "provider": model.provider,
        "load_seconds": model.load_seconds,
    }
    if model.error is not None:
        body["error"] = model.error
    return body


@router.get("")
async def list_models(service: ServiceDep) -> Response:
    return Response(codec.dumps({"models": [model_json(m) for m in service.models()]}), media_type="application/json")


@router.get("/{model}")
async def get_model(model: str, service: ServiceDep) -> Response:
    return Response(codec.dumps(model_json(service.model(model))), media_type="application/json")


# FastAPI types this as a request handler; Starlette (which does the routing) also takes a plain ASGI app.
router.add_route(f"{router.prefix}/{{model}}/predict", cast(Any, predict_endpoint), ["POST"], include_in_schema=False)
