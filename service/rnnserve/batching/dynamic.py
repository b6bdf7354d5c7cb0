"""Dynamic batching: concurrent calls of one model merged into one onnxruntime call.

Modelled on MLServer's adaptive batcher: every call waits on a Future in its model's queue, and one worker task
per model runs batches, one at a time, on the thread pool, resolving each Future with its own slice (`merge`).
A batch closes as soon as one of these holds:

* the queue holds `max_batch_size` rows;
* its oldest call has waited `max_delay_s`;
* a whole event-loop iteration brought no new call: requests are not arriving now, so waiting for more would
  only add latency (under load every iteration brings some, and batches fill up).

While a batch runs, the next one gathers. Calls with the same key (the steps of one session) never share a batch,
and calls of different lengths share one by padding with masked steps, except for models that read time
backwards (go_backwards, Bidirectional), whose batches hold one length each. A failed batch is retried call by call,
so that only the culprit fails. The same interface as `DirectExecutor`: the data plane does not know which runs.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rnnserve.batching.base import CallObserver
from rnnserve.batching.merge import CallItem, Queued, item_shape, merge, select, split
from rnnserve.runtime.runner import Feeds, Runner, RunResult


def reads_backwards(model: Runner) -> bool:
    """Whether a model has a layer that reads time from the end (padding at the end would come first)."""
    from rnnserve.kinds import reads_backwards as spec_reads_backwards

    spec = getattr(model, "spec", None)
    if spec is None:
        return True  # unknown: be safe, batch equal lengths only
    return spec_reads_backwards(spec)  # each layer's kind says (go_backwards, Bidirectional)


class _Pending(Queued):
    __slots__ = ("item", "future", "since")

    def __init__(self, item: CallItem, rows: int, steps: int, key: Hashable | None, future: asyncio.Future[RunResult],
                 since: float) -> None:  # fmt: skip
        super().__init__(rows, steps, key)
        self.item, self.future, self.since = item, future, since


class _ModelQueue:
    """One model's waiting calls and the state of its worker."""

    def __init__(self, model: Runner, loop: asyncio.AbstractEventLoop) -> None:
        self.model = model
        self.name = model.signature.name
        self.equal_lengths = reads_backwards(model)
        self.loop = loop
        self.pending: deque[_Pending] = deque()
        self.rows = 0
        self.ready = asyncio.Event()  # set when a batch should run now
        self.busy = False  # a batch is running
        self.watching = False  # an end-of-iteration check is scheduled
        self.seen = 0  # queue length at the last check
        self.task: asyncio.Task[None] | None = None


class DynamicBatcher:
    def __init__(
        self,
        threads: int,
        max_batch_size: int,
        max_delay_s: float,
        observer: CallObserver | None = None,
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
        self,
        model: Runner,
        inputs: Feeds,
        states: Sequence[np.ndarray] | None,
        mask: np.ndarray | None,
        key: Hashable | None = None,
    ) -> RunResult:
        queue = self._queues.get(id(model))
        if queue is None:
            queue = self._open(model)
        item = CallItem(inputs, states, mask)
        rows, steps = item_shape(model.signature, item)
        loop = queue.loop
        future: asyncio.Future[RunResult] = loop.create_future()
        queue.pending.append(_Pending(item, rows, steps, key, future, loop.time()))
        queue.rows += rows
        if queue.busy:
            pass  # the worker looks at the queue when its batch is done
        elif queue.rows >= self._max_rows:
            queue.ready.set()
        elif not queue.watching:
            self._watch(queue)
        return await future

    def _open(self, model: Runner) -> _ModelQueue:
        queue = self._queues[id(model)] = _ModelQueue(model, asyncio.get_running_loop())
        queue.task = asyncio.create_task(self._worker(queue), name=f"batcher-{queue.name}")
        return queue

    # ---- when a batch closes -----------------------------------------------------------------------------------------

    def _watch(self, queue: _ModelQueue) -> None:
        """Check again at the end of the next loop iteration (after the requests it brings have queued)."""
        queue.watching = True
        queue.seen = len(queue.pending)
        queue.loop.call_soon(self._check, queue)

    def _check(self, queue: _ModelQueue) -> None:
        queue.watching = False
        if queue.busy or not queue.pending:
            return
        grew = len(queue.pending) > queue.seen
        overdue = queue.loop.time() - queue.pending[0].since >= self._max_delay
        if queue.rows >= self._max_rows or not grew or overdue:
            queue.ready.set()
        else:
            self._watch(queue)

    # ---- running batches ---------------------------------------------------------------------------------------------

    async def _worker(self, queue: _ModelQueue) -> None:
        while True:
            await queue.ready.wait()
            queue.ready.clear()
            queue.busy = True
            try:
                while queue.pending:
                    await self._run_batch(queue, self._take(queue))
                    if queue.pending and queue.rows < self._max_rows:
                        break  # not full: let the next iteration's check decide
            finally:
                queue.busy = False
            if queue.pending:
                self._watch(queue)

    def _take(self, queue: _ModelQueue) -> list[_Pending]:
        while queue.pending and queue.pending[0].future.cancelled():
            queue.rows -= queue.pending.popleft().rows
        chosen, rows = select(queue.pending, self._max_rows, equal_lengths=queue.equal_lengths)
        if len(chosen) == len(queue.pending):
            batch = list(queue.pending)
            queue.pending.clear()
        else:
            pending = list(queue.pending)
            taken = set(chosen)
            batch = [pending[i] for i in chosen]
            queue.pending = deque(p for i, p in enumerate(pending) if i not in taken)
        queue.rows -= rows
        return [p for p in batch if not p.future.cancelled()]

    async def _run_batch(self, queue: _ModelQueue, batch: list[_Pending]) -> None:
        if not batch:
            return
        model = queue.model
        started = queue.loop.time()
        try:
            if len(batch) == 1:
                results = [await self._call(queue.loop, model, batch[0].item)]
            else:
                merged, shapes = merge(model.signature, [p.item for p in batch], [(p.rows, p.steps) for p in batch])
                results = split(model.signature, await self._call(queue.loop, model, merged), shapes)
        except asyncio.CancelledError:  # the batcher is closing: nobody will resolve these calls otherwise
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(RuntimeError("the server is shutting down"))
            raise
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            # One bad item must not fail its neighbours: run each alone so that only the culprit fails.
            for pending in batch:
                await self._run_batch(queue, [pending])
            return
        if self._observer is not None:
            waited = [started - p.since for p in batch]
            self._observer(queue.name, len(batch), sum(p.rows for p in batch), queue.loop.time() - started, waited)
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
