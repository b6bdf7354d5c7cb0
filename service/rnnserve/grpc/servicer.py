"""`GRPCInferenceService`: the Open Inference Protocol's gRPC methods over the data plane (`InferenceService`),
answering what the /v2 HTTP routes answer.

* `ServerLive` and `ServerReady` need no API key, as /v2/health does not; every other method needs it when the
  server has one (`rnnserve.grpc.auth`).
* `ModelReady` is false for a model (or version) that is not served: a bool answers the question, where HTTP
  answers 404.
* `ModelMetadata` lists the protocol's fields: the optional `mask` input and the state outputs (`optional_inputs`
  and `optional_outputs` of the HTTP metadata) have no field in the message, and are requested by name as there.
* Errors end the call with the status `rnnserve.grpc.status` maps the problem to; on `ModelStreamInfer` a failed
  request gets an error response and the stream goes on (`rnnserve.grpc.stream`).
* Inference is counted with the HTTP requests (`rnnserve_requests`, `rnnserve_request_seconds`): route the
  method's path, method `GRPC`, status the HTTP status of the outcome (200, or the problem's); each request on a
  stream counts once, as each WebSocket message does. On a server with keys, each is also counted under its
  tenant (`rnnserve_tenant_requests`, by status class), as HTTP requests are.
* `ModelStreamInfer` runs its plain sequence steps in batches (`rnnserve.grpc.steps`), the rest one by one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import grpc

from rnnserve import __version__
from rnnserve.api.edge import CLIENT_GONE
from rnnserve.api.v2.binding import check_version, model_metadata, ready_model
from rnnserve.api.v2.routes import EXTENSIONS, SERVER_NAME
from rnnserve.errors import RnnServeError
from rnnserve.grpc import status
from rnnserve.grpc.auth import check_key
from rnnserve.grpc.infer import infer
from rnnserve.grpc.protos import grpc_service_pb2 as pb
from rnnserve.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from rnnserve.grpc.steps import StreamSteps
from rnnserve.grpc.stream import serve_stream
from rnnserve.inference import InferenceService
from rnnserve.settings import Settings
from rnnserve.tenants import current_tenant, tag

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

SERVICE = "inference.GRPCInferenceService"
METRICS_METHOD = "GRPC"


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, service: InferenceService, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.metrics = service.metrics
        self.stream_in_flight = settings.max_batch_size
        """Requests one stream may have read and not answered yet: enough to fill one merged model call."""
        self.by_tenant = settings.auth_required
        self._counters = {method: self._counter(method) for method in ("ModelInfer", "ModelStreamInfer")}
        self.stream_steps = StreamSteps(service, self._counters["ModelStreamInfer"])

    async def _authorize(self, context: Context, method: str) -> None:
        try:
            check_key(self.settings, context.invocation_metadata())
        except RnnServeError as exc:
            count = self._counters.get(method)
            if count is not None:  # a refused inference call is counted (tenant '-'), as HTTP counts its 401s
                count(int(exc.status), 0.0)
            await status.abort(context, exc, f"{SERVICE}/{method}")

    def _counter(self, method: str) -> Callable[[int, float], None] | None:
        """What counts one request of `method` in the request metrics (its outcome's HTTP status, its seconds)."""
        metrics = self.metrics
        if metrics is None:
            return None
        route = f"/{SERVICE}/{method}"
        if not self.by_tenant:
            return lambda status, seconds: metrics.observe(route, METRICS_METHOD, status, seconds)

        def count(status: int, seconds: float) -> None:
            metrics.observe(route, METRICS_METHOD, status, seconds)
            metrics.tenant_request(tag(current_tenant()), route, METRICS_METHOD, status)

        return count

    async def _infer(self, request: pb.ModelInferRequest, method: str) -> pb.ModelInferResponse:
        """One request through the data plane, counted in the request metrics."""
        started = time.perf_counter()
        outcome = 500
        try:
            response = await infer(self.service, request)
            outcome = 200
            return response
        except RnnServeError as exc:
            outcome = int(exc.status)
            raise
        except asyncio.CancelledError:
            outcome = CLIENT_GONE  # the call was cancelled (client gone, deadline, stream ended early)
            raise
        finally:
            count = self._counters.get(method)
            if count is not None:
                count(outcome, time.perf_counter() - started)

    # ---- health -----------------------------------------------------------------------------------------------

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        """True once every model has loaded (or failed) and the session store answers, as /readyz."""
        return pb.ServerReadyResponse(ready=self.service.models_ready and await self.service.store_ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        await self._authorize(context, "ModelReady")
        try:
            loaded = self.service.model(request.name)
            check_version(loaded, request.version or None)
        except RnnServeError:  # not found (or the repository is still being read): not ready
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=loaded.status == "ready")

    # ---- metadata ---------------------------------------------------------------------------------------------

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:
        await self._authorize(context, "ServerMetadata")
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=list(EXTENSIONS))

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:
        await self._authorize(context, "ModelMetadata")
        try:
            signature = ready_model(self.service, request.name, request.version or None).signature
            assert signature is not None
            metadata = model_metadata(signature)
        except Exception as exc:
            await status.abort(context, exc, f"{SERVICE}/ModelMetadata {request.name!r}")
        response = pb.ModelMetadataResponse(
            name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"]
        )
        for field in ("inputs", "outputs"):
            for tensor in metadata[field]:
                getattr(response, field).add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
        return response

    # ---- inference --------------------------------------------------------------------------------------------

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        await self._authorize(context, "ModelInfer")
        try:
            return await self._infer(request, "ModelInfer")
        except Exception as exc:
            await status.abort(context, exc, f"{SERVICE}/ModelInfer {request.model_name!r}")

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        await self._authorize(context, "ModelStreamInfer")

        async def handle(request: pb.ModelInferRequest) -> pb.ModelInferResponse:
            return await self._infer(request, "ModelStreamInfer")

        def describe(exc: BaseException) -> str:
            code, details = status.status_of(exc, f"{SERVICE}/ModelStreamInfer")
            return f"{code.name}: {details}"

        async for response in serve_stream(
            request_iterator, handle, describe, self.stream_in_flight, self.stream_steps
        ):
            yield response
