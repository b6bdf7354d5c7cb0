"""One runner call per request, on a bounded pool of worker threads (onnxruntime releases the GIL)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from service.runtime.signature import Feeds, Runner, RunResult


class DirectExecutor:
    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rnnserve-run")

    async def run(
        self, model: Runner, inputs: Feeds, states: Sequence[np.ndarray] | None, mask: np.ndarray | None
    ) -> RunResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(model.run, inputs, states, mask))

    async def aclose(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
