"""`serve_stream` alone, with a fake handler (and a fake batcher): the order within a sequence, concurrency across
sequences, batches of what is ready, failures as error responses, the in-flight bound, and the end of the call."""

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


# ---- with a batcher -----------------------------------------------------------------------------------------------


class FakeBatcher:
    """Takes the requests whose id starts with "b" (any other runs on its own); records each batch it runs, and
    holds a batch until `release` is set (when given)."""

    def __init__(self, release: asyncio.Event | None = None, fail: str | None = None) -> None:
        self.release = release
        self.fail = fail  # a request id that fails (its answer is an exception); "all": the batch itself raises
        self.batches: list[list[str]] = []

    def prepare(self, message: pb.ModelInferRequest) -> pb.ModelInferRequest | None:
        if message.id == "explode":
            raise RuntimeError("prepare broke")  # the request then runs on its own
        return message if message.id.startswith("b") else None

    async def run(self, prepared: list[pb.ModelInferRequest]) -> list[pb.ModelStreamInferResponse | BaseException]:
        self.batches.append([m.id for m in prepared])
        if self.release is not None:
            await self.release.wait()
        if self.fail == "all":
            raise RuntimeError("the batch broke")
        return [
            ValueError(f"bad {m.id}") if m.id == self.fail else pb.ModelStreamInferResponse(infer_response=ok(m))
            for m in prepared
        ]


def ok(message: pb.ModelInferRequest) -> pb.ModelInferResponse:
    return pb.ModelInferResponse(id=message.id)


async def answer(message: pb.ModelInferRequest) -> pb.ModelInferResponse:
    await asyncio.sleep(0)
    return ok(message)


async def test_ready_requests_run_as_one_batch_while_others_run_on_their_own() -> None:
    release = asyncio.Event()
    batcher = FakeBatcher(release)
    messages = [request("b1", 1), request("b2", 2), request("solo", 3), request("b3", 3), request("free")]
    responses = serve_stream(feed(messages), answer, describe, max_in_flight=8, batcher=batcher)
    first = [(await anext(responses)).infer_response.id for _ in range(2)]
    assert sorted(first) == ["free", "solo"]  # not held behind the batch that runs
    assert batcher.batches == [["b1", "b2"]]  # b3 waits for "solo", of its sequence
    release.set()
    rest = [r.infer_response.id for r in await collect(responses)]
    assert sorted(rest) == ["b1", "b2", "b3"]
    assert batcher.batches == [["b1", "b2"], ["b3"]]


async def test_steps_arriving_while_a_batch_runs_make_the_next_batch() -> None:
    release = asyncio.Event()
    batcher = FakeBatcher(release)
    gate = asyncio.Event()

    async def requests() -> AsyncIterator[pb.ModelInferRequest]:
        yield request("b-a1", "a")
        await gate.wait()  # sent once the first batch runs
        for message in (request("b-b1", "b"), request("b-a2", "a"), request("b-c1", "c"), request("b-b2", "b")):
            yield message

    responses = serve_stream(requests(), answer, describe, max_in_flight=16, batcher=batcher)
    waiting = asyncio.ensure_future(anext(responses))
    await asyncio.sleep(0.01)
    assert batcher.batches == [["b-a1"]]
    gate.set()
    await asyncio.sleep(0.01)
    release.set()
    rest = [(await waiting).infer_response.id] + [r.infer_response.id for r in await collect(responses)]
    # one batch of everything ready, at most one request of each sequence in a batch, each sequence in order
    assert [sorted(batch) for batch in batcher.batches] == [["b-a1"], ["b-a2", "b-b1", "b-c1"], ["b-b2"]]
    for sequence in "abc":
        mine = [i for i in rest if i.startswith(f"b-{sequence}")]
        assert mine == sorted(mine)
    assert len(rest) == 5


async def test_a_sequence_keeps_its_order_across_batched_and_single_requests() -> None:
    batcher = FakeBatcher()
    messages = [request(i, "s") for i in ("b1", "one", "b2", "b3", "two", "b4")]
    responses = await collect(serve_stream(feed(messages), answer, describe, max_in_flight=8, batcher=batcher))
    assert [r.infer_response.id for r in responses] == ["b1", "one", "b2", "b3", "two", "b4"]
    assert batcher.batches == [["b1"], ["b2"], ["b3"], ["b4"]]


async def test_failures_in_a_batch_are_error_responses_and_the_stream_goes_on() -> None:
    batcher = FakeBatcher(fail="b2")
    messages = [request("b1", 1), request("b2", 2), request("b3", 2), request("explode", 4)]
    responses = await collect(serve_stream(feed(messages), answer, describe, max_in_flight=8, batcher=batcher))
    by_id = {r.infer_response.id: r.error_message for r in responses}
    assert by_id == {"b1": "", "b2": "failed: bad b2", "b3": "", "explode": ""}  # prepare's failure: run alone
    failed = next(r for r in responses if r.infer_response.id == "b2")
    assert failed.infer_response.parameters["sequence_id"].int64_param == 2
    broken = FakeBatcher(fail="all")
    responses = await collect(serve_stream(feed(messages[:2]), answer, describe, max_in_flight=8, batcher=broken))
    assert sorted((r.infer_response.id, r.error_message) for r in responses) == [
        ("b1", "failed: the batch broke"),
        ("b2", "failed: the batch broke"),
    ]


async def test_a_cancelled_stream_cancels_its_batch() -> None:
    cancelled = asyncio.Event()

    class Stuck(FakeBatcher):
        async def run(self, prepared: list[pb.ModelInferRequest]) -> list[pb.ModelStreamInferResponse | BaseException]:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return []

    responses = serve_stream(feed([request("b1", 1)], asyncio.Event()), answer, describe, 8, batcher=Stuck())
    waiting = asyncio.ensure_future(anext(responses))
    await asyncio.sleep(0.01)
    waiting.cancel()  # as grpc cancels the call's handler
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wait_for(cancelled.wait(), 1)
