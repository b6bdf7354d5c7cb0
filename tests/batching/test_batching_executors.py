"""The executors behind the data plane: direct (one model call per request) and dynamic batching, tested alike
(every call gets exactly what a call of its own gives), then what only the batcher does: merging concurrent calls,
closing batches by size, deadline or idleness, keeping one session's calls apart, isolating a failing call."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence

import numpy as np
import pytest

from rnnserve.batching.base import StepExecutor
from rnnserve.batching.direct import DirectExecutor
from rnnserve.batching.dynamic import DynamicBatcher
from rnnserve.layers.model import ReferenceModel
from rnnserve.runtime.runner import Feeds, RunResult
from rnnserve.signature import ModelSignature


class Recording:
    """A Runner around the reference model that records the rows of every call (and can fail or be slow)."""

    def __init__(self, model: ReferenceModel, *, delay_s: float = 0.0) -> None:
        self.model = model
        self.spec = model.spec
        self.delay_s = delay_s
        self.rows: list[int] = []
        self._lock = threading.Lock()

    @property
    def signature(self) -> ModelSignature:
        return self.model.signature

    def run(
        self, inputs: Feeds, states: Sequence[np.ndarray] | None = None, mask: np.ndarray | None = None
    ) -> RunResult:
        x = inputs["x"]
        with self._lock:
            self.rows.append(x.shape[1 if self.signature.time_major else 0])
        if self.delay_s:
            time.sleep(self.delay_s)
        if np.isnan(x).any():
            raise ValueError("a NaN reached the model")
        return self.model.run(inputs, states, mask)


class Calls:
    """The executor's call observer: (model, requests, rows) of every model call, its time and each request's wait."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []
        self.timings: list[tuple[float, list[float]]] = []

    def __call__(self, model: str, requests: int, rows: int, seconds: float, waited: Sequence[float]) -> None:
        self.seen.append((model, requests, rows))
        self.timings.append((seconds, list(waited)))


@pytest.fixture
async def batcher_factory() -> AsyncIterator[Callable[..., DynamicBatcher]]:
    made: list[DynamicBatcher] = []

    def make(**options: object) -> DynamicBatcher:
        settings = {"threads": 1, "max_batch_size": 64, "max_delay_s": 0.002, **options}
        batcher = DynamicBatcher(**settings)  # type: ignore[arg-type]
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        await batcher.aclose()


def call_inputs(rng: np.random.Generator, rows: int, steps: int) -> dict[str, np.ndarray]:
    return {"x": rng.normal(size=(rows, steps, 3)).astype(np.float32)}


def assert_equal_results(got: RunResult, expected: RunResult) -> None:
    for name, value in expected.outputs.items():
        np.testing.assert_allclose(got.outputs[name], value, rtol=1e-6, atol=1e-6)
    for g, e in zip(got.states, expected.states, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)


# ---- both executors --------------------------------------------------------------------------------------------


@pytest.fixture(params=["direct", "dynamic"])
async def executor(request: pytest.FixtureRequest) -> AsyncIterator[StepExecutor]:
    running: StepExecutor
    if request.param == "direct":
        running = DirectExecutor(threads=2)
    else:
        running = DynamicBatcher(threads=2, max_batch_size=8, max_delay_s=0.005)
    yield running
    await running.aclose()


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM"])
async def test_each_call_gets_what_a_call_of_its_own_gives(
    executor: StepExecutor, make_model: Callable[..., ReferenceModel], kind: str, rng: np.random.Generator
) -> None:
    model = make_model(kind)
    calls = []
    for i, (rows, steps) in enumerate([(1, 1), (2, 3), (1, 2), (3, 1), (1, 4), (2, 2), (1, 1), (4, 2), (1, 3)]):
        states = [rng.normal(size=(rows, 4)).astype(np.float32) for _ in model.signature.states] if i % 2 else None
        mask = rng.random((rows, steps)) > 0.3 if i % 3 == 0 else None
        calls.append((call_inputs(rng, rows, steps), states, mask, f"session-{i}"))
    got = await asyncio.gather(*(executor.run(model, x, s, m, key) for x, s, m, key in calls))
    for result, (x, s, m, _) in zip(got, calls, strict=True):
        assert_equal_results(result, model.run(x, s, m))


async def test_a_model_error_reaches_its_caller(
    executor: StepExecutor, make_model: Callable[..., ReferenceModel]
) -> None:
    model = Recording(make_model("GRU"))
    with pytest.raises(ValueError, match="NaN"):
        await executor.run(model, {"x": np.full((1, 1, 3), np.nan, dtype=np.float32)}, None, None)


# ---- dynamic batching -------------------------------------------------------------------------------------------


async def test_concurrent_calls_share_one_model_call(
    batcher_factory: Callable[..., DynamicBatcher], make_model: Callable[..., ReferenceModel], rng: np.random.Generator
) -> None:
    calls = Calls()
    batcher = batcher_factory(observer=calls)
    model = Recording(make_model("GRU"))
    await asyncio.gather(*(batcher.run(model, call_inputs(rng, 1, 1), None, None, key=i) for i in range(8)))
    assert model.rows == [8]
    assert calls.seen == [("gru_model", 8, 8)]
    ((seconds, waited),) = calls.timings
    assert seconds > 0 and len(waited) == 8 and all(w >= 0 for w in waited)


async def test_a_batch_closes_when_it_holds_max_batch_size_rows(
    batcher_factory: Callable[..., DynamicBatcher], make_model: Callable[..., ReferenceModel], rng: np.random.Generator
) -> None:
    batcher = batcher_factory(max_batch_size=4, max_delay_s=5.0)
    model = Recording(make_model("SimpleRNN"))
    await asyncio.gather(*(batcher.run(model, call_inputs(rng, 1, 1), None, None, key=i) for i in range(10)))
    assert model.rows == [4, 4, 2]


async def test_calls_of_one_key_never_share_a_batch(
    batcher_factory: Callable[..., DynamicBatcher], make_model: Callable[..., ReferenceModel], rng: np.random.Generator
) -> None:
    batcher = batcher_factory()
    model = Recording(make_model("SimpleRNN"))
    keys = ["a", "b", "a", "c", "a"]
    await asyncio.gather(*(batcher.run(model, call_inputs(rng, 1, 1), None, None, key=k) for k in keys))
    assert model.rows == [3, 1, 1]  # a, b, c together; then each later call of "a" in a batch of its own


async def test_a_lone_call_does_not_wait_for_the_deadline(
    batcher_factory: Callable[..., DynamicBatcher], make_model: Callable[..., ReferenceModel], rng: np.random.Generator
) -> None:
    batcher = batcher_factory(max_delay_s=30.0)
    model = Recording(make_model("SimpleRNN"))
    started = time.monotonic()
    await batcher.run(model, call_inputs(rng, 1, 1), None, None)
    assert time.monotonic() - started < 5.0  # closed after one quiet loop iteration, not after 30 s


async def test_the_deadline_closes_a_batch_while_calls_keep_arriving(
    batcher_factory: Callable[..., DynamicBatcher], make_model: Callable[..., ReferenceModel], rng: np.random.Generator
) -> None:
    batcher = batcher_factory(max_batch_size=100_000, max_delay_s=0.02)
    model = Recording(make_model("SimpleRNN"))
    pending: list[asyncio.Task[RunResult]] = []
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # one new call every loop iteration: the queue never goes quiet
        x = call_inputs(rng, 1, 1)
        pending.append(asyncio.ensure_future(batcher.run(model, x, None, None, key=len(pending))))
        await asyncio.sleep(0)
    await asyncio.gather(*pending)
    assert sum(model.rows) == len(pending)
    assert 2 <= len(model.rows) < len(pending) / 4  # several batches, each closed by the deadline, each large


async def test_a_failing_call_fails_alone(
    batcher_factory: Callable[..., DynamicBatcher], make_model: Callable[..., ReferenceModel], rng: np.random.Generator
) -> None:
    batcher = batcher_factory()
    model = Recording(make_model("GRU"))
    good = [call_inputs(rng, 1, 1) for _ in range(3)]
    bad = {"x": np.full((1, 1, 3), np.nan, dtype=np.float32)}
    results = await asyncio.gather(
        *(batcher.run(model, x, None, None, key=i) for i, x in enumerate([good[0], bad, *good[1:]])),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError)
    for result, x in zip([results[0], *results[2:]], good, strict=True):
        assert isinstance(result, RunResult)
        assert_equal_results(result, model.model.run(x))
    assert model.rows[0] == 4 and sorted(model.rows[1:]) == [1, 1, 1, 1]  # the batch, then each call alone


async def test_models_that_read_backwards_batch_one_length_at_a_time(
    batcher_factory: Callable[..., DynamicBatcher], make_model: Callable[..., ReferenceModel], rng: np.random.Generator
) -> None:
    batcher = batcher_factory()
    model = Recording(make_model("GRU", go_backwards=True))
    inputs = [call_inputs(rng, 1, steps) for steps in (2, 1, 2, 1)]
    got = await asyncio.gather(*(batcher.run(model, x, None, None, key=i) for i, x in enumerate(inputs)))
    assert sorted(model.rows) == [2, 2]  # lengths 2 and 1 never share a batch
    for result, x in zip(got, inputs, strict=True):
        assert_equal_results(result, model.model.run(x))


async def test_closing_fails_the_calls_still_waiting(
    make_model: Callable[..., ReferenceModel], rng: np.random.Generator
) -> None:
    batcher = DynamicBatcher(threads=1, max_batch_size=1, max_delay_s=0.0)
    model = Recording(make_model("SimpleRNN"), delay_s=0.2)
    tasks = [asyncio.ensure_future(batcher.run(model, call_inputs(rng, 1, 1), None, None, key=i)) for i in range(3)]
    await asyncio.sleep(0.05)  # the first call is running, the others wait
    await batcher.aclose()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=10)
    assert all(isinstance(r, RuntimeError) and "shutting down" in str(r) for r in results)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        DynamicBatcher(threads=1, max_batch_size=0, max_delay_s=0.001)
