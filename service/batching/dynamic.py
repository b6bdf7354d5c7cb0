"""Dynamic batching: concurrent calls of one model merged into one onnxruntime call.

Modelled on MLServer's adaptive batcher: every call waits on a Future; a per-model worker task takes what is
queued, keeps taking until the batch holds `max_batch_size` rows or `max_delay_s` has passed since its first
item, runs the merged call on the thread pool, and resolves each Future with its own slice. A failed batch
fails every waiter. Calls of different lengths share a batch by padding with masked steps (see `merge`), except
for models that read time backwards (go_backwards, Bidirectional), whose batches hold one length each.

The same interface as `DirectExecutor`, so the data plane and its tests don't know which one runs.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.batching.merge import CallItem, item_shape, merge, split
from service.runtime.signature import Feeds, Runner, RunResult

BatchObserver = Callable[[int, int], None]  # (items, rows) of each model call


def _reads_backwards(model: Runner) -> bool:
    spec = getattr(model, "spec", None)
    if spec is None:
        return True  # unknown: be safe, batch equal lengths only
    for layer in spec.layers:
        config = layer.config["layer"]["config"] if layer.class_name == "Bidirectional" else layer.config
        if layer.class_name == "Bidirectional" or config.get("go_backwards"):
            return True
    return False


@dataclass
class _Pending:
    item: CallItem
    rows: int
    steps: int
    future: asyncio.Future[RunResult]


@dataclass
class _ModelQueue:
    model: Runner
    equal_lengths: bool
    pending: deque[_Pending] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class DynamicBatcher:
    def __init__(
        self,
        threads: int,
        max_batch_size: int,
        max_delay_s: float,
        observer: BatchObserver | None = None,
    ) -> None:
        if threads < 1 or max_batch_size < 1 or max_delay_s < 0:
            raise ValueError(
                f"threads and max_batch_size must be >= 1 and max_delay_s >= 0, got {threads}, "
                f"{max_batch_size}, {max_delay_s}"
            )
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rnnserve-batch")
        self._max_rows = max_batch_size
        self._max_delay = max_delay_s
        self._observer = observer
        self._queues: dict[int, _ModelQueue] = {}  # created inside the running loop, on first use

    async def run(
        self, model: Runner, inputs: Feeds, states: Sequence[np.ndarray] | None, mask: np.ndarray | None
    ) -> RunResult:
        queue = self._queues.get(id(model))
        if queue is None:
            queue = self._queues[id(model)] = _ModelQueue(model, _reads_backwards(model))
            queue.task = asyncio.create_task(self._worker(queue), name=f"batcher-{id(model)}")
        item = CallItem(inputs, states, mask)
        rows, steps = item_shape(model.signature, item)
        future: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
        queue.pending.append(_Pending(item, rows, steps, future))
        queue.wakeup.set()
        return await future

    async def _worker(self, queue: _ModelQueue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await queue.wakeup.wait()
            queue.wakeup.clear()
            while queue.pending:
                batch = await self._collect(queue)
                await self._run_batch(loop, queue.model, batch)

    async def _collect(self, queue: _ModelQueue) -> list[_Pending]:
        """Take items until the batch is full or the deadline passes; oversize or other-length items wait."""
        deadline = asyncio.get_running_loop().time() + self._max_delay
        batch: list[_Pending] = []
        rows = 0
        while True:
            taken = self._take(queue, batch, rows)
            rows += sum(p.rows for p in taken)
            batch.extend(taken)
            remaining = deadline - asyncio.get_running_loop().time()
            if rows >= self._max_rows or remaining <= 0 or (queue.pending and taken == []):
                return batch
            queue.wakeup.clear()
            try:
                await asyncio.wait_for(queue.wakeup.wait(), remaining)
            except TimeoutError:
                return batch

    def _take(self, queue: _ModelQueue, batch: list[_Pending], rows: int) -> list[_Pending]:
        taken: list[_Pending] = []
        kept: deque[_Pending] = deque()
        steps = batch[0].steps if batch else None
        while queue.pending:
            pending = queue.pending.popleft()
            if pending.future.cancelled():
                continue
            fits = rows + pending.rows <= self._max_rows or not (batch or taken)
            same_length = not queue.equal_lengths or steps is None or pending.steps == steps
            if fits and same_length:
                taken.append(pending)
                rows += pending.rows
                steps = pending.steps if steps is None else steps
            else:
                kept.append(pending)
        queue.pending.extendleft(reversed(kept))
        return taken

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, model: Runner, batch: list[_Pending]) -> None:
        if not batch:
            return
        call = functools.partial(self._call, loop, model)
        try:
            if len(batch) == 1:
                results = [await call(batch[0].item)]
            else:
                merged, shapes = merge(model.signature, [p.item for p in batch])
                results = split(model.signature, await call(merged), shapes)
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            # One bad item must not fail its neighbours: run each alone so that only the culprit fails.
            for pending in batch:
                await self._run_batch(loop, model, [pending])
            return
        if self._observer is not None:
            self._observer(len(batch), sum(p.rows for p in batch))
        for pending, own in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(own)

    async def _call(self, loop: asyncio.AbstractEventLoop, model: Runner, item: CallItem) -> RunResult:
        return await loop.run_in_executor(self._pool, functools.partial(model.run, item.inputs, item.states, item.mask))

    async def aclose(self) -> None:
        for queue in self._queues.values():
            if queue.task is not None:
                queue.task.cancel()
            while queue.pending:
                pending = queue.pending.popleft()
                if not pending.future.done():
                    pending.future.set_exception(RuntimeError("the server is shutting down"))
        self._queues.clear()
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
