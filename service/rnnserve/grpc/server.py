"""The gRPC server, in the process and event loop of the HTTP server and on its data plane, started and stopped by
the app's lifespan (`rnnserve.app`) when `grpc_port` is set. `grpc_server` says which serves it:

* `h2` (the default): `H2GrpcServer`, HTTP/2 on the event loop's own socket (`rnnserve.grpc.h2server`);
* `grpcio`: `GrpcServer`, grpcio's asyncio server (`grpc.aio`), whose C core hands each message over from its own
  thread: about three times the CPU per stream message (bench/README.md, "gRPC").

Both serve `InferenceServicer`, so every method answers the same. Each binds `host:grpc_port` (0 picks a free
port) and reads messages up to `max_body_bytes` (a larger one is refused with RESOURCE_EXHAUSTED). With several
worker processes (`workers`), each binds the port with SO_REUSEPORT and the kernel spreads the connections over
them, as it does for uvicorn's HTTP socket; with one, the port is bound exclusively, so that a port already in use
is an error at startup.
"""

from __future__ import annotations

import logging
from typing import Protocol

import grpc

from rnnserve.grpc import h2server
from rnnserve.grpc.protos import grpc_service_pb2 as pb
from rnnserve.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from rnnserve.grpc.servicer import InferenceServicer
from rnnserve.inference import InferenceService
from rnnserve.settings import Settings

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0
"""On shutdown, how long calls in progress may run on before they are cancelled."""


class Server(Protocol):
    """`start()` binds and serves (returns the port); `stop()` ends the calls in progress (after `STOP_GRACE_S`)
    and unbinds."""

    async def start(self) -> int: ...

    async def stop(self) -> None: ...


def grpc_server(settings: Settings, service: InferenceService) -> Server:
    """The server `settings.grpc_server` names."""
    return (H2GrpcServer if settings.grpc_server == "h2" else GrpcServer)(settings, service)


class H2GrpcServer:
    """The service on `rnnserve.grpc.h2server`."""

    def __init__(self, settings: Settings, service: InferenceService) -> None:
        if settings.grpc_port is None:
            raise ValueError("the gRPC server needs settings.grpc_port")
        self.settings = settings
        servicer = InferenceServicer(service, settings)
        self.methods = h2server.methods_of(pb.DESCRIPTOR.services_by_name["GRPCInferenceService"], servicer)
        self.port: int | None = None
        self._listening: h2server.Listening | None = None

    async def start(self) -> int:
        settings = self.settings
        assert settings.grpc_port is not None
        try:
            self._listening = await h2server.serve(
                settings.host,
                settings.grpc_port,
                self.methods,
                settings.max_body_bytes,
                reuse_port=settings.workers > 1,
                first_bytes_s=settings.request_timeout_s,  # a silent connection is cut off, as on HTTP
            )
        except OSError as exc:
            raise OSError(f"cannot serve gRPC on {_host(settings.host)}:{settings.grpc_port}: {exc}") from None
        self.port = self._listening.port
        log.info("serving gRPC (Open Inference Protocol, h2) on %s:%d", _host(settings.host), self.port)
        return self.port

    async def stop(self) -> None:
        if self._listening is not None:
            await self._listening.shutdown(STOP_GRACE_S)


class GrpcServer:
    """The service on grpcio's asyncio server."""

    def __init__(self, settings: Settings, service: InferenceService) -> None:
        if settings.grpc_port is None:
            raise ValueError("the gRPC server needs settings.grpc_port")
        self.address = f"{_host(settings.host)}:{settings.grpc_port}"
        self.port: int | None = None
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
            ]
        )
        # generated code, untyped
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            InferenceServicer(service, settings), self._server
        )

    async def start(self) -> int:
        """Bind and serve; returns the port (the one picked when `grpc_port` is 0)."""
        try:
            port: int = self._server.add_insecure_port(self.address)
        except RuntimeError as exc:  # grpcio: "Failed to bind to address ..."
            raise OSError(f"cannot serve gRPC on {self.address}: {exc}") from None
        await self._server.start()
        self.port = port
        log.info("serving gRPC (Open Inference Protocol, grpcio) on %s", self.address.rsplit(":", 1)[0] + f":{port}")
        return port

    async def stop(self) -> None:
        await self._server.stop(STOP_GRACE_S)


def _host(host: str) -> str:
    """An IPv6 address in brackets, as gRPC's target syntax wants it."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
