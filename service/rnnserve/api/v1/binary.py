"""Binary tensors on /v1: raw little-endian bytes instead of JSON lists, for step, predict and the stream.

Requests (`Content-Type: application/octet-stream`): the body is every input's raw bytes (float32; int64 for
token-id inputs), concatenated in signature order, in the request's layout. The shape comes as `X-Shape: B,T,F`
or `?shape=B,T,F` (`name=B,T,F;name2=B,T` for a model with several inputs). Options come as query parameters or
headers: `seq` / `X-Seq`, `return_state` / `X-Return-State`, `time_major` / `X-Time-Major` (true|false|1|0).

Responses (when the request was binary, or said `Accept: application/octet-stream`): the outputs' raw float32
bytes concatenated in signature order, then the states when `return_state`, described by `X-Tensors:
name=B,T,U;name2=B,U` (states are named `states[0]`, `states[1]`, ...) and, for a step, `X-Step: N`.

Stream (`WS /v1/sessions/{id}/stream?shape=B,T,F`): each binary frame is one chunk's raw input bytes; T may vary
per frame and is derived from the frame's length. The reply is a binary frame: the session's step after the chunk
as an 8-byte little-endian unsigned integer, then the outputs' raw bytes (and the states with `return_state=true`
at connect).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping
from urllib.parse import parse_qsl

import numpy as np
from starlette.types import Scope

from rnnserve.api.edge import Head, wanted_headers
from rnnserve.errors import InvalidInput
from rnnserve.inference import InferenceResult, PredictRequest, StepRequest, StepResult
from rnnserve.validation import RawTensors

Shapes = dict[str | None, tuple[int, ...]]

_FLOAT32_LE = np.dtype("<f4")
_STEP = struct.Struct("<Q")
_FRAME = struct.Struct("<QI")  # step, length of the X-Tensors value
_MAX_RANK = 8
_TRUE = frozenset(("true", "1", "yes"))
_FALSE = frozenset(("false", "0", "no"))

_OPTION_HEADERS = {
    b"x-shape": "shape",
    b"x-seq": "seq",
    b"x-return-state": "return_state",
    b"x-time-major": "time_major",
}
OPTIONS = ("shape", "seq", "return_state", "time_major")
"""Options a binary request may give as query parameters or as X- headers."""
HEADERS = wanted_headers(*_OPTION_HEADERS)
"""The headers a /v1 endpoint reads (`Head(scope, HEADERS)`): the edge's and the options'."""


# ---- requests -----------------------------------------------------------------------------------------------------


def options(scope: Scope, head: Head) -> dict[str, str]:
    """The binary request options, from the query string and the X- headers (both ways must agree)."""
    found: dict[str, str] = {}
    query = scope.get("query_string") or b""
    if query:
        found.update(
            (key, value) for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if key in OPTIONS
        )
    for header, key in _OPTION_HEADERS.items():
        value = head.get(header)
        if value is None:
            continue
        if key in found and found[key].strip() != value.strip():
            raise InvalidInput(f"{key} is {found[key]!r} in the query but {value!r} in the {header.decode()} header")
        found[key] = value
    return found


def parse_shapes(text: str | None) -> Shapes:
    """`B,T,F` (the only input) or `name=B,T,F;name2=B,T` (inputs by name)."""
    if text is None or not text.strip():
        raise InvalidInput(
            "a binary body needs its shape: send X-Shape: B,T,F (or ?shape=B,T,F; name=B,T,F;name2=B,T for "
            "several inputs)"
        )
    shapes: Shapes = {}
    for part in text.split(";"):
        name, sep, dims = part.rpartition("=")
        key = name.strip() if sep else None
        if key in shapes or (sep and not key):
            raise InvalidInput(f"shape {text!r} names an input twice or not at all")
        shapes[key] = _dims(dims, text)
    if None in shapes and len(shapes) > 1:
        raise InvalidInput(f"shape {text!r} mixes a bare shape with named ones")
    return shapes


def _dims(text: str, whole: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= _MAX_RANK or not all(p.isdigit() for p in parts):
        raise InvalidInput(f"shape {whole!r} must be comma-separated non-negative integers, e.g. 1,1,32")
    return tuple(int(p) for p in parts)


def parse_flag(options: Mapping[str, str], key: str) -> bool | None:
    value = options.get(key)
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidInput(f"{key} must be true or false, got {value[:40]!r}")


def parse_seq(options: Mapping[str, str]) -> int | None:
    value = options.get("seq")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise InvalidInput(f"seq must be an integer >= 0, got {value[:40]!r}")
    return int(value)


def step_request(body: bytes, options: Mapping[str, str], reply_binary: bool) -> StepRequest:
    """A binary step. Its digest covers the bytes, the shape, the options and the reply format, so only an
    identical request is answered from the retry cache (only a request with `seq` can be retried)."""
    shape_text = options.get("shape")
    seq = parse_seq(options)
    digest = None
    if seq is not None:
        digest = request_digest(body, b"bin", shape_text, options.get("seq"), options.get("time_major"),
                                options.get("return_state"), reply_binary)  # fmt: skip
    return StepRequest(
        inputs=RawTensors(body, parse_shapes(shape_text)),
        seq=seq,
        time_major=parse_flag(options, "time_major"),
        return_state=bool(parse_flag(options, "return_state")),
        digest=digest,
    )


def predict_request(body: bytes, options: Mapping[str, str]) -> PredictRequest:
    return PredictRequest(
        inputs=RawTensors(body, parse_shapes(options.get("shape"))),
        time_major=parse_flag(options, "time_major"),
        return_state=bool(parse_flag(options, "return_state")),
    )


def request_digest(body: bytes, kind: bytes, *parts: object) -> bytes:
    """A 16-byte digest of a request body and everything else that shapes its response."""
    digest = hashlib.blake2b(body, digest_size=16)
    digest.update(b"\0" + kind + repr(parts).encode())
    return digest.digest()


def stream_shape(options: Mapping[str, str], what: str = "the stream") -> tuple[int, ...]:
    """The `?shape=B,T,F` a binary stream declares at connect (one input; T is taken from each frame)."""
    shapes = parse_shapes(options.get("shape"))
    if None not in shapes:
        raise InvalidInput(f"{what} takes binary frames for single-input models: give ?shape=B,T,F")
    if len(shapes[None]) < 2:
        raise InvalidInput(f"{what} needs a shape with batch and time axes (B,T,F), got {options['shape']!r}")
    return shapes[None]


def frame_inputs(frame: bytes, shape: tuple[int, ...], time_axis: int, itemsize: int) -> RawTensors:
    """One binary frame as raw inputs: the declared shape with T derived from the frame's length, for an input
    whose values have `itemsize` bytes (4: float32, 8: int64 token ids)."""
    others = shape[:time_axis] + shape[time_axis + 1 :]
    step_bytes = math.prod(others) * itemsize
    if step_bytes == 0 or len(frame) % step_bytes:
        raise InvalidInput(
            f"a binary frame of {len(frame)} bytes is not a whole number of timesteps of {step_bytes} bytes "
            f"({'x'.join(map(str, others))} values of {itemsize} bytes each)"
        )
    return RawTensors(frame, {None: shape[:time_axis] + (len(frame) // step_bytes,) + shape[time_axis + 1 :]})


# ---- responses ----------------------------------------------------------------------------------------------------


def _tensors(result: InferenceResult | StepResult) -> list[tuple[str, np.ndarray]]:
    named = list(result.outputs.items())
    if result.states is not None:
        named.extend((f"states[{i}]", state) for i, state in enumerate(result.states))
    return named


def describe(named: list[tuple[str, np.ndarray]]) -> str:
    """The `X-Tensors` value: `name=B,T,U;name2=B,U`."""
    return ";".join(f"{name}={','.join(map(str, array.shape))}" for name, array in named)


def payload(named: list[tuple[str, np.ndarray]]) -> bytes:
    """The tensors' raw little-endian float32 bytes, concatenated."""
    if len(named) == 1:
        return np.ascontiguousarray(named[0][1], dtype=_FLOAT32_LE).tobytes()
    return b"".join(np.ascontiguousarray(array, dtype=_FLOAT32_LE).tobytes() for _, array in named)


def encode_result(result: InferenceResult) -> tuple[bytes, str]:
    """A predict response: (body, X-Tensors)."""
    named = _tensors(result)
    return payload(named), describe(named)


def encode_step(result: StepResult) -> bytes:
    """A step response as one value the retry cache can hold: step, X-Tensors and body (see `split_step`)."""
    named = _tensors(result)
    tensors = describe(named).encode()
    return _FRAME.pack(result.step, len(tensors)) + tensors + payload(named)


def split_step(blob: bytes) -> tuple[int, bytes, bytes]:
    """(step, X-Tensors, body) of what `encode_step` made."""
    step, length = _FRAME.unpack_from(blob)
    start = _FRAME.size
    return step, blob[start : start + length], blob[start + length :]


def encode_stream_step(result: StepResult) -> bytes:
    """A binary stream reply: the step as 8 little-endian bytes, then the outputs' (and states') bytes."""
    return _STEP.pack(result.step) + payload(_tensors(result))
