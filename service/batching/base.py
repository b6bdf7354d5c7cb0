"""The execution seam: how the data plane gets one model call done.

`DirectExecutor` makes one runner call per request on a bounded thread pool; a dynamic batcher (merging the rows of
concurrent requests into one call) can replace it behind the same protocol. `open_executor(settings)` picks one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from service.runtime.signature import Feeds, Runner, RunResult

if TYPE_CHECKING:
    from service.settings import Settings


class StepExecutor(Protocol):
    async def run(
        self, model: Runner, inputs: Feeds, states: Sequence[np.ndarray] | None, mask: np.ndarray | None
    ) -> RunResult:
        """Run `model` on already validated inputs (the runner's call shape); off the event loop."""
        ...

    async def aclose(self) -> None:
        """Finish or fail the calls in flight and release the workers."""
        ...


def open_executor(settings: Settings) -> StepExecutor:
    """The executor `settings.executor` names."""
    if settings.executor == "direct":
        from service.batching.direct import DirectExecutor

        return DirectExecutor(threads=settings.executor_threads)
    if settings.executor == "dynamic":
        from service.batching.dynamic import DynamicBatcher

        return DynamicBatcher(
            threads=settings.executor_threads, max_batch_size=settings.max_batch_size, max_delay_s=settings.max_delay_s
        )
    raise ValueError(f"unknown executor {settings.executor!r}")
