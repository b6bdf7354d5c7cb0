"""Every Prometheus collector of the service, on a registry of its own (one per app: no global state).

`Metrics` is also the `SessionEvents` observer the session store reports expirations and evictions to, the
executors' `CallObserver` (model calls and batch sizes); the edge (`rnnserve.api.edge`) records requests by
route template, method and status with their latency (`observe`).

The series updated on every request (requests, latency, steps, model calls, batch sizes) are `LoopCounter` and
`LoopHistogram`: plain Python numbers that only the event loop writes, turned into Prometheus samples when
scraped. prometheus_client's own metrics take a lock and look their labels up on every update, which costs more
than a whole batched model call per step.

With several worker processes (`--workers N`) a scrape reaches one worker, so each would report only its own
share. Then the metrics are *shared* (prometheus_client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`, which
`shared_metrics_dir` sets up for `rnnserve serve`): every series is a prometheus_client metric writing to its
process's file in that folder, and /metrics on any worker adds up every worker's files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from rnnserve.runtime.repository import LoadedModel

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_STAGE_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

Labels = tuple[str, ...]
_STATUS_CLASSES = tuple(f"{n}xx" for n in range(10))
_bound_text = cast(Callable[[float], str], floatToGoString)  # how prometheus_client writes `le` (untyped there)


class LoopCounter(Collector):
    """A labelled counter for the event loop's own use (no lock): `inc(("label", ...), n)`."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.values: dict[Labels, float] = {}
        self.created: dict[Labels, float] = {}  # the `_created` sample prometheus_client counters carry

    def inc(self, labels: Labels, amount: float = 1) -> None:
        value = self.values.get(labels)
        if value is None:
            self.created[labels] = time.time()
            value = 0
        self.values[labels] = value + amount

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.values.items()):
            family.add_metric(list(labels), value, created=self.created[labels])
        yield family


class LoopHistogram(Collector):
    """A labelled histogram for the event loop's own use (no lock): `observe(("label", ...), value)`."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        # labels -> per-bucket counts (not cumulative; the last one is +Inf), then the sum
        self.values: dict[Labels, list[float]] = {}
        self.created: dict[Labels, float] = {}

    def observe(self, labels: Labels, value: float, count: int = 1) -> None:
        """`count` observations of `value` (a batch's steps at their mean, in one update)."""
        counts = self.values.get(labels)
        if counts is None:
            counts = self.values[labels] = [0.0] * (len(self.bounds) + 2)
            self.created[labels] = time.time()
        counts[bisect_left(self.bounds, value)] += count
        counts[-1] += value * count

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        created = GaugeMetricFamily(f"{self.name}_created", self.documentation, labels=self.labelnames)
        for labels, counts in list(self.values.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip((*self.bounds, float("inf")), counts, strict=False):
                cumulative += count
                buckets.append((_bound_text(bound), cumulative))
            family.add_metric(list(labels), buckets, sum_value=counts[-1])
            created.add_metric(list(labels), self.created[labels])
        yield family
        yield created


MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def shared_dir() -> str | None:
    """The folder through which worker processes share their metrics, or None (one process)."""
    return os.environ.get(MULTIPROC_DIR) or None


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """For the worker processes started inside: `PROMETHEUS_MULTIPROC_DIR`, a fresh temporary folder removed
    afterwards, or the one already set, emptied of an earlier run's files (as prometheus_client asks)."""
    given = shared_dir()
    folder = given or tempfile.mkdtemp(prefix="rnnserve-metrics-")
    Path(folder).mkdir(parents=True, exist_ok=True)
    for stale in Path(folder).glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_DIR] = folder
    try:
        yield folder
    finally:
        if given is None:
            del os.environ[MULTIPROC_DIR]
            shutil.rmtree(folder, ignore_errors=True)


class CounterSeries(Protocol):
    def inc(self, labels: Labels, amount: float = 1) -> None: ...


class HistogramSeries(Protocol):
    def observe(self, labels: Labels, value: float, count: int = 1) -> None: ...


class SharedCounter:
    """`LoopCounter`'s interface over a prometheus_client counter (shared between worker processes)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self._counter = Counter(name, documentation, labelnames, registry=registry)

    def inc(self, labels: Labels, amount: float = 1) -> None:
        self._counter.labels(*labels).inc(amount)


class SharedHistogram:
    """`LoopHistogram`'s interface over a prometheus_client histogram (shared between worker processes)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:  # fmt: skip
        self._histogram = Histogram(name, documentation, labelnames, buckets=buckets, registry=registry)

    def observe(self, labels: Labels, value: float, count: int = 1) -> None:
        child = self._histogram.labels(*labels)
        for _ in range(count):
            child.observe(value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.shared = shared_dir() is not None
        r = self.registry
        self.requests = self._counter(
            "rnnserve_requests", "HTTP requests and WebSocket messages", ["route", "method", "status"]
        )
        self.latency = self._histogram(
            "rnnserve_request_seconds", "Request latency", ["route", "method"], _LATENCY_BUCKETS
        )
        self.tenant_requests = self._counter(
            "rnnserve_tenant_requests",
            "HTTP requests and WebSocket messages by the tenant of their API key ('-': none or an unknown one), on a "
            "server with keys",
            ["tenant", "route", "method", "status_class"],
        )
        # Gauges say how workers combine (their multiprocess_mode); one process ignores it. A worker sets the
        # session count from the shared store when it is scraped: the most recent value is the store's.
        self.sessions_active = Gauge(
            "rnnserve_sessions_active", "Live sessions in the store", registry=r, multiprocess_mode="livemostrecent"
        )
        self.sessions_created = Counter("rnnserve_sessions_created", "Sessions opened", registry=r)
        self.sessions_deleted = Counter("rnnserve_sessions_deleted", "Sessions deleted by clients", registry=r)
        self.steps = self._counter("rnnserve_session_steps", "Session steps applied", ["model"])
        self.timesteps = self._counter("rnnserve_session_timesteps", "Timesteps consumed by sessions", ["model"])
        self.replays = Counter("rnnserve_session_replays", "Retried steps answered from the cache", registry=r)
        self.expirations = Counter("rnnserve_session_expirations", "Sessions expired after their TTL", registry=r)
        self.evictions = Counter("rnnserve_session_evictions", "Sessions dropped by the store early", registry=r)
        self.predictions = Counter("rnnserve_predictions", "Stateless predict calls", ["model"], registry=r)
        self.model_load_seconds = Gauge(
            "rnnserve_model_load_seconds", "Time to load each model", ["model"], registry=r, multiprocess_mode="max"
        )
        self.model_ready = Gauge(
            "rnnserve_model_ready",
            "1 when the model serves (in every worker), 0 while loading or after a failure",
            ["model"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.model_calls = self._counter(
            "rnnserve_model_calls", "onnxruntime calls (one per batch with dynamic batching)", ["model"]
        )
        self.batch_rows = self._histogram("rnnserve_batch_rows", "Rows per model call", ["model"], _ROW_BUCKETS)
        self.batch_requests = self._histogram(
            "rnnserve_batch_requests", "Requests merged into each model call", ["model"], _ROW_BUCKETS
        )
        self.stages = self._histogram(
            "rnnserve_stage_seconds",
            "Where a request's time goes, per model: queue (waiting for the batcher or a worker), model (the "
            "onnxruntime call a request was merged into), store_read and store_commit (a session's load and "
            "commit), encode (rendering the reply)",
            ["model", "stage"],
            _STAGE_BUCKETS,
        )
        self.store_round_trips = self._counter(
            "rnnserve_store_round_trips", "Exchanges with a remote session store (one per batch of calls)", ["op"]
        )
        self.session_rereads = Counter(
            "rnnserve_session_rereads",
            "Steps recomputed after a fresh read: the session's cached record was stale (another replica moved it)",
            registry=r,
        )

    def _counter(self, name: str, documentation: str, labelnames: Sequence[str]) -> CounterSeries:
        if self.shared:
            return SharedCounter(name, documentation, labelnames, self.registry)
        counter = LoopCounter(name, documentation, labelnames)
        self.registry.register(counter)
        return counter

    def _histogram(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> HistogramSeries:
        if self.shared:
            return SharedHistogram(name, documentation, labelnames, buckets, self.registry)
        histogram = LoopHistogram(name, documentation, labelnames, buckets)
        self.registry.register(histogram)
        return histogram

    # ---- SessionEvents -------------------------------------------------------------------------------------------

    def expired(self, n: int = 1) -> None:
        self.expirations.inc(n)

    def evicted(self, n: int = 1) -> None:
        self.evictions.inc(n)

    def store_round_trip(self, op: str) -> None:
        self.store_round_trips.inc((op,))

    # ---- repository hook -----------------------------------------------------------------------------------------

    def model_loaded(self, model: LoadedModel) -> None:
        if model.load_seconds is not None:
            self.model_load_seconds.labels(model.name).set(model.load_seconds)
        self.model_ready.labels(model.name).set(1 if model.status == "ready" else 0)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """One HTTP request or WebSocket message."""
        self.requests.inc((route, method, str(status)))
        self.latency.observe((route, method), seconds)

    def tenant_request(self, tenant: str, route: str, method: str, status: int) -> None:
        """One HTTP request or WebSocket message of `tenant` (a name from the keys file, `default` for the single
        `api_key`, `-` for none: a bounded set), by status class (2xx, 4xx, ...)."""
        self.tenant_requests.inc((tenant, route, method, _STATUS_CLASSES[status // 100]))

    def step_done(self, model: str, timesteps: int) -> None:
        """One session step of `timesteps` timesteps."""
        key = (model,)
        self.steps.inc(key)
        self.timesteps.inc(key, timesteps)

    def model_call(self, model: str, requests: int, rows: int, seconds: float, waited: Sequence[float]) -> None:
        """One onnxruntime call merging `requests` requests into `rows` rows, how long it took, and how long each
        request waited for it (the executors' `CallObserver`)."""
        key = (model,)
        self.model_calls.inc(key)
        self.batch_rows.observe(key, rows)
        self.batch_requests.observe(key, requests)
        stages = self.stages
        stages.observe((model, "model"), seconds)
        queue = (model, "queue")
        for wait in waited:
            stages.observe(queue, wait)

    def stage(self, model: str, stage: str, seconds: float, count: int = 1) -> None:
        """Time spent in one stage of a request (see `stages`); with `count`, that many requests' stage at once
        (a batched step's: each step's mean over its batch)."""
        self.stages.observe((model, stage), seconds, count)

    def render(self) -> bytes:
        if not self.shared:
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker)  # type: ignore[no-untyped-call]
        return generate_latest(every_worker)

    def close(self) -> None:
        """This process stops serving: its live gauges leave the shared totals (its counts stay in them)."""
        if self.shared:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
