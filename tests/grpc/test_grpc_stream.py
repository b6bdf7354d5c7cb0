"""`serve_stream` alone, with a fake handler: the order within a sequence, concurrency across sequences, failures
as error responses, the in-flight bound, and the end of the call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import pytest

from rnnserve.grpc.protos import grpc_service_pb2 as pb
from rnnserve.grpc.stream import sequence_key, serve_stream


def request(request_id: str, sequence_id: int | str | None = None, model: str = "m") -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model, id=request_id)
    if isinstance(sequence_id, int):
        message.parameters["sequence_id"].int64_param = sequence_id
    elif isinstance(sequence_id, str):
        message.parameters["sequence_id"].string_param = sequence_id
    return message


async def feed(
    requests: Iterable[pb.ModelInferRequest], gate: asyncio.Event | None = None
) -> AsyncIterator[pb.ModelInferRequest]:
    for message in requests:
        yield message
    if gate is not None:  # hold the client's side open until the test says
        await gate.wait()


def describe(exc: BaseException) -> str:
    return f"failed: {exc}"


async def collect(responses: AsyncIterator[pb.ModelStreamInferResponse]) -> list[pb.ModelStreamInferResponse]:
    return [response async for response in responses]


def test_sequence_keys() -> None:
    assert sequence_key(request("a")) is None
    assert sequence_key(request("a", 0)) is None and sequence_key(request("a", "")) is None
    assert sequence_key(request("a", 5)) == sequence_key(request("b", 5))
    assert sequence_key(request("a", 5)) != sequence_key(request("a", "5"))  # int and string ids differ
    assert sequence_key(request("a", 5)) != sequence_key(request("a", 5, model="other"))
    big = pb.ModelInferRequest(model_name="m")
    big.parameters["sequence_id"].uint64_param = 5
    assert sequence_key(big) == sequence_key(request("a", 5))  # int64 or uint64: the same id


async def test_a_sequence_runs_in_order_while_others_overtake_it() -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def handle(message: pb.ModelInferRequest) -> pb.ModelInferResponse:
        started.append(message.id)
        if message.id == "slow-1":
            await release.wait()
        return pb.ModelInferResponse(id=message.id)

    messages = [request("slow-1", 1), request("slow-2", 1), request("other", 2), request("free")]
    responses = serve_stream(feed(messages), handle, describe, max_in_flight=8)
    first = await anext(responses)
    second = await anext(responses)
    assert {first.infer_response.id, second.infer_response.id} == {"other", "free"}
    assert "slow-2" not in started  # waits for slow-1, of the same sequence
    release.set()
    rest = await collect(responses)
    assert [r.infer_response.id for r in rest] == ["slow-1", "slow-2"]


async def test_a_failure_is_an_error_response_and_the_stream_goes_on() -> None:
    async def handle(message: pb.ModelInferRequest) -> pb.ModelInferResponse:
        if message.id == "bad":
            raise ValueError("no good")
        return pb.ModelInferResponse(id=message.id)

    messages = [request("a", "s"), request("bad", "s"), request("c", "s")]
    responses = await collect(serve_stream(feed(messages), handle, describe, max_in_flight=8))
    assert [(r.infer_response.id, r.error_message) for r in responses] == [
        ("a", ""),
        ("bad", "failed: no good"),
        ("c", ""),
    ]
    assert responses[1].infer_response.parameters["sequence_id"].string_param == "s"


async def test_no_more_than_max_in_flight_requests_are_read_ahead() -> None:
    release = asyncio.Event()
    handled: list[str] = []

    async def handle(message: pb.ModelInferRequest) -> pb.ModelInferResponse:
        handled.append(message.id)
        await release.wait()
        return pb.ModelInferResponse(id=message.id)

    responses = serve_stream(feed(request(str(i)) for i in range(10)), handle, describe, max_in_flight=3)
    waiting = asyncio.ensure_future(anext(responses))
    await asyncio.sleep(0.05)
    assert len(handled) == 3 and not waiting.done()
    release.set()
    assert (await waiting).infer_response.id in {"0", "1", "2"}
    rest = await collect(responses)
    assert len(rest) == 9 and len(handled) == 10


async def test_the_responses_end_after_the_last_request_is_answered() -> None:
    gate = asyncio.Event()

    async def handle(message: pb.ModelInferRequest) -> pb.ModelInferResponse:
        return pb.ModelInferResponse(id=message.id)

    responses = serve_stream(feed([request("a")], gate), handle, describe, max_in_flight=4)
    assert (await anext(responses)).infer_response.id == "a"
    ending = asyncio.ensure_future(anext(responses))
    await asyncio.sleep(0.05)
    assert not ending.done()  # the client may still send more
    gate.set()
    with pytest.raises(StopAsyncIteration):
        await ending


async def test_a_broken_request_stream_ends_the_call_and_cancels_what_runs() -> None:
    cancelled = asyncio.Event()

    async def handle(message: pb.ModelInferRequest) -> pb.ModelInferResponse:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return pb.ModelInferResponse(id=message.id)

    async def broken() -> AsyncIterator[pb.ModelInferRequest]:
        yield request("a", 1)
        await asyncio.sleep(0.01)
        raise ConnectionError("connection lost")

    with pytest.raises(ConnectionError):
        await collect(serve_stream(broken(), handle, describe, max_in_flight=4))
    await asyncio.wait_for(cancelled.wait(), 1)
