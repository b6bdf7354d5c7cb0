"""Every Prometheus collector of the service, on a registry of its own (one per app: no global state).

`Metrics` is also the `SessionEvents` observer the session store reports expirations and evictions to, and
`MetricsMiddleware` (pure ASGI) counts requests by route template, method and status with their latency.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from service.runtime.repository import LoadedModel

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "rnnserve_requests", "HTTP requests and WebSocket messages", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "rnnserve_request_seconds", "Request latency", ["route", "method"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.sessions_active = Gauge("rnnserve_sessions_active", "Live sessions in the store", registry=r)
        self.sessions_created = Counter("rnnserve_sessions_created", "Sessions opened", registry=r)
        self.sessions_deleted = Counter("rnnserve_sessions_deleted", "Sessions deleted by clients", registry=r)
        self.steps = Counter("rnnserve_session_steps", "Session steps applied", ["model"], registry=r)
        self.timesteps = Counter("rnnserve_session_timesteps", "Timesteps consumed by sessions", ["model"], registry=r)
        self.replays = Counter("rnnserve_session_replays", "Retried steps answered from the cache", registry=r)
        self.expirations = Counter("rnnserve_session_expirations", "Sessions expired after their TTL", registry=r)
        self.evictions = Counter("rnnserve_session_evictions", "Sessions dropped by the store early", registry=r)
        self.predictions = Counter("rnnserve_predictions", "Stateless predict calls", ["model"], registry=r)
        self.model_load_seconds = Gauge("rnnserve_model_load_seconds", "Time to load each model", ["model"], registry=r)
        self.model_ready = Gauge(
            "rnnserve_model_ready", "1 when the model serves, 0 while loading or after a failure", ["model"], registry=r
        )

    # ---- SessionEvents -------------------------------------------------------------------------------------------

    def expired(self, n: int = 1) -> None:
        self.expirations.inc(n)

    def evicted(self, n: int = 1) -> None:
        self.evictions.inc(n)

    # ---- repository hook -----------------------------------------------------------------------------------------

    def model_loaded(self, model: LoadedModel) -> None:
        if model.load_seconds is not None:
            self.model_load_seconds.labels(model.name).set(model.load_seconds)
        self.model_ready.labels(model.name).set(1 if model.status == "ready" else 0)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by route template (so session ids stay out of labels), with its latency.

    WebSocket messages are counted by the stream handler itself (`Metrics.observe`), one per message."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before it starts a response

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            self.metrics.observe(route, scope["method"], status, time.perf_counter() - started)
