"""Open Inference Protocol (KServe v2) tensors: JSON `data` and the binary tensor data extension.

A request body is JSON, optionally followed by raw tensor bytes: the header `Inference-Header-Content-Length`
gives the JSON part's length, and each input whose `parameters.binary_data_size` is set takes that many bytes
of the rest, in input order (little-endian, row-major). Outputs come back as JSON `data`, or as binary when the
request asks for it per output (`outputs[i].parameters.binary_data`) or for all (`parameters.
binary_data_output`). Pure functions over bytes and numpy: errors are `InvalidInput` and the route turns them
into the protocol's `{"error": ...}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from service.errors import InvalidInput

HEADER_LENGTH = "Inference-Header-Content-Length"

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_NUMPY_TO_DATATYPE = {dtype: name for name, dtype in DATATYPES.items()}
_SIGNATURE_DATATYPES = {"float32": "FP32", "int64": "INT64", "bool": "BOOL"}


def datatype_of(signature_dtype: str) -> str:
    """The protocol datatype of a signature dtype ("float32" -> "FP32")."""
    return _SIGNATURE_DATATYPES[signature_dtype]


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    datatypes: dict[str, str]
    outputs: list[RequestedOutput] | None  # None: every output
    parameters: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    binary_output_default: bool = False


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise InvalidInput(f"input {name!r}: shape must be a list of non-negative integers, got {value!r}")
    return tuple(value)


def _flatten(data: Any, name: str) -> list[Any]:
    """Row-major flattening of possibly nested JSON `data` (the protocol allows both forms)."""
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r}: data must be a list, got {type(data).__name__}")
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:  # iterative, so hostile nesting cannot exhaust the interpreter's stack
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _json_tensor(data: Any, dtype: np.dtype[Any], shape: tuple[int, ...], name: str) -> np.ndarray:
    flat = _flatten(data, name)
    count = int(np.prod(shape, dtype=np.int64))
    if len(flat) != count:
        raise InvalidInput(f"input {name!r}: shape {list(shape)} needs {count} values, data has {len(flat)}")
    if dtype.kind == "b":
        if not all(isinstance(v, bool) for v in flat):
            raise InvalidInput(f"input {name!r}: BOOL data must be true/false")
    elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
        raise InvalidInput(f"input {name!r}: data must be numbers for datatype {_NUMPY_TO_DATATYPE[dtype]}")
    elif dtype.kind in "iu" and not all(isinstance(v, int) for v in flat):
        raise InvalidInput(f"input {name!r}: data must be integers for datatype {_NUMPY_TO_DATATYPE[dtype]}")
    try:
        return np.asarray(flat, dtype=dtype).reshape(shape)
    except (OverflowError, ValueError) as exc:
        raise InvalidInput(f"input {name!r}: {exc}") from None


def decode_request(body: bytes, header_length: str | None) -> InferRequest:
    """Parse an infer request body (JSON, or JSON + binary tensor data)."""
    json_part, binary = body, b""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise InvalidInput(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 <= size <= len(body):
            raise InvalidInput(f"{HEADER_LENGTH} is {size} but the body has {len(body)} bytes")
        json_part, binary = body[:size], body[size:]
    try:
        message = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request is not valid JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("inputs"), list) or not message["inputs"]:
        raise InvalidInput("the request needs a non-empty 'inputs' list")
    parameters = message.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be an object")
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for tensor in message["inputs"]:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise InvalidInput("each input needs a 'name'")
        name = tensor["name"]
        if name in inputs:
            raise InvalidInput(f"input {name!r} is given twice")
        datatype = tensor.get("datatype")
        if datatype not in DATATYPES:
            raise InvalidInput(f"input {name!r}: unsupported datatype {datatype!r}; use one of {sorted(DATATYPES)}")
        dtype = DATATYPES[datatype]
        shape = _shape(tensor.get("shape"), name)
        tensor_parameters = tensor.get("parameters") or {}
        size = tensor_parameters.get("binary_data_size") if isinstance(tensor_parameters, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidInput(f"input {name!r}: binary_data_size {size!r} exceeds the {len(binary)} bytes sent")
            expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if size != expected:
                raise InvalidInput(f"input {name!r}: shape {list(shape)} {datatype} needs {expected} bytes, got {size}")
            inputs[name] = np.frombuffer(binary, dtype=dtype, count=expected // dtype.itemsize, offset=offset).reshape(
                shape
            )
            offset += size
        elif "data" in tensor:
            inputs[name] = _json_tensor(tensor["data"], dtype, shape, name)
        else:
            raise InvalidInput(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
        datatypes[name] = datatype
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    outputs = _requested_outputs(message.get("outputs"))
    request_id = message.get("id")
    return InferRequest(
        inputs=inputs,
        datatypes=datatypes,
        outputs=outputs,
        parameters=parameters,
        id=request_id if isinstance(request_id, str) else None,
        binary_output_default=parameters.get("binary_data_output") is True,
    )


def _requested_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("'outputs' must be a list")
    requested = []
    for output in value:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise InvalidInput("each requested output needs a 'name'")
        parameters = output.get("parameters") or {}
        requested.append(RequestedOutput(output["name"], bool(parameters.get("binary_data", False))))
    return requested


def encode_response(
    model_name: str,
    model_version: str,
    outputs: Sequence[tuple[str, np.ndarray, bool]],
    request_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length (for `HEADER_LENGTH`)."""
    tensors = []
    blobs: list[bytes] = []
    for name, array, binary in outputs:
        array = np.ascontiguousarray(array)
        datatype = _NUMPY_TO_DATATYPE.get(
            array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        )
        if datatype is None:
            raise InvalidInput(f"output {name!r} has dtype {array.dtype}, which the protocol cannot carry")
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = array.reshape(-1)
        tensors.append(tensor)
    message: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": tensors}
    if request_id is not None:
        message["id"] = request_id
    if parameters:
        message["parameters"] = dict(parameters)
    header = orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
