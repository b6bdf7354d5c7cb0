"""Triton's `ModelStreamInfer`: many requests, of any models and sequences, on one bidirectional call.

The requests of one sequence (same model, same `sequence_id`) run one after another in the order they came, as
Triton's sequence batcher applies them; requests of different sequences run concurrently. Each request gets one
response, sent as soon as it is ready: responses of different sequences may overtake each other, those of one
sequence never do. A request that fails gets a response whose `error_message` says why (and whose
`infer_response` names the model, the request's id and its `sequence_id`, to match it to its request), and the
stream goes on.

Requests are served two ways. With a `Batcher`, a sequence's request that the batcher takes (`prepare`: for
rnnserve, a plain step, `rnnserve.grpc.steps`) waits, once its sequence's previous request is answered, for the
stream's next batch: the stream runs one batch at a time (`run`), of every such request ready when it starts, so
that the steps that arrive while one batch runs go to the data plane together, one model call per model. Any
other request (a stateless one, a start or an end, one the batcher does not take) runs on its own (`handle`), at
once (after its sequence's previous request).

At most `max_in_flight` requests are read and not yet answered; the stream reads no further until a response
has been sent, so a client that does not read its responses is slowed down by gRPC's flow control rather than
by the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar

from rnnserve.grpc.protos import grpc_service_pb2 as pb
from rnnserve.grpc.tensors import parameter_values, set_parameters

Handler = Callable[[pb.ModelInferRequest], Awaitable[pb.ModelInferResponse]]
"""One request -> its response; raises on failure."""
Describe = Callable[[BaseException], str]
"""A failure -> the error message its response carries."""
Answer = pb.ModelStreamInferResponse | BaseException
"""A batched request's response (as the stream sends it), or the exception that fails it."""

P = TypeVar("P")


class Batcher(Protocol[P]):
    """Requests of sequences served in batches (see the module's docstring)."""

    def prepare(self, request: pb.ModelInferRequest) -> P | None:
        """The request, ready for `run`; None when it is to run on its own (through the stream's `Handler`)."""

    async def run(self, prepared: Sequence[P]) -> list[Answer]:
        """Each request's answer, in order (at most one request of each sequence: the stream sees to it)."""


def sequence_key(request: pb.ModelInferRequest) -> Hashable | None:
    """What orders a request among the stream's others: its model and sequence id (None: no sequence; an id
    that is not valid fails the request anyway, and it is not ordered)."""
    parameters = request.parameters
    if "sequence_id" not in parameters:
        return None
    parameter = parameters["sequence_id"]
    choice = parameter.WhichOneof("parameter_choice")
    if choice in ("int64_param", "uint64_param"):
        value = getattr(parameter, choice)
        return None if value == 0 else (request.model_name, "u", value)
    if choice == "string_param":
        return None if parameter.string_param == "" else (request.model_name, "s", parameter.string_param)
    return None


def error_response(request: pb.ModelInferRequest, message: str) -> pb.ModelStreamInferResponse:
    response = pb.ModelStreamInferResponse(error_message=message)
    response.infer_response.model_name = request.model_name
    response.infer_response.model_version = request.model_version
    response.infer_response.id = request.id
    sequence_id = parameter_values(request.parameters).get("sequence_id")
    if sequence_id is not None:
        set_parameters(response.infer_response.parameters, {"sequence_id": sequence_id})
    return response


async def serve_stream(
    requests: AsyncIterator[pb.ModelInferRequest],
    handle: Handler,
    describe: Describe,
    max_in_flight: int,
    batcher: Batcher[Any] | None = None,
) -> AsyncIterator[pb.ModelStreamInferResponse]:
    """The responses to `requests`, each as soon as it is ready (see the module's docstring)."""
    stream = _Stream(handle, describe, max_in_flight, batcher)
    reader = asyncio.create_task(stream.read(requests))
    reader.add_done_callback(lambda _: stream.wake_writer())
    try:
        responses = stream.responses
        while True:
            while responses:
                yield responses.popleft()
                stream.answered()
            if reader.done() and (stream.in_flight == 0 or reader.exception() is not None):
                break  # every request answered after the client's last one, or the request stream broke
            await stream.writer_wait()
        await reader  # raises what broke the request stream, if anything
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        for task in stream.tasks:  # the call ended early (cancelled, or the connection lost): drop its requests
            task.cancel()


class _Stream:
    """The state of one call: what runs, what waits, and the responses not sent yet."""

    def __init__(self, handle: Handler, describe: Describe, max_in_flight: int, batcher: Batcher[Any] | None) -> None:
        self.handle = handle
        self.describe = describe
        self.max_in_flight = max_in_flight
        self.batcher = batcher
        self.loop = asyncio.get_running_loop()
        self.in_flight = 0  # requests read and not answered yet
        # each running sequence's requests waiting for it (None: none)
        self.after: dict[Hashable, deque[pb.ModelInferRequest] | None] = {}
        self.batch: list[tuple[Hashable, pb.ModelInferRequest, Any]] = []  # ready for the next batch
        self.responses: deque[pb.ModelStreamInferResponse] = deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self._batches: asyncio.Task[None] | None = None
        self._writer: asyncio.Future[None] | None = None
        self._reader: asyncio.Future[None] | None = None
        self._batch_ready: asyncio.Future[None] | None = None

    async def read(self, requests: AsyncIterator[pb.ModelInferRequest]) -> None:
        async for request in requests:
            self.in_flight += 1
            key = sequence_key(request)
            if key is None:
                self._start(None, request)
            elif key not in self.after:
                self.after[key] = None
                self._start(key, request)
            elif (waiting := self.after[key]) is not None:
                waiting.append(request)
            else:
                self.after[key] = deque((request,))
            if self.in_flight >= self.max_in_flight:
                self._reader = self.loop.create_future()
                await self._reader

    def answered(self) -> None:
        """A response has been sent."""
        self.in_flight -= 1
        _wake(self._reader)

    def wake_writer(self) -> None:
        _wake(self._writer)

    async def writer_wait(self) -> None:
        self._writer = self.loop.create_future()
        await self._writer

    def _start(self, key: Hashable | None, request: pb.ModelInferRequest) -> None:
        """Run a request whose turn has come: in the next batch, or on its own."""
        if key is not None and self.batcher is not None:
            try:
                prepared = self.batcher.prepare(request)
            except Exception:  # not the batcher's: the request's own path answers it
                prepared = None
            if prepared is not None:
                self.batch.append((key, request, prepared))
                if self._batches is None:
                    self._batches = self._task(self._run_batches())
                _wake(self._batch_ready)
                return
        self._task(self._run_one(key, request))

    def _task(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _run_one(self, key: Hashable | None, request: pb.ModelInferRequest) -> None:
        try:
            response = pb.ModelStreamInferResponse(infer_response=await self.handle(request))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            response = error_response(request, self.describe(exc))
        self._emit(response)
        if key is not None:
            self._next(key)

    async def _run_batches(self) -> None:
        assert self.batcher is not None
        while True:
            if not self.batch:
                self._batch_ready = self.loop.create_future()
                await self._batch_ready
            batch, self.batch = self.batch, []
            try:
                answers: Sequence[Answer] = await self.batcher.run([prepared for _, _, prepared in batch])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the batch as a whole failed: each of its requests says so
                answers = [exc] * len(batch)
            for (key, request, _), answer in zip(batch, answers, strict=True):
                self._emit(
                    error_response(request, self.describe(answer)) if isinstance(answer, BaseException) else answer
                )
                self._next(key)

    def _emit(self, response: pb.ModelStreamInferResponse) -> None:
        self.responses.append(response)
        _wake(self._writer)

    def _next(self, key: Hashable) -> None:
        """A sequence's request is answered: start its next one, if any."""
        waiting = self.after[key]
        if waiting:
            self._start(key, waiting.popleft())
        else:
            del self.after[key]  # (an empty deque too: the next request of the sequence starts at once)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
