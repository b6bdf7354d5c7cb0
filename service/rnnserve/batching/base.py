"""The execution seam: how the data plane gets one model call done.

`DirectExecutor` makes one runner call per request on a bounded thread pool; a dynamic batcher (merging the rows of
concurrent requests into one call) can replace it behind the same protocol. `open_executor(settings)` picks one.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rnnserve.runtime.runner import Feeds, Runner, RunResult

if TYPE_CHECKING:
    from rnnserve.settings import Settings


class CallObserver(Protocol):
    """Told of every model call an executor makes."""

    def __call__(self, model: str, requests: int, rows: int, seconds: float, waited: Sequence[float]) -> None:
        """`requests` merged into `rows` rows, the call took `seconds`, and each request waited `waited[i]` seconds
        between reaching the executor and the start of the call (the batcher's queue, or a free worker thread)."""


class StepExecutor(Protocol):
    async def run(
        self,
        model: Runner,
        inputs: Feeds,
        states: Sequence[np.ndarray] | None,
        mask: np.ndarray | None,
        key: Hashable | None = None,
    ) -> RunResult:
        """Run `model` on already validated inputs (the runner's call shape); off the event loop. Calls with the
        same `key` (the steps of one session) are never merged into one model call."""
        ...

    async def aclose(self) -> None:
        """Finish or fail the calls in flight and release the workers."""
        ...


def open_executor(settings: Settings, observer: CallObserver | None = None) -> StepExecutor:
    """The executor `settings.executor` names; `observer` (e.g. the metrics) hears of every model call."""
    if settings.executor == "direct":
        from rnnserve.batching.direct import DirectExecutor

        return DirectExecutor(threads=settings.executor_threads, observer=observer)
    if settings.executor == "dynamic":
        from rnnserve.batching.dynamic import DynamicBatcher

        return DynamicBatcher(
            threads=settings.executor_threads,
            max_batch_size=settings.max_batch_size,
            max_delay_s=settings.max_delay_s,
            observer=observer,
        )
    raise ValueError(f"unknown executor {settings.executor!r}")
