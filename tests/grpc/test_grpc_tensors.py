"""`rnnserve.grpc.tensors` alone: typed and raw contents of every datatype, parameters both ways, and the errors
that name what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from rnnserve.errors import InvalidInput
from rnnserve.grpc.protos import grpc_service_pb2 as pb
from rnnserve.grpc.tensors import (
    CONTENTS_FIELDS,
    decode_request,
    encode_response,
    parameter_values,
    set_parameters,
)

SAMPLES = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 7, 255]], dtype=np.uint8),
    "UINT16": np.array([[0, 7, 65535]], dtype=np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1]], dtype=np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1]], dtype=np.uint64),
    "INT8": np.array([[-128, 0, 127]], dtype=np.int8),
    "INT16": np.array([[-1, 0, 1]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1]], dtype=np.int64),
    "FP32": np.array([[-1.5, 0.0, 3.25]], dtype=np.float32),
    "FP64": np.array([[-1.5, 0.0, 1e300]], dtype=np.float64),
}


def one_input(datatype: str, array: np.ndarray, *, raw: bool) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=array.shape)
    if raw:
        request.raw_input_contents.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
    else:
        getattr(tensor.contents, CONTENTS_FIELDS[datatype]).extend(array.reshape(-1).tolist())
    return request


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_decodes_typed_and_raw(datatype: str, raw: bool) -> None:
    decoded = decode_request(one_input(datatype, SAMPLES[datatype], raw=raw))
    array = decoded.inputs["x"]
    assert decoded.datatypes == {"x": datatype} and decoded.binary_output_default is raw
    np.testing.assert_array_equal(array, SAMPLES[datatype])
    assert array.dtype == SAMPLES[datatype].dtype and array.flags.writeable


def test_fp16_comes_raw_only() -> None:
    half = np.array([[1.0, 2.5]], dtype=np.float16)
    np.testing.assert_array_equal(decode_request(one_input("FP16", half, raw=True)).inputs["x"], half)
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP16", shape=[1, 2])
    with pytest.raises(InvalidInput, match="FP16 has no typed contents field: send it in raw_input_contents"):
        decode_request(request)


def test_a_request_that_names_no_outputs_gets_every_output_and_its_parameters_are_values() -> None:
    request = one_input("FP32", SAMPLES["FP32"], raw=True)
    request.id = "r1"
    set_parameters(request.parameters, {"sequence_id": 2**64 - 1, "sequence_start": True, "note": "x", "w": 0.5})
    decoded = decode_request(request)
    assert decoded.outputs is None and decoded.id == "r1"
    assert decoded.parameters == {"sequence_id": 2**64 - 1, "sequence_start": True, "note": "x", "w": 0.5}
    assert request.parameters["sequence_id"].WhichOneof("parameter_choice") == "uint64_param"
    small = pb.ModelInferRequest()
    set_parameters(small.parameters, {"sequence_id": 5})
    assert small.parameters["sequence_id"].WhichOneof("parameter_choice") == "int64_param"
    assert parameter_values({"unset": pb.InferParameter()}) == {}
    request.outputs.add(name="y")
    assert [o.name for o in decode_request(request).outputs or []] == ["y"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.ClearField("inputs"), "needs at least one input"),
        (lambda r: r.raw_input_contents.append(b"\0"), "raw_input_contents has 2 entries for 1 inputs"),
        (lambda r: r.inputs[0].contents.fp32_contents.append(1.0), "has contents, but the request has raw_input"),
        (lambda r: setattr(r.inputs[0], "name", ""), "each input needs a 'name'"),
        (
            lambda r: (r.inputs.add().CopyFrom(r.inputs[0]), r.raw_input_contents.append(r.raw_input_contents[0])),
            "input 'x' is given twice",
        ),
        (lambda r: setattr(r.inputs[0], "datatype", "BYTES"), "unsupported datatype 'BYTES'"),
        (lambda r: r.inputs[0].shape.__setitem__(0, -1), "shape must be a list of non-negative integers"),
        (lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 8), "needs 12 bytes of raw contents, got 8"),
        (lambda r: r.inputs[0].parameters["shared_memory_region"].string_param, "shared memory"),
        (lambda r: r.outputs.add(name=""), "each requested output needs a 'name'"),
        (lambda r: (r.outputs.add(name="y"), r.outputs.add(name="y")), "output 'y' is requested twice"),
        (lambda r: r.outputs.add(name="y").parameters["classification"].int64_param, "classification"),
    ],
)
def test_bad_requests_say_what_is_wrong(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    request = one_input("FP32", SAMPLES["FP32"], raw=True)
    edit(request)
    with pytest.raises(InvalidInput, match=message):
        decode_request(request)


def test_typed_contents_in_the_wrong_field_or_count() -> None:
    request = one_input("FP32", SAMPLES["FP32"], raw=False)
    request.inputs[0].contents.fp32_contents.pop()
    with pytest.raises(InvalidInput, match=r"shape \[1, 3\] needs 3 values, fp32_contents has 2$"):
        decode_request(request)
    misplaced = one_input("INT64", SAMPLES["INT64"], raw=False)
    misplaced.inputs[0].datatype = "FP32"
    with pytest.raises(InvalidInput, match="FP32 goes in fp32_contents, not int64_contents"):
        decode_request(misplaced)
    overflow = one_input("INT32", SAMPLES["INT32"], raw=False)
    overflow.inputs[0].datatype = "INT8"
    with pytest.raises(InvalidInput, match="input 'x'"):
        decode_request(overflow)


def test_responses_are_raw_or_typed() -> None:
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    h = np.ones((2, 1), dtype=np.float32)
    raw = encode_response("m", "1", [("y", y), ("h", h)], raw=True, request_id="r", parameters={"sequence_id": "s"})
    assert raw.id == "r" and [t.name for t in raw.outputs] == ["y", "h"] and list(raw.outputs[0].shape) == [2, 3]
    assert raw.raw_output_contents == [y.tobytes(), h.tobytes()] and not raw.outputs[0].HasField("contents")
    assert raw.parameters["sequence_id"].string_param == "s"
    typed = encode_response("m", "1", [("y", y)], raw=False)
    assert list(typed.outputs[0].contents.fp32_contents) == y.reshape(-1).tolist() and not typed.raw_output_contents
    assert typed.id == "" and not typed.parameters
    half = encode_response("m", "1", [("y", y.astype(np.float16))], raw=False)  # FP16 has no typed field
    assert half.outputs[0].datatype == "FP16" and half.raw_output_contents == [y.astype(np.float16).tobytes()]
    with pytest.raises(InvalidInput, match="cannot carry"):
        encode_response("m", "1", [("s", np.array(["a"]))], raw=True)
