"""Open Inference Protocol tensors over gRPC: `ModelInferRequest` -> the same `InferRequest` as /v2 HTTP decodes
(`rnnserve.api.v2.tensors`), and outputs -> `ModelInferResponse`.

An input's elements come either in `raw_input_contents` (one entry per input, in input order: row-major,
little-endian, no padding; what tritonclient sends) or in its own `contents`, in the repeated field of its
datatype (`fp32_contents` for FP32, `int64_contents` for INT64, `bool_contents` for BOOL, ...); a request uses one
form for all of its inputs. Outputs go back in the form the inputs came in: `raw_output_contents` after raw inputs,
typed `contents` after typed ones.

Pure functions over messages and numpy: errors are `InvalidInput`, with the messages of /v2 HTTP where the
check is the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rnnserve.api.v2.tensors import DATATYPES, InferRequest, RequestedOutput
from rnnserve.errors import InvalidInput
from rnnserve.grpc.protos import grpc_service_pb2 as pb

CONTENTS_FIELDS: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
"""Datatype -> the `InferTensorContents` field that holds it (FP16 has none: raw contents only)."""

_DATATYPE_OF_DTYPE = {dtype: name for name, dtype in DATATYPES.items()}
_UNSUPPORTED_PARAMETERS = {
    "shared_memory_region": "the shared memory extensions are not supported: send the tensor in the request",
    "classification": "the classification extension is not supported: request the output itself",
}
INT64_MAX = 2**63 - 1

Parameters = Mapping[str, pb.InferParameter]


# ---- parameters ---------------------------------------------------------------------------------------------------


def parameter_values(parameters: Parameters) -> dict[str, Any]:
    """A parameter map as plain values (bool, int, str, float), as /v2 HTTP reads them from JSON; a parameter
    with no value set is left out."""
    values: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is not None:
            values[key] = getattr(parameter, choice)
    return values


def set_parameters(target: Any, values: Mapping[str, Any]) -> None:
    """Write plain values into a parameter map: a bool as bool_param, an int as int64_param (uint64_param beyond
    2**63 - 1), a str as string_param, a float as double_param."""
    for key, value in values.items():
        parameter = target[key]
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int):
            if value > INT64_MAX:
                parameter.uint64_param = value
            else:
                parameter.int64_param = value
        elif isinstance(value, str):
            parameter.string_param = value
        else:
            parameter.double_param = float(value)


def _check_tensor_parameters(parameters: Parameters, what: str) -> None:
    for key, why in _UNSUPPORTED_PARAMETERS.items():
        if key in parameters:
            raise InvalidInput(f"{what}: parameters.{key}: {why}")


# ---- requests -----------------------------------------------------------------------------------------------------


def decode_request(request: pb.ModelInferRequest) -> InferRequest:
    """The request's inputs as arrays (checked against their declared datatype and shape), its requested outputs
    and parameters. Outputs are to go back raw when the inputs came raw (`InferRequest.binary_output_default`)."""
    if not request.inputs:
        raise InvalidInput("the request needs at least one input")
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: give one per input, "
            "in the order of 'inputs'"
        )
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        if not name:
            raise InvalidInput("each input needs a 'name'")
        if name in inputs:
            raise InvalidInput(f"input {name!r} is given twice")
        datatype = tensor.datatype
        if datatype not in DATATYPES:
            raise InvalidInput(f"input {name!r}: unsupported datatype {datatype!r}; use one of {sorted(DATATYPES)}")
        shape = _shape(tensor.shape, name)
        _check_tensor_parameters(tensor.parameters, f"input {name!r}")
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(
                    f"input {name!r} has contents, but the request has raw_input_contents: use one form for every input"
                )
            inputs[name] = _raw_tensor(raw[index], datatype, shape, name)
        else:
            inputs[name] = _typed_tensor(tensor.contents, datatype, shape, name)
        datatypes[name] = datatype
    return InferRequest(
        inputs=inputs,
        datatypes=datatypes,
        outputs=_requested_outputs(request.outputs) if request.outputs else None,  # none listed: every output
        parameters=parameter_values(request.parameters),
        id=request.id or None,
        binary_output_default=bool(raw),
    )


def _shape(dims: Sequence[int], name: str) -> tuple[int, ...]:
    if any(d < 0 for d in dims):
        raise InvalidInput(f"input {name!r}: shape must be a list of non-negative integers, got {list(dims)}")
    return tuple(dims)


def _raw_tensor(raw: bytes, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    dtype = DATATYPES[datatype]
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"input {name!r}: shape {list(shape)} {datatype} needs {expected} bytes of raw contents, got {len(raw)}"
        )
    if dtype.kind == "b":  # any non-zero byte is true, as a C bool would read it
        flags: np.ndarray = (np.frombuffer(raw, dtype=np.uint8) != 0).reshape(shape)
        return flags
    # A copy: writable, and independent of the request message.
    copied: np.ndarray = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return copied


def _typed_tensor(contents: pb.InferTensorContents, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise InvalidInput(f"input {name!r}: {datatype} has no typed contents field: send it in raw_input_contents")
    values = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        misplaced = [f for f in sorted(set(CONTENTS_FIELDS.values())) if f != field and getattr(contents, f)]
        where = f"; {datatype} goes in {field}, not {', '.join(misplaced)}" if misplaced else ""
        raise InvalidInput(
            f"input {name!r}: shape {list(shape)} needs {count} values, {field} has {len(values)}{where}"
        )
    try:
        return np.array(values, dtype=DATATYPES[datatype]).reshape(shape)
    except (OverflowError, ValueError) as exc:  # e.g. 300 in an INT8 tensor's int_contents
        raise InvalidInput(f"input {name!r}: {exc}") from None


def _requested_outputs(outputs: Sequence[pb.ModelInferRequest.InferRequestedOutputTensor]) -> list[RequestedOutput]:
    requested: list[RequestedOutput] = []
    for output in outputs:
        name = output.name
        if not name:
            raise InvalidInput("each requested output needs a 'name'")
        if any(r.name == name for r in requested):
            raise InvalidInput(f"output {name!r} is requested twice")
        _check_tensor_parameters(output.parameters, f"output {name!r}")
        requested.append(RequestedOutput(name, None))
    return requested


# ---- responses ----------------------------------------------------------------------------------------------------


def encode_response(
    model_name: str,
    model_version: str,
    outputs: Sequence[tuple[str, np.ndarray]],
    *,
    raw: bool,
    request_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    into: pb.ModelInferResponse | None = None,
) -> pb.ModelInferResponse:
    """A response with `outputs` as raw contents, or typed contents (raw anyway when an output's datatype has no
    typed field). `into`: an empty message to fill instead of a new one (a stream response's `infer_response`,
    which spares copying the response into it)."""
    response = pb.ModelInferResponse() if into is None else into
    response.model_name = model_name
    response.model_version = model_version
    response.id = request_id or ""
    if parameters:
        set_parameters(response.parameters, parameters)
    arrays = []
    add = response.outputs.add
    for name, array in outputs:
        datatype = _DATATYPE_OF_DTYPE.get(array.dtype)  # a little-endian (or native) dtype: as it is
        if datatype is None:
            little = array.dtype.newbyteorder("<")
            datatype = _DATATYPE_OF_DTYPE.get(little) if array.dtype.byteorder == ">" else None
            if datatype is None:
                raise InvalidInput(f"output {name!r} has dtype {array.dtype}, which the protocol cannot carry")
            array = array.astype(little)
        arrays.append((array, datatype))
        tensor = add()  # (fields set one by one: a third of the cost of add(name=..., ...))
        tensor.name = name
        tensor.datatype = datatype
        tensor.shape.extend(array.shape)
    if raw or any(datatype not in CONTENTS_FIELDS for _, datatype in arrays):
        contents = response.raw_output_contents
        for array, _ in arrays:
            contents.append(array.tobytes())  # row-major, whatever the array's own layout
    else:
        for tensor, (array, datatype) in zip(response.outputs, arrays, strict=True):
            getattr(tensor.contents, CONTENTS_FIELDS[datatype]).extend(array.reshape(-1).tolist())
    return response
