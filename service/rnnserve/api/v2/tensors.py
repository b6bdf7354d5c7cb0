"""Open Inference Protocol (KServe v2) tensors: JSON `data` and the binary tensor data extension.

A request body is JSON, optionally followed by raw tensor bytes: the header `Inference-Header-Content-Length`
gives the JSON part's length, and each input whose `parameters.binary_data_size` is set takes that many bytes
of the rest, in input order (little-endian, row-major). Outputs come back as JSON `data`, or as binary when the
request asks for it per output (`outputs[i].parameters.binary_data`) or for all (`parameters.
binary_data_output`, which an output without its own `binary_data` follows). A body may be gzip or deflate
compressed (`Content-Encoding`, as tritonclient's `request_compression_algorithm` sends it; the edge,
`rnnserve.api.edge.decode_content`, undoes it).

Pure functions over bytes and numpy: errors are `InvalidInput` and the edge turns them
into the protocol's `{"error": ...}`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from rnnserve.errors import InvalidInput

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
_JSON_TYPES: dict[str, set[type]] = {
    "b": {bool},
    "i": {int},
    "u": {int},
    "f": {int, float},
}  # Python types JSON data may hold, by kind
_UNSUPPORTED_PARAMETERS = {
    "shared_memory_region": "the shared memory extensions are not supported: send the tensor in the body",
    "classification": "the classification extension is not supported: request the output itself",
}


def datatype_of(signature_dtype: str) -> str:
    """The protocol datatype of a signature dtype ("float32" -> "FP32")."""
    return _SIGNATURE_DATATYPES[signature_dtype]


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None  # None: as the request's `binary_data_output` says


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    datatypes: dict[str, str]
    outputs: list[RequestedOutput] | None  # None: every output
    parameters: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    binary_output_default: bool = False

    def output_is_binary(self, output: RequestedOutput | None) -> bool:
        """Whether an output goes back as binary (`output` None: one the request did not list)."""
        if output is None or output.binary is None:
            return self.binary_output_default
        return output.binary


# ---- requests -----------------------------------------------------------------------------------------------------


def decode_request(body: bytes, header_length: str | None) -> InferRequest:
    """Parse an infer request body (JSON, or JSON + binary tensor data)."""
    json_part, binary = _split(body, header_length)
    try:
        message = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request is not valid JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("inputs"), list) or not message["inputs"]:
        raise InvalidInput("the request needs a non-empty 'inputs' list")
    parameters = message.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be an object")
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise InvalidInput(f"parameters.binary_data_output must be true or false, got {binary_output!r}")
    inputs, datatypes = _inputs(message["inputs"], binary)
    request_id = message.get("id")
    return InferRequest(
        inputs=inputs,
        datatypes=datatypes,
        outputs=_requested_outputs(message.get("outputs")),
        parameters=parameters,
        id=request_id if isinstance(request_id, str) else None,
        binary_output_default=binary_output,
    )


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        size = int(header_length)
    except ValueError:
        raise InvalidInput(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 <= size <= len(body):
        raise InvalidInput(f"{HEADER_LENGTH} is {size} but the body has {len(body)} bytes")
    return body[:size], body[size:]


def _inputs(tensors: list[Any], binary: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for tensor in tensors:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise InvalidInput("each input needs a 'name'")
        name = tensor["name"]
        if name in inputs:
            raise InvalidInput(f"input {name!r} is given twice")
        datatype = tensor.get("datatype")
        if datatype not in DATATYPES:
            raise InvalidInput(f"input {name!r}: unsupported datatype {datatype!r}; use one of {sorted(DATATYPES)}")
        shape = _shape(tensor.get("shape"), name)
        parameters = _tensor_parameters(tensor, f"input {name!r}")
        size = parameters.get("binary_data_size")
        if size is not None:
            inputs[name] = _binary_tensor(binary, offset, size, datatype, shape, name)
            offset += size
        elif "data" in tensor:
            inputs[name] = _json_tensor(tensor["data"], DATATYPES[datatype], shape, name)
        else:
            raise InvalidInput(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
        datatypes[name] = datatype
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    return inputs, datatypes


def _tensor_parameters(tensor: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput(f"{what}: 'parameters' must be an object")
    for key, why in _UNSUPPORTED_PARAMETERS.items():
        if key in parameters:
            raise InvalidInput(f"{what}: parameters.{key}: {why}")
    return parameters


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise InvalidInput(f"input {name!r}: shape must be a list of non-negative integers, got {value!r}")
    return tuple(value)


def _binary_tensor(
    binary: bytes, offset: int, size: Any, datatype: str, shape: tuple[int, ...], name: str
) -> np.ndarray:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(binary):
        left = len(binary) - offset
        raise InvalidInput(f"input {name!r}: binary_data_size {size!r} exceeds the {left} bytes of binary data left")
    dtype = DATATYPES[datatype]
    expected = math.prod(shape) * dtype.itemsize
    if size != expected:
        raise InvalidInput(f"input {name!r}: shape {list(shape)} {datatype} needs {expected} bytes, got {size}")
    if dtype.kind == "b":  # any non-zero byte is true, as a C bool would read it
        raw = np.frombuffer(binary, dtype=np.uint8, count=size, offset=offset)
        flags: np.ndarray = (raw != 0).reshape(shape)
        return flags
    # A copy: aligned and writable whatever the offset, and independent of the request body.
    copied: np.ndarray = (
        np.frombuffer(binary, dtype=dtype, count=size // dtype.itemsize, offset=offset).reshape(shape).copy()
    )
    return copied


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
    count = math.prod(shape)
    if len(flat) != count:
        raise InvalidInput(f"input {name!r}: shape {list(shape)} needs {count} values, data has {len(flat)}")
    allowed = _JSON_TYPES[dtype.kind]
    found = set(map(type, flat))
    if not found <= allowed:
        datatype = _NUMPY_TO_DATATYPE[dtype]
        wrong = sorted(t.__name__ for t in found - allowed)
        raise InvalidInput(f"input {name!r}: {datatype} data cannot hold {', '.join(wrong)} values")
    try:
        with np.errstate(over="ignore"):  # a float beyond the range becomes inf: the model checks refuse it
            return np.asarray(flat, dtype=dtype).reshape(shape)
    except (OverflowError, ValueError) as exc:
        raise InvalidInput(f"input {name!r}: {exc}") from None


def _requested_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("'outputs' must be a list")
    requested: list[RequestedOutput] = []
    for output in value:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise InvalidInput("each requested output needs a 'name'")
        name = output["name"]
        if any(r.name == name for r in requested):
            raise InvalidInput(f"output {name!r} is requested twice")
        binary = _tensor_parameters(output, f"output {name!r}").get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise InvalidInput(f"output {name!r}: parameters.binary_data must be true or false, got {binary!r}")
        requested.append(RequestedOutput(name, binary))
    return requested


# ---- responses ----------------------------------------------------------------------------------------------------


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
        little = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        datatype = _NUMPY_TO_DATATYPE.get(little)
        if datatype is None:
            raise InvalidInput(f"output {name!r} has dtype {array.dtype}, which the protocol cannot carry")
        array = np.ascontiguousarray(array, dtype=little)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            raw = array.tobytes()
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
