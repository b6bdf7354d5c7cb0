"""One runner call per request, on a bounded pool of worker threads (onnxruntime releases the GIL)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rnnserve.batching.base import CallObserver
from rnnserve.runtime.runner import Feeds, Runner, RunResult


class DirectExecutor:
    def __init__(self, threads: int, observer: CallObserver | None = None, *, name: str = "rnnserve-run") -> None:
        """`threads` worker threads, named `name-N`; `observer` is told of every call."""
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._observer = observer

    async def run(
        self,
        model: Runner,
        inputs: Feeds,
        states: Sequence[np.ndarray] | None,
        mask: np.ndarray | None,
        key: Hashable | None = None,
    ) -> RunResult:
        loop = asyncio.get_running_loop()
        if self._observer is None:
            return await loop.run_in_executor(self._pool, functools.partial(model.run, inputs, states, mask))
        queued = time.perf_counter()
        result, started, ended = await loop.run_in_executor(self._pool, _timed, model, inputs, states, mask)
        first = next(iter(inputs.values()))
        rows = first.shape[1 if model.signature.time_major else 0]
        self._observer(model.signature.name, 1, rows, ended - started, (started - queued,))
        return result

    async def aclose(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)


def _timed(
    model: Runner, inputs: Feeds, states: Sequence[np.ndarray] | None, mask: np.ndarray | None
) -> tuple[RunResult, float, float]:
    """`model.run` in a worker thread, with when it started and ended (perf_counter)."""
    started = time.perf_counter()
    result = model.run(inputs, states, mask)
    return result, started, time.perf_counter()
