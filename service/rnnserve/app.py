"""`create_app(settings)`: the application (`EdgeApp`: FastAPI behind the edge, with the hot routes' table). Its
lifespan owns every resource (model repository, session store, executor) and hands them to one
`InferenceService` on `app.serving`, which the gRPC server (`rnnserve.grpc`, when `grpc_port` is set) serves too;
nothing is created at import time."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from rnnserve import __version__
from rnnserve.api.docs import mount_docs
from rnnserve.api.edge import EdgeApp, Serving
from rnnserve.api.playground import mount_playground
from rnnserve.api.routes import HOT_ROUTES, ROUTERS
from rnnserve.batching.base import open_executor
from rnnserve.errors import RnnServeError
from rnnserve.inference import InferenceService
from rnnserve.metrics import Metrics
from rnnserve.runtime.ort_model import RuntimeOptions
from rnnserve.runtime.repository import ModelRepository
from rnnserve.sessions.factory import open_store
from rnnserve.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()
    metrics = Metrics()
    serving = Serving(settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        repository = ModelRepository(
            settings.models,
            runtime_options(settings),
            on_loaded=metrics.model_loaded,
            follow_links_out=settings.follow_model_links_out,
        )
        store = open_store(settings, events=metrics)
        executor = open_executor(settings, observer=metrics.model_call)
        serving.service = InferenceService(repository, store, executor, settings, metrics)
        loading = asyncio.create_task(_load_models(repository), name="rnnserve-load-models")
        grpc_server = None
        try:
            if settings.grpc_port is not None:  # grpcio is imported only when gRPC is on
                from rnnserve.grpc.server import grpc_server as make_grpc_server

                grpc_server = make_grpc_server(settings, serving.service)
                app.state.grpc_port = await grpc_server.start()
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop()
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await serving.service.aclose()
            await executor.aclose()
            await store.aclose()
            metrics.close()

    # the schema and its viewers are served offline by `mount_docs`, not by FastAPI's (CDN) pages
    app = EdgeApp(
        HOT_ROUTES,
        title="rnnserve",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.serving = serving
    for router in ROUTERS:
        app.include_router(router)
    mount_docs(app)
    mount_playground(app)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: `Settings()` from RNNSERVE_* variables."""
    from rnnserve.cli import configure_logging, tune_gc

    settings = Settings()
    configure_logging(settings)
    tune_gc()  # a worker process of its own: tune its collector as `run_server` does for a single process
    app = create_app(settings)
    from rnnserve.logging_setup import start_access_summary

    start_access_summary(app.serving.metrics.registry, settings)  # type: ignore[attr-defined]
    return app


def runtime_options(settings: Settings) -> RuntimeOptions:
    return RuntimeOptions(
        provider=settings.provider,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
    )


async def _load_models(repository: ModelRepository) -> None:
    """Load in the background, so that /healthz answers (and /readyz says 503) while models load."""
    try:
        await repository.load_all()
    except RnnServeError as exc:
        log.error("cannot load the model repository %s: %s", repository.root, exc.detail)
        return
    for model in repository.list():
        if model.status == "failed":
            log.error("model %r is not served: %s", model.name, model.error)
    ready = [m.name for m in repository.list() if m.status == "ready"]
    log.info("serving %d model(s) from %s: %s", len(ready), repository.root, ", ".join(ready) or "none")
    # What startup made (modules, graphs, weights) lives as long as the process: keep it out of the cyclic
    # collector's reach, so that its collections stay short while requests run.
    gc.collect()
    gc.freeze()
