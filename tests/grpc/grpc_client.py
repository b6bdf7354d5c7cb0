"""Helpers shared by the gRPC tests: the server's addresses, tritonclient.grpc calls, a stream that collects its
responses, tritonclient's generated stub for hand-made requests, and assertions on gRPC errors."""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from app_harness import ServerThread
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, np_to_triton_dtype


@dataclass
class Grpc:
    """A test server with its gRPC port."""

    http: ServerThread
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.http.url

    def stop(self) -> None:
        self.http.stop()


def inputs_of(arrays: Mapping[str, np.ndarray]) -> list[triton.InferInput]:
    tensors = []
    for name, array in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def infer(
    client: triton.InferenceServerClient,
    model: str,
    arrays: Mapping[str, np.ndarray],
    *,
    outputs: Sequence[str] | None = None,
    **kwargs: Any,
) -> triton.InferResult:
    """One ModelInfer call (raw contents, as tritonclient sends them); `outputs` None asks for every output."""
    requested = None if outputs is None else [triton.InferRequestedOutput(name) for name in outputs]
    return client.infer(model, inputs_of(arrays), outputs=requested, **kwargs)


def raises_status(call: Callable[[], Any], code: grpc.StatusCode, *, contains: str = "") -> InferenceServerException:
    """The call fails with gRPC status `code` and a message that mentions `contains`."""
    with pytest.raises(InferenceServerException) as caught:
        call()
    error = caught.value
    assert error.status() == str(code), f"{error.status()}: {error.message()}"
    assert contains.lower() in (error.message() or "").lower(), error.message()
    return error


@dataclass
class Streamed:
    """A stream's responses: results by request id (`order`: as they came), and the error messages, as they came
    (tritonclient hands an error response over without its request's id), with the ids of the requests that got
    no result (`failed`)."""

    results: dict[str, triton.InferResult] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def output(self, request_id: str, name: str) -> np.ndarray:
        assert request_id in self.results, self.errors.get(request_id, f"no response to {request_id}")
        return self.results[request_id].as_numpy(name)


@dataclass
class Request:
    """One `async_stream_infer` call."""

    request_id: str
    model: str
    arrays: Mapping[str, np.ndarray]
    outputs: Sequence[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)


def stream(client: triton.InferenceServerClient, requests: Sequence[Request], **stream_options: Any) -> Streamed:
    """Send `requests` on one ModelStreamInfer call, close it, and collect a response for each."""
    responses: queue.Queue[tuple[triton.InferResult | None, InferenceServerException | None]] = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)), **stream_options)
    try:
        for request in requests:
            requested = None if request.outputs is None else [triton.InferRequestedOutput(n) for n in request.outputs]
            client.async_stream_infer(
                request.model,
                inputs_of(request.arrays),
                outputs=requested,
                request_id=request.request_id,
                **request.options,
            )
    finally:
        client.stop_stream()  # waits for the server to answer everything and end the call
    streamed = Streamed()
    while not responses.empty():
        result, error = responses.get()
        if result is not None:
            request_id = result.get_response().id
            streamed.results[request_id] = result
            streamed.order.append(request_id)
        else:
            assert error is not None
            streamed.errors.append(error.message())
    streamed.failed = [r.request_id for r in requests if r.request_id not in streamed.results]
    return streamed


@dataclass
class Stub:
    """tritonclient's own generated stub on a channel, for requests tritonclient.grpc does not make."""

    address: str
    metadata: Sequence[tuple[str, str]] = ()

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(self.address)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)

    def infer(self, request: service_pb2.ModelInferRequest) -> service_pb2.ModelInferResponse:
        return self.stub.ModelInfer(request, metadata=self.metadata, timeout=30)

    def stream(self, requests: Sequence[service_pb2.ModelInferRequest]) -> list[service_pb2.ModelStreamInferResponse]:
        return list(self.stub.ModelStreamInfer(iter(requests), metadata=self.metadata, timeout=30))

    def close(self) -> None:
        self.channel.close()


TYPED_FIELDS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents", "BOOL": "bool_contents"}


def request_of(
    model: str,
    arrays: Mapping[str, np.ndarray],
    *,
    typed: bool,
    outputs: Sequence[str] = (),
    parameters: Mapping[str, tuple[str, Any]] | None = None,
    request_id: str = "",
) -> service_pb2.ModelInferRequest:
    """A ModelInferRequest made by hand: inputs as typed `contents` or as `raw_input_contents`; `parameters` as
    {name: (InferParameter field, value)}, e.g. {"sequence_id": ("uint64_param", 2**64 - 1)}."""
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    for name, array in arrays.items():
        datatype = np_to_triton_dtype(array.dtype)
        tensor = request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        if typed:
            getattr(tensor.contents, TYPED_FIELDS[datatype]).extend(array.reshape(-1).tolist())
        else:
            request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    for name in outputs:
        request.outputs.add(name=name)
    for key, (kind, value) in (parameters or {}).items():
        setattr(request.parameters[key], kind, value)
    return request


def typed_output(response: service_pb2.ModelInferResponse, name: str) -> np.ndarray:
    """An output sent as typed FP32 contents."""
    (tensor,) = [t for t in response.outputs if t.name == name]
    assert not response.raw_output_contents, "typed inputs get typed outputs"
    return np.array(tensor.contents.fp32_contents, dtype=np.float32).reshape(tuple(tensor.shape))


def raw_output(response: service_pb2.ModelInferResponse, name: str) -> np.ndarray:
    index = [t.name for t in response.outputs].index(name)
    tensor = response.outputs[index]
    return np.frombuffer(response.raw_output_contents[index], dtype="<f4").reshape(tuple(tensor.shape))


@contextlib.contextmanager
def stub_for(address: str, metadata: Sequence[tuple[str, str]] = ()) -> Iterator[Stub]:
    stub = Stub(address, metadata)
    try:
        yield stub
    finally:
        stub.close()
