"""The wire format alone: JSON and binary tensors in, JSON and binary tensors out, compressed bodies."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import numpy as np
import orjson
import pytest

from rnnserve.api.edge import decode_content
from rnnserve.api.v2.tensors import (
    DATATYPES,
    InferRequest,
    RequestedOutput,
    datatype_of,
    decode_request,
    encode_response,
)
from rnnserve.errors import InvalidInput, PayloadTooLarge


def body(inputs: list[dict[str, Any]], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": inputs, **extra})


def binary_body(arrays: dict[str, tuple[str, np.ndarray]], **extra: Any) -> tuple[bytes, str]:
    """A binary-extension body: JSON header, then each array's bytes in order; and the header length."""
    tensors = [
        {"name": name, "datatype": datatype, "shape": list(a.shape), "parameters": {"binary_data_size": a.nbytes}}
        for name, (datatype, a) in arrays.items()
    ]
    header = body(tensors, **extra)
    return header + b"".join(a.tobytes() for _, a in arrays.values()), str(len(header))


def test_json_tensors_flat_or_nested_become_arrays_of_their_datatype() -> None:
    request = decode_request(
        body(
            [
                {"name": "x", "datatype": "FP32", "shape": [1, 2, 3], "data": [0.5, 1, 2, 3, 4, 5]},
                {"name": "ids", "datatype": "INT64", "shape": [2, 2], "data": [[1, 2], [3, 2**62]]},
                {"name": "mask", "datatype": "BOOL", "shape": [2], "data": [True, False]},
                {"name": "big", "datatype": "UINT64", "shape": [1], "data": [2**64 - 1]},
            ],
            id="r1",
        ),
        None,
    )
    x, ids, mask, big = (request.inputs[n] for n in ("x", "ids", "mask", "big"))
    assert x.dtype == np.float32 and x.shape == (1, 2, 3) and x[0, 0, 0] == 0.5 and x[0, 1, 2] == 5
    assert ids.dtype == np.int64 and ids.tolist() == [[1, 2], [3, 2**62]]
    assert mask.dtype == np.bool_ and mask.tolist() == [True, False]
    assert big.dtype == np.uint64 and int(big[0]) == 2**64 - 1
    assert request.datatypes == {"x": "FP32", "ids": "INT64", "mask": "BOOL", "big": "UINT64"}
    assert request.id == "r1" and request.outputs is None and not request.binary_output_default


def test_binary_tensors_are_read_in_order_and_copied_aligned() -> None:
    mask = np.array([[True, False, True]])
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    raw, header_length = binary_body({"mask": ("BOOL", mask), "x": ("FP32", x)})  # x starts at an odd offset
    request = decode_request(raw, header_length)
    assert request.inputs["mask"].tolist() == mask.tolist()
    got = request.inputs["x"]
    np.testing.assert_array_equal(got, x)
    assert got.flags.aligned and got.flags.writeable and got.dtype == np.float32


def test_binary_bool_bytes_other_than_one_read_as_true() -> None:
    header = body([{"name": "m", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}}])
    request = decode_request(header + bytes([0, 1, 7]), str(len(header)))
    assert request.inputs["m"].tolist() == [False, True, True]


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]}, "needs 4 values, data has 3"),
        ({"name": "x", "datatype": "FP32", "shape": [2], "data": [1, "2"]}, "cannot hold str"),
        ({"name": "x", "datatype": "FP32", "shape": [2], "data": [1, True]}, "cannot hold bool"),
        ({"name": "x", "datatype": "FP32", "shape": [1], "data": [None]}, "cannot hold NoneType"),
        ({"name": "x", "datatype": "INT64", "shape": [1], "data": [1.5]}, "cannot hold float"),
        ({"name": "x", "datatype": "BOOL", "shape": [1], "data": [1]}, "cannot hold int"),
        ({"name": "x", "datatype": "UINT8", "shape": [1], "data": [300]}, "input 'x'"),
        ({"name": "x", "datatype": "INT64", "shape": [1], "data": [2**64 - 1]}, "input 'x'"),
        ({"name": "x", "datatype": "BYTES", "shape": [1], "data": ["a"]}, "unsupported datatype 'BYTES'"),
        ({"name": "x", "datatype": "FP32", "shape": [-1], "data": []}, "non-negative integers"),
        ({"name": "x", "datatype": "FP32", "shape": "2", "data": [1, 2]}, "shape must be a list"),
        ({"name": "x", "datatype": "FP32", "shape": [1]}, "neither 'data' nor"),
        ({"name": "x", "datatype": "FP32", "shape": [1], "data": 1.0}, "data must be a list"),
        ({"datatype": "FP32", "shape": [1], "data": [1]}, "needs a 'name'"),
        (
            {"name": "x", "datatype": "FP32", "shape": [1], "data": [1], "parameters": {"shared_memory_region": "r"}},
            "shared memory",
        ),
    ],
)
def test_bad_json_tensors_are_invalid_input_naming_the_problem(tensor: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        decode_request(body([tensor]), None)


def test_a_huge_declared_shape_is_refused_without_allocating() -> None:
    with pytest.raises(InvalidInput, match="needs 1000000000000000000000000 values"):
        decode_request(body([{"name": "x", "datatype": "FP32", "shape": [10**12, 10**12], "data": [1]}]), None)


@pytest.mark.parametrize(
    ("size", "sent", "header_length", "message"),
    [
        (24, 0, None, "exceeds the 0 bytes"),  # no header length: the whole body is JSON, no binary part
        (24, 20, "auto", "exceeds the 20 bytes"),
        (20, 20, "auto", "needs 24 bytes, got 20"),
        (24, 28, "auto", "4 bytes of binary data are not claimed"),
        (True, 24, "auto", "binary_data_size True"),
        (24, 24, "x", "must be an integer"),
        (24, 24, "100000", "but the body has"),
    ],
)
def test_bad_binary_tensors_are_invalid_input(size: Any, sent: int, header_length: str | None, message: str) -> None:
    header = body([{"name": "x", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": size}}])
    length = str(len(header)) if header_length == "auto" else header_length
    with pytest.raises(InvalidInput, match=message):
        decode_request(header + bytes(sent), length)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "non-empty 'inputs' list"),
        (b'{"inputs": []}', "non-empty 'inputs' list"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "parameters": 1}', "object"),
    ],
)
def test_bad_request_objects_are_invalid_input(message: bytes, expected: str) -> None:
    with pytest.raises(InvalidInput, match=expected):
        decode_request(message, None)


def test_a_tensor_given_twice_is_refused() -> None:
    tensor = {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}
    with pytest.raises(InvalidInput, match="given twice"):
        decode_request(body([tensor, tensor]), None)


def test_requested_outputs_follow_binary_data_output_unless_they_say_otherwise() -> None:
    tensor = {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}
    outputs = [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}, {"name": "c", "parameters": {}}]
    request = decode_request(body([tensor], outputs=outputs, parameters={"binary_data_output": True}), None)
    assert request.outputs == [RequestedOutput("a", None), RequestedOutput("b", False), RequestedOutput("c", None)]
    assert [request.output_is_binary(o) for o in request.outputs] == [True, False, True]
    assert request.output_is_binary(None) is True
    plain = InferRequest(inputs={}, datatypes={}, outputs=None)
    assert plain.output_is_binary(RequestedOutput("a", True)) and not plain.output_is_binary(None)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"outputs": {"name": "a"}}, "'outputs' must be a list"),
        ({"outputs": [{"name": "a"}, {"name": "a"}]}, "requested twice"),
        ({"outputs": [{"parameters": {}}]}, "needs a 'name'"),
        ({"outputs": [{"name": "a", "parameters": {"binary_data": 1}}]}, "binary_data must be true or false"),
        ({"outputs": [{"name": "a", "parameters": {"classification": 3}}]}, "classification"),
        ({"parameters": {"binary_data_output": "yes"}}, "binary_data_output must be true or false"),
    ],
)
def test_bad_output_requests_are_refused(extra: dict[str, Any], message: str) -> None:
    tensor = {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}
    with pytest.raises(InvalidInput, match=message):
        decode_request(body([tensor], **extra), None)


def test_json_response_carries_flat_data_shape_and_datatype() -> None:
    y = np.array([[0.1, 1 / 3], [2.5, -1e-8]], dtype=np.float32)
    raw, header_length = encode_response("m", "1", [("y", y, False)], "req", {"sequence_id": 2**64 - 1})
    assert header_length is None
    message = orjson.loads(raw)
    assert message["model_name"] == "m" and message["model_version"] == "1" and message["id"] == "req"
    assert message["parameters"] == {"sequence_id": 2**64 - 1}
    (out,) = message["outputs"]
    assert out["name"] == "y" and out["datatype"] == "FP32" and out["shape"] == [2, 2]
    np.testing.assert_array_equal(np.array(out["data"], dtype=np.float32).reshape(2, 2), y)  # float32 round trip


def test_binary_response_puts_each_binary_output_after_the_json_header() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1, 2], dtype=np.int64)
    c = np.array([[0.5]], dtype=np.float32)
    raw, header_length = encode_response("m", "1", [("a", a, True), ("b", b, False), ("c", c, True)])
    assert header_length is not None
    message = orjson.loads(raw[:header_length])
    sizes = [o.get("parameters", {}).get("binary_data_size") for o in message["outputs"]]
    assert sizes == [24, None, 4] and message["outputs"][1]["data"] == [1, 2]
    blob = raw[header_length:]
    np.testing.assert_array_equal(np.frombuffer(blob[:24], dtype="<f4").reshape(2, 3), a)
    np.testing.assert_array_equal(np.frombuffer(blob[24:], dtype="<f4"), c.reshape(-1))


def test_outputs_in_any_layout_or_byte_order_are_sent_little_endian_row_major() -> None:
    a = np.arange(6, dtype=">f4").reshape(2, 3).T  # big-endian and not C-contiguous
    raw, header_length = encode_response("m", "1", [("a", a, True), ("j", a, False)])
    assert header_length is not None
    message = orjson.loads(raw[:header_length])
    assert message["outputs"][0]["datatype"] == "FP32" and message["outputs"][0]["shape"] == [3, 2]
    np.testing.assert_array_equal(np.frombuffer(raw[header_length:], dtype="<f4").reshape(3, 2), a)
    assert message["outputs"][1]["data"] == a.reshape(-1).tolist()


def test_an_output_the_protocol_cannot_carry_is_refused() -> None:
    with pytest.raises(InvalidInput, match="cannot carry"):
        encode_response("m", "1", [("s", np.array(["a"]), False)])


def test_signature_dtypes_map_to_protocol_datatypes() -> None:
    assert [datatype_of(d) for d in ("float32", "int64", "bool")] == ["FP32", "INT64", "BOOL"]
    assert all(dtype.byteorder in "<|=" for dtype in DATATYPES.values())


@pytest.mark.parametrize(("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_bodies_are_expanded_within_the_limit(encoding: str, compress: Any) -> None:
    plain = b'{"inputs": []}' * 10
    assert decode_content(compress(plain), encoding, limit=len(plain)) == plain
    assert decode_content(compress(plain), encoding.upper(), limit=len(plain)) == plain
    with pytest.raises(PayloadTooLarge, match="exceeds the limit"):
        decode_content(compress(plain), encoding, limit=len(plain) - 1)
    with pytest.raises(InvalidInput, match="truncated"):
        decode_content(compress(plain)[:-6], encoding, limit=len(plain))
    with pytest.raises(InvalidInput, match="cannot be decompressed"):
        decode_content(b"plain text", encoding, limit=100)


def test_identity_bodies_pass_and_unknown_encodings_are_refused() -> None:
    assert decode_content(b"abc", None, limit=1) == b"abc"
    assert decode_content(b"abc", "identity", limit=1) == b"abc"
    with pytest.raises(InvalidInput, match="'br' is not supported"):
        decode_content(b"abc", "br", limit=10)
