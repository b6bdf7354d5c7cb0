"""What the sync and asyncio clients share, without I/O: the model signatures requests are encoded against,
requests as bytes (binary tensors by default, JSON where binary cannot carry them), responses back to numpy,
WebSocket frames, and the retry policy.

Binary tensors (docs/API.md, "Binary tensors"): a body of every input's raw little-endian bytes in signature order
(float32; int64 for token ids) with `X-Shape: B,T,F` (`name=B,T,F;name2=B,T` for several inputs), options as `X-`
headers; the reply's float32 bytes are described by `X-Tensors: name=B,T,U;states[0]=B,U` and `X-Step`.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import numpy as np
import orjson

from rnnserve.client import errors

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"

WIRE_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "int64": np.dtype("<i8")}
"""The little-endian dtype each signature dtype travels as in binary bodies and frames."""
_KINDS = {"float32": "fiu", "int64": "iu"}
"""The numpy kinds a caller's array may have for binary to carry it as that signature dtype unchanged."""
_FLOAT32 = np.dtype("<f4")
_STEP = 8  # a binary stream reply starts with the step, an unsigned 64-bit little-endian integer

ArrayLike = Any
"""A numpy array, or nested lists of numbers."""
Inputs = Any
"""One array (the model's only input) or a mapping of arrays by input name."""


# ---- what the server describes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """One input, output or state of a model: `shape` has None for a free dimension (batch, time)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TensorSpec:
        return cls(str(d["name"]), tuple(d.get("shape") or ()), str(d.get("dtype", "float32")))


@dataclass(frozen=True)
class ModelInfo:
    """A served model as `GET /v1/models/{model}` describes it (`raw` holds every field)."""

    name: str
    status: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    states: tuple[TensorSpec, ...]
    time_major: bool
    sessions: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelInfo:
        specs = [tuple(TensorSpec.from_json(t) for t in d.get(key) or ()) for key in ("inputs", "outputs", "states")]
        return cls(
            name=str(d["name"]),
            status=str(d.get("status", "ready")),
            inputs=specs[0],
            outputs=specs[1],
            states=specs[2],
            time_major=bool(d.get("time_major", False)),
            sessions=bool(d.get("sessions", bool(specs[2]))),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Result:
    """What predict and step answer: outputs by name in signature order, the states when asked for
    (`return_state=True`), and for a step the session's step after it."""

    outputs: dict[str, np.ndarray]
    states: list[np.ndarray] | None = None
    step: int | None = None

    @property
    def output(self) -> np.ndarray:
        """The only output (`ValueError` for a model with several: use `outputs[name]`)."""
        if len(self.outputs) != 1:
            raise ValueError(f"the model has {len(self.outputs)} outputs {list(self.outputs)}: use outputs[name]")
        return next(iter(self.outputs.values()))


@dataclass(frozen=True)
class SessionInfo:
    """A session as the server holds it: `states` (one array per state) only from `GET /v1/sessions/{id}`."""

    session_id: str
    model: str
    batch_size: int
    step: int
    expires_at: str
    states: list[np.ndarray] | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SessionInfo:
        states = d.get("states")
        return cls(
            session_id=str(d["session_id"]),
            model=str(d["model"]),
            batch_size=int(d["batch_size"]),
            step=int(d["step"]),
            expires_at=str(d.get("expires_at", "")),
            states=None if states is None else [np.asarray(s, dtype=np.float32) for s in states],
        )


# ---- the retry policy ------------------------------------------------------------------------------------------------


Resend = Literal["any", "connect"]
"""When a failed request may be sent again: `any` failure (reads, predict, a step with `seq`, reset, delete), or
only when it cannot have reached the server (`connect`: creating a session, which a resend would do twice)."""


@dataclass(frozen=True)
class Retry:
    """Retries of a request that got no answer (connection errors, timeouts) or one of `statuses` (503: the
    server did nothing). Waits grow exponentially from `backoff_s` (with jitter, at most `max_backoff_s`); a
    `Retry-After` header is waited exactly, unless it exceeds `max_retry_after_s`, which ends the retries."""

    retries: int = 5
    backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    max_retry_after_s: float = 60.0
    statuses: frozenset[int] = frozenset({503})

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait after failed attempt number `attempt` (0 = the first), None when no retry is left."""
        if attempt >= self.retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_s else None
        base = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        jittered: float = base * (0.5 + random.random() / 2)  # noqa: S311 (jitter, not cryptography)
        return jittered


NO_RETRY = Retry(retries=0)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """A `Retry-After` value in seconds (delay-seconds or an HTTP-date), None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class Call:
    """One HTTP request, as sent (and sent again, byte for byte, on a retry). `done_if_resent` are statuses that
    mean success when they answer a resend after a lost reply (404 for a DELETE whose first try went through)."""

    method: str
    path: str
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    resend: Resend = "any"
    done_if_resent: frozenset[int] = frozenset()


class Attempts:
    """The retry decisions for one call, shared by the sync and asyncio clients: each outcome gives the seconds
    to wait before the next try, or ends the call (a success, or the exception to raise)."""

    def __init__(self, retry: Retry, call: Call) -> None:
        self.retry = retry
        self.call = call
        self.attempt = 0
        self.lost = False  # an earlier try got no answer: it may have been applied

    def failed(self, exc: httpx.TransportError) -> float:
        """No answer: the wait before resending, else `ConnectionFailed`."""
        resendable = self.call.resend == "any" or isinstance(exc, _NOT_SENT)
        delay = self.retry.delay(self.attempt) if resendable else None
        if delay is None:
            tries = self.attempt + 1
            raise errors.ConnectionFailed(
                f"{self.call.method} {self.call.path}: no answer after {tries} tr{'y' if tries == 1 else 'ies'}: "
                f"{exc!r}"
            ) from exc
        self.lost = True
        self.attempt += 1
        return delay

    def answered(self, status: int, headers: Mapping[str, str], body: bytes) -> float | None:
        """None for a success; the wait before retrying a 503 (`Retry-After` honoured); else the `ApiError`."""
        if status < 400 or (self.lost and status in self.call.done_if_resent):
            return None
        delay = None
        if status in self.retry.statuses:
            delay = self.retry.delay(self.attempt, retry_after(headers.get("retry-after")))
        if delay is None:
            raise errors.from_response(status, headers.get("content-type", ""), body)
        self.attempt += 1
        return delay


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Failures after which the request surely did not reach the server."""


# ---- requests ------------------------------------------------------------------------------------------------------


def _named(model: ModelInfo, inputs: Inputs) -> dict[str, Any] | None:
    """The inputs by signature name, in signature order; None when they do not match the signature (the server's
    JSON path then says what is wrong)."""
    names = [t.name for t in model.inputs]
    if isinstance(inputs, Mapping):
        if sorted(map(str, inputs)) != sorted(names):
            return None
        return {name: inputs[name] for name in names}
    if len(names) != 1:
        return None
    return {names[0]: inputs}


def binary_inputs(model: ModelInfo, inputs: Inputs) -> tuple[bytes, str] | None:
    """(raw bytes, X-Shape) of inputs that binary carries exactly, else None."""
    named = _named(model, inputs)
    if named is None:
        return None
    blobs: list[bytes] = []
    shapes: list[str] = []
    for spec in model.inputs:
        wire = WIRE_DTYPES.get(spec.dtype)
        array = np.asarray(named[spec.name])
        if wire is None or array.dtype.kind not in _KINDS[spec.dtype] or array.ndim == 0:
            return None
        blobs.append(np.ascontiguousarray(array, dtype=wire).tobytes())
        shapes.append(f"{spec.name}={','.join(map(str, array.shape))}")
    shape = shapes[0].partition("=")[2] if len(shapes) == 1 else ";".join(shapes)
    return b"".join(blobs), shape


def json_value(value: ArrayLike) -> Any:
    """A value orjson writes: contiguous native arrays (floats as float32, as the server computes), or as given."""
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
        dtype = np.dtype(np.float32) if array.dtype.kind == "f" else array.dtype.newbyteorder("=")
        return np.ascontiguousarray(array, dtype=dtype)
    return value


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def tensor_request(
    model: ModelInfo,
    inputs: Inputs,
    *,
    binary: bool,
    mask: ArrayLike | None = None,
    initial_state: Sequence[ArrayLike] | None = None,
    seq: int | None = None,
    return_state: bool = False,
    time_major: bool | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a predict or step: raw bytes with X- headers when `binary` and binary carries the
    request (no mask, no initial_state, inputs of the signature's dtypes), else JSON; the reply is asked as raw
    bytes whenever `binary`."""
    accept = OCTET_STREAM if binary else JSON
    raw = binary_inputs(model, inputs) if binary and mask is None and initial_state is None else None
    if raw is not None:
        body, shape = raw
        headers = {"Content-Type": OCTET_STREAM, "Accept": accept, "X-Shape": shape}
        if seq is not None:
            headers["X-Seq"] = str(seq)
        if return_state:
            headers["X-Return-State"] = "true"
        if time_major is not None:
            headers["X-Time-Major"] = _flag(time_major)
        return body, headers
    obj: dict[str, Any] = {"inputs": json_value(inputs)}
    if mask is not None:
        obj["mask"] = json_value(mask)
    if initial_state is not None:
        obj["initial_state"] = [json_value(s) for s in initial_state]
    if seq is not None:
        obj["seq"] = seq
    if return_state:
        obj["return_state"] = True
    if time_major is not None:
        obj["time_major"] = time_major
    return dumps(obj), {"Content-Type": JSON, "Accept": accept}


def states_body(key: str, states: Sequence[ArrayLike] | None) -> dict[str, Any]:
    return {} if states is None else {key: [json_value(s) for s in states]}


# ---- responses -----------------------------------------------------------------------------------------------------


def parse_tensors(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """`X-Tensors: name=B,T,U;states[0]=B,U` -> [(name, shape), ...]."""
    described = []
    for part in text.split(";"):
        name, _, dims = part.strip().rpartition("=")
        shape = tuple(int(d) for d in dims.split(",")) if dims.strip() else ()
        described.append((name, shape))
    return described


def split_tensors(
    body: bytes, described: Sequence[tuple[str, tuple[int, ...]]]
) -> tuple[dict[str, np.ndarray], list[np.ndarray] | None]:
    """Raw float32 bytes cut into the described tensors: outputs by name, then `states[i]`."""
    outputs: dict[str, np.ndarray] = {}
    states: list[np.ndarray] = []
    offset = 0
    for name, shape in described:
        count = math.prod(shape)
        if offset + count * _FLOAT32.itemsize > len(body):
            raise errors.ClientError(f"the reply has {len(body)} bytes, fewer than its tensors {list(described)}")
        array = np.frombuffer(body, dtype=_FLOAT32, count=count, offset=offset).reshape(shape)
        offset += count * _FLOAT32.itemsize
        if name.startswith("states[") and name.endswith("]"):
            states.append(array)
        else:
            outputs[name] = array
    if offset != len(body):
        raise errors.ClientError(f"the reply has {len(body)} bytes, its tensors {list(described)} take {offset}")
    return outputs, states or None


def json_result(model: ModelInfo, obj: Mapping[str, Any]) -> Result:
    """A JSON reply `{"outputs": array | {name: array}, "states"?, "step"?}`."""
    value = obj.get("outputs")
    if isinstance(value, Mapping):
        outputs = {str(k): np.asarray(v, dtype=np.float32) for k, v in value.items()}
    else:
        name = model.outputs[0].name if model.outputs else "output"
        outputs = {name: np.asarray(value, dtype=np.float32)}
    states = obj.get("states")
    step = obj.get("step")
    return Result(
        outputs,
        None if states is None else [np.asarray(s, dtype=np.float32) for s in states],
        step if isinstance(step, int) else None,
    )


def http_result(model: ModelInfo, headers: Mapping[str, str], body: bytes) -> Result:
    """A predict or step reply, raw bytes (X-Tensors, X-Step) or JSON (`headers` with lower-case names, as httpx
    looks them up)."""
    if headers.get("content-type", "").startswith(OCTET_STREAM):
        outputs, states = split_tensors(body, parse_tensors(headers.get("x-tensors", "")))
        step = headers.get("x-step")
        return Result(outputs, states, None if step is None else int(step))
    return json_result(model, orjson.loads(body))


# ---- the WebSocket stream ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sent:
    """What decoding the reply to one message needs: binary replies carry no shapes."""

    binary: bool
    batch: int
    timesteps: int


class StreamCodec:
    """Messages of `WS /v1/sessions/{id}/stream` and their replies, in order.

    The stream runs on binary frames when `binary` and the first chunk allows it (a single input of the
    signature's dtype, no mask, outputs whose shapes the frame's length determines): the connection then declares
    `?shape=` from that chunk. A later chunk binary cannot carry (a mask, another batch or feature size) goes as a
    JSON text message on the same stream. Replies come in the order of the messages.
    """

    def __init__(self, model: ModelInfo, *, binary: bool, return_state: bool, time_major: bool | None) -> None:
        self.model = model
        self.allow_binary = binary
        self.return_state = return_state
        self.time_major = time_major
        self.layout_time_major = model.time_major if time_major is None else time_major
        self.shape: tuple[int, ...] | None = None  # declared at connect: the stream takes binary frames
        self.pending: deque[_Sent] = deque()

    @property
    def time_axis(self) -> int:
        return 0 if self.layout_time_major else 1

    def query(self, first: Inputs, mask: ArrayLike | None) -> str:
        """The connect URL's query string ("" or "?shape=...") for a stream whose first message is `first`."""
        if not self.allow_binary or mask is not None or isinstance(first, Mapping) or not self._decodable():
            return ""
        shape = tuple(np.shape(first))
        if len(shape) < 2 or binary_inputs(self.model, first) is None:
            return ""
        self.shape = shape
        query = f"?shape={','.join(map(str, shape))}"
        if self.return_state:
            query += "&return_state=true"
        if self.time_major is not None:
            query += f"&time_major={_flag(self.time_major)}"
        return query

    def _decodable(self) -> bool:
        """Whether binary replies can be cut into tensors: every output `[B, T, U]` or `[B, U]`, states `[B, U]`,
        with U known."""
        tensors = [*self.model.outputs, *(self.model.states if self.return_state else ())]
        return len(self.model.inputs) == 1 and all(
            len(t.shape) in (2, 3) and all(isinstance(d, int) for d in t.shape[2 if len(t.shape) == 3 else 1 :])
            for t in tensors
        )

    def encode(self, inputs: Inputs, mask: ArrayLike | None = None) -> str | bytes:
        """The message for one chunk (binary when the stream and the chunk allow it)."""
        array = None if isinstance(inputs, Mapping) else np.asarray(inputs)
        if self.shape is not None and mask is None and array is not None and self._fits(array.shape):
            raw = binary_inputs(self.model, array)
            if raw is not None:
                batch = array.shape[1 - self.time_axis]
                self.pending.append(_Sent(True, batch, array.shape[self.time_axis]))
                return raw[0]
        obj: dict[str, Any] = {"inputs": json_value(inputs)}
        if mask is not None:
            obj["mask"] = json_value(mask)
        if self.return_state:
            obj["return_state"] = True
        if self.time_major is not None:
            obj["time_major"] = self.time_major
        self.pending.append(_Sent(False, 0, 0))
        return dumps(obj).decode()

    def _fits(self, shape: tuple[int, ...]) -> bool:
        declared = self.shape
        assert declared is not None
        axis = self.time_axis
        return len(shape) == len(declared) and all(shape[i] == declared[i] for i in range(len(shape)) if i != axis)

    def decode(self, message: str | bytes) -> Result:
        """The reply to the oldest message not yet answered; a problem reply raises its `ApiError`."""
        sent = self.pending.popleft() if self.pending else _Sent(isinstance(message, bytes), 0, 0)
        if isinstance(message, str):
            obj = orjson.loads(message)
            if isinstance(obj, dict) and "outputs" not in obj and "status" in obj:
                raise errors.from_problem(obj)
            return json_result(self.model, obj)
        if len(message) < _STEP or not sent.binary:
            raise errors.ClientError(f"unexpected binary reply of {len(message)} bytes")
        step = int.from_bytes(message[:_STEP], "little")
        outputs, states = split_tensors(message[_STEP:], self._frame_tensors(sent))
        return Result(outputs, states, step)

    def _frame_tensors(self, sent: _Sent) -> list[tuple[str, tuple[int, ...]]]:
        def shape(spec: TensorSpec) -> tuple[int, ...]:
            if len(spec.shape) == 2:
                return (sent.batch, int(spec.shape[1] or 0))
            units = int(spec.shape[2] or 0)
            if self.layout_time_major:
                return (sent.timesteps, sent.batch, units)
            return (sent.batch, sent.timesteps, units)

        described = [(spec.name, shape(spec)) for spec in self.model.outputs]
        if self.return_state:
            described.extend((f"states[{i}]", shape(spec)) for i, spec in enumerate(self.model.states))
        return described


CLOSE_CODES: dict[int, type[errors.ApiError]] = {
    4404: errors.SessionNotFound,
    1008: errors.Unauthorized,
    1003: errors.InvalidInput,
    1011: errors.ServerError,
}
"""The stream's close codes (docs/API.md) -> the error they stand for."""


def closed_error(code: int | None, reason: str) -> errors.ClientError:
    """The exception for a stream that closed while a reply was expected."""
    cls = CLOSE_CODES.get(code or 0)
    if cls is not None:
        status = {errors.SessionNotFound: 404, errors.Unauthorized: 401, errors.InvalidInput: 400}.get(cls, 500)
        return cls({"type": "about:blank", "title": "Stream closed", "status": status, "detail": reason})
    return errors.StreamClosed(f"the stream closed (code {code}): {reason}", code, reason)


def ws_url(base_url: str, session_id: str) -> str:
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return f"{base}/v1/sessions/{session_id}/stream"
