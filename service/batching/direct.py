"""One runner call per request, on a bounded pool of worker threads (onnxruntime releases the GIL)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from service.batching.base import CallObserver
from service.runtime.signature import Feeds, Runner, RunResult


class DirectExecutor:
    def __init__(self, threads: int, observer: CallObserver | None = None) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rnnserve-run")
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
        result = await loop.run_in_executor(self._pool, functools.partial(model.run, inputs, states, mask))
        if self._observer is not None:
            first = next(iter(inputs.values()))
            self._observer(model.signature.name, 1, first.shape[1 if model.signature.time_major else 0])
        return result

    async def aclose(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
