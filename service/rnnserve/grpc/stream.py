"""Triton's `ModelStreamInfer`: many requests, of any models and sequences, on one bidirectional call.

Requests run concurrently, so that the steps of many sequences on one stream meet in one batched model call, but
the requests of one sequence (same model, same `sequence_id`) run one after another in the order they came, as
Triton's sequence batcher applies them. Each request gets one response, sent as soon as it is ready: responses
of different sequences may overtake each other, those of one sequence never do. A request that fails gets a
response whose `error_message` says why (and whose `infer_response` names the model, the request's id and its
`sequence_id`, to match it to its request), and the stream goes on.

At most `max_in_flight` requests are read and not yet answered; the stream reads no further until a response
has been sent, so a client that does not read its responses is slowed down by gRPC's flow control rather than
by the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable

from rnnserve.grpc.protos import grpc_service_pb2 as pb
from rnnserve.grpc.tensors import parameter_values, set_parameters

Handler = Callable[[pb.ModelInferRequest], Awaitable[pb.ModelInferResponse]]
"""One request -> its response; raises on failure."""
Describe = Callable[[BaseException], str]
"""A failure -> the error message its response carries."""


def sequence_key(request: pb.ModelInferRequest) -> Hashable | None:
    """What orders a request among the stream's others: its model and sequence id (None: no sequence; an id
    that is not valid fails the request anyway, and it is not ordered)."""
    parameter = request.parameters.get("sequence_id")
    if parameter is None:
        return None
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
    requests: AsyncIterator[pb.ModelInferRequest], handle: Handler, describe: Describe, max_in_flight: int
) -> AsyncIterator[pb.ModelStreamInferResponse]:
    """The responses to `requests`, each as soon as it is ready (see the module's docstring)."""
    ready: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
    slots = asyncio.Semaphore(max_in_flight)
    last_of: dict[Hashable, asyncio.Future[None]] = {}  # each sequence's latest request not finished yet
    running: set[asyncio.Task[None]] = set()

    async def run(
        request: pb.ModelInferRequest, after: asyncio.Future[None] | None, done: asyncio.Future[None]
    ) -> None:
        try:
            if after is not None:
                await after  # the sequence's previous request (it never fails: failures are responses)
            try:
                response = pb.ModelStreamInferResponse(infer_response=await handle(request))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                response = error_response(request, describe(exc))
            ready.put_nowait(response)
        finally:
            done.set_result(None)

    async def read() -> None:
        try:
            async for request in requests:
                await slots.acquire()
                key = sequence_key(request)
                after = last_of.get(key) if key is not None else None
                done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                if key is not None:
                    last_of[key] = done
                    done.add_done_callback(functools.partial(_forget, last_of, key))
                task = asyncio.create_task(run(request, after, done))
                running.add(task)
                task.add_done_callback(running.discard)
            while running:  # the client has sent its last request: answer the ones still running, then end
                await asyncio.wait(set(running))
        finally:
            ready.put_nowait(None)  # the end of the responses (`await reader` then raises what stopped it, if any)

    reader = asyncio.create_task(read())
    try:
        while (response := await ready.get()) is not None:
            yield response
            slots.release()
        await reader
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        for task in running:  # the call ended early (cancelled, or the connection lost): drop its requests
            task.cancel()


def _forget(last_of: dict[Hashable, asyncio.Future[None]], key: Hashable, done: asyncio.Future[None]) -> None:
    """Drop a sequence's entry once its latest request is done (a later request replaced it otherwise)."""
    if last_of.get(key) is done:
        del last_of[key]
