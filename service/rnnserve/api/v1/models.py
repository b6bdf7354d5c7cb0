"""/v1/models: discovery. Stateless predict is a plain ASGI endpoint (`handlers.PredictEndpoint`), a hot route
of `rnnserve.api.routes`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from rnnserve.api.deps import AuthDep, ServiceDep
from rnnserve.api.v1 import codec
from rnnserve.inference import weight_report
from rnnserve.runtime.repository import LoadedModel

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[AuthDep])


def model_json(model: LoadedModel) -> dict[str, Any]:
    """MODEL: name, status, inputs/outputs/states ({name, shape, dtype}; null = free dimension), stateful, ...;
    once ready, the weight penalties and constraints (`rnnserve.penalties`)."""
    sig = model.signature
    body: dict[str, Any] = {
        "name": model.name,
        "status": model.status,
        "inputs": [t.to_dict() for t in sig.inputs] if sig else [],
        "outputs": [t.to_dict() for t in sig.outputs] if sig else [],
        "states": [t.to_dict() for t in sig.states] if sig else [],
        # Keras Inputs that feed initial_state: sent as the request's initial_state, or as inputs by these names
        "state_inputs": [t.to_dict() for t in sig.state_inputs] if sig else [],
        "stateful": sig.stateful if sig else False,
        "batch_size": sig.batch_size if sig else None,
        "time_major": sig.time_major if sig else False,
        "bidirectional": sig.bidirectional if sig else False,
        "sessions": sig.stream_capable if sig else False,
        "source": Path(model.source).name,
        "provider": model.provider,
        "load_seconds": model.load_seconds,
    }
    report = weight_report(model) if model.status == "ready" else None
    if report is not None:
        body["penalties"] = report["penalties"]
        body["constraints"] = report["constraints"]
    if model.error is not None:
        body["error"] = model.error
    return body


@router.get("")
async def list_models(service: ServiceDep) -> Response:
    return Response(codec.dumps({"models": [model_json(m) for m in service.models()]}), media_type="application/json")


@router.get("/{model}")
async def get_model(model: str, service: ServiceDep) -> Response:
    return Response(codec.dumps(model_json(service.model(model))), media_type="application/json")
