"""Client tensors -> numpy, checked against a model's signature.

Two stages, so every protocol shares the second:

1. decoding: `decode_array` turns a JSON nested list into an array of whatever numeric kind it holds, refusing
   strings, nulls, objects and ragged lists. Binary bodies (raw little-endian float32 / int64 bytes) arrive as
   `RawTensors`, typed by the signature itself in stage 2 (zero-copy views of the body);
2. checking: `check_inputs`, `check_mask` and `check_states` compare arrays with the `ModelSignature` (names,
   rank, feature dimensions, batch, timesteps, dtype, finiteness), cast them to the model's dtypes and move
   them into the model's own layout. Every failure is an `InvalidInput` (400) or `PayloadTooLarge` (413) whose
   message names the tensor and what was wrong.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from rnnserve.errors import InvalidInput, PayloadTooLarge
from rnnserve.signature import ModelSignature, TensorInfo


@dataclass(frozen=True)
class RawTensors:
    """A binary body not yet typed: every input's raw little-endian bytes, concatenated in signature order.

    `shapes` gives each input's shape in the request's layout, by input name; the key None stands for the model's
    only input. Each input's dtype is the signature's (float32, or int64 for token ids)."""

    data: bytes
    shapes: Mapping[str | None, tuple[int, ...]]


Tensors = np.ndarray | Mapping[str, np.ndarray] | RawTensors
"""What a request carries as `inputs`: one array (single-input models), arrays by input name, or a binary body."""

WIRE_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "int64": np.dtype("<i8")}
"""The little-endian dtype each signature dtype travels as in binary bodies."""

_INTEGER_KINDS = frozenset("iu")
_INT64_MAX = np.iinfo(np.int64).max
# Finite float64 values from here up round to Inf in float32 (half an ulp above float32's largest value).
_FLOAT32_LIMIT = float(np.finfo(np.float32).max) + 2.0**103
_max = np.maximum.reduce
# Below this sum of squares, every value is below float32's largest: one vdot (a third of the cost of abs + max on
# a step's few values) clears the common case, and NaN or Inf make the sum NaN or Inf, which fail the comparison.
_SQUARES_BOUND = float(np.finfo(np.float32).max) ** 2


@dataclass(frozen=True)
class Limits:
    max_timesteps: int
    max_batch: int


class CheckedInputs(NamedTuple):
    """Inputs in the model's own layout and dtypes, with the batch and time sizes they share (a tuple: made on
    every request, and a frozen dataclass costs three times as much to build)."""

    feeds: dict[str, np.ndarray]
    batch: int
    timesteps: int
    # with `state_inputs`: the states the request set through the signature's state inputs (every state, zeros
    # for those whose input it left out), None when it sent none of them
    states: list[np.ndarray] | None = None


# ---- stage 1: JSON -> numpy ---------------------------------------------------------------------------------------


def decode_array(value: Any, what: str, *, booleans: bool = True) -> np.ndarray:
    """A JSON nested list of numbers (or booleans) as an array; `what` names it in errors. `booleans` False: the
    caller knows the JSON held none (its text has no `true` or `false`), so numbers are not searched for them."""
    if not isinstance(value, list):
        raise InvalidInput(f"{what} must be a nested list of numbers, got {_json_type(value)}")
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"{what} is not a rectangular array (ragged or too deeply nested lists): {exc}") from None
    kind = array.dtype.kind
    if kind not in "fiub":
        if kind in "US":
            raise InvalidInput(f"{what} holds strings; tensors are nested lists of numbers")
        raise InvalidInput(f"{what} holds nulls, objects or integers beyond 64 bits; tensors are lists of numbers")
    if booleans and kind != "b" and _holds_booleans(value, array.ndim):
        raise InvalidInput(f"{what} mixes booleans with numbers; a tensor holds numbers (a mask: booleans, or 0/1)")
    return array


def _holds_booleans(value: list[Any], ndim: int) -> bool:
    """Whether a rectangular nested list (numpy read it as numbers) has a boolean among its leaves: numpy takes
    `true` as 1, which must not pass for a number. One C-level pass: `map(type)` over the flattened leaves."""
    leaves: Any = value
    for _ in range(ndim - 1):
        leaves = itertools.chain.from_iterable(leaves)
    return bool in set(map(type, leaves))


def _json_type(value: Any) -> str:
    names = {dict: "an object", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# ---- stage 2: checks against the signature ------------------------------------------------------------------------


def check_inputs(
    signature: ModelSignature,
    inputs: Tensors,
    *,
    time_major: bool | None,
    limits: Limits,
    batch: int | None = None,
    state_inputs: bool = False,
) -> CheckedInputs:
    """Check and convert a request's inputs. `time_major` is the request's layout (None = the model's own);
    `batch` the batch size the caller requires (a session's), else any batch the signature allows. With
    `state_inputs` (a predict), `inputs` may also hold the signature's `state_inputs` by name, as Keras'
    `model.predict([x, h0])` takes them; they come back as `CheckedInputs.states`."""
    given: dict[str, np.ndarray] = {}
    if state_inputs and signature.initial_state_inputs and isinstance(inputs, Mapping):
        names = set(signature.initial_state_inputs.values())
        given = {k: v for k, v in inputs.items() if k in names}
        if given:
            inputs = {k: v for k, v in inputs.items() if k not in names}
    arrays = _by_name(signature, inputs)
    model_time_major = signature.time_major
    swap = time_major is not None and time_major != model_time_major
    feeds: dict[str, np.ndarray] = {}
    sizes: tuple[int, int] | None = None
    for info in signature.inputs:
        array = arrays[info.name]
        if array.ndim != len(info.shape):
            _rank_error(info, array, time_major if time_major is not None else model_time_major)
        if swap:
            array = array.swapaxes(0, 1)
        shape = array.shape
        b, t = (shape[1], shape[0]) if model_time_major else (shape[0], shape[1])
        if sizes is None:
            sizes = (b, t)
        elif sizes != (b, t):
            raise InvalidInput(
                f"inputs disagree on (batch, timesteps): {signature.inputs[0].name!r} has {sizes}, "
                f"{info.name!r} has {(b, t)}"
            )
        for want, got in zip(info.shape[2:], shape[2:], strict=True):
            if want is not None and want != got:
                _features_error(info, array, model_time_major)
        feeds[info.name] = np.ascontiguousarray(_cast(info, array))
    assert sizes is not None  # a signature has at least one input
    b, t = sizes
    _check_batch(signature, b, batch, limits)
    _check_timesteps(t, limits)
    if given:
        return CheckedInputs(feeds, b, t, _states_from_inputs(signature, given, b))
    return CheckedInputs(feeds, b, t)


def _states_from_inputs(signature: ModelSignature, given: Mapping[str, np.ndarray], batch: int) -> list[np.ndarray]:
    """Every state of the signature: the one its state input sets when the request sent it, else zeros."""
    states = []
    for info in signature.states:
        name = signature.initial_state_inputs.get(info.name)
        if name is None or name not in given:
            states.append(np.zeros((batch, int(info.shape[-1] or 0)), dtype=np.float32))
            continue
        array = given[name]
        units = info.shape[-1]
        if array.shape != (batch, units):
            raise InvalidInput(
                f"input {name!r} feeds the initial state {info.name!r}: it must have shape [{batch}, {units}], "
                f"got {list(array.shape)}"
            )
        states.append(np.ascontiguousarray(_cast_float(name, array, "input {!r}")))
    return states


def check_mask(mask: np.ndarray, *, batch: int, timesteps: int, time_major: bool) -> np.ndarray:
    """A request mask as bool `(batch, time)`. It is `[B][T]`, or `[T][B]` when the request is time-major."""
    if mask.dtype.kind == "b":
        pass
    elif mask.dtype.kind in _INTEGER_KINDS and mask.size and ((mask == 0) | (mask == 1)).all():
        mask = mask.astype(bool)
    elif mask.size:
        raise InvalidInput(f"mask must hold booleans (or 0/1), got {mask.dtype.name} values")
    expected = (timesteps, batch) if time_major else (batch, timesteps)
    if mask.shape != expected:
        layout = "[T][B]" if time_major else "[B][T]"
        raise InvalidInput(f"mask must have shape {layout} = {list(expected)}, got {list(mask.shape)}")
    return np.ascontiguousarray(mask.T if time_major else mask, dtype=bool)


def check_states(signature: ModelSignature, states: Sequence[np.ndarray], *, batch: int) -> list[np.ndarray]:
    """Client-given states: one float32 `(batch, units)` array per state of the signature, in its order."""
    expected = signature.states
    if len(states) != len(expected):
        names = [s.name for s in expected]
        raise InvalidInput(
            f"expected {len(expected)} state arrays {names}, one [batch][units] array each; got {len(states)}"
        )
    checked = []
    for info, array in zip(expected, states, strict=True):
        units = info.shape[-1]
        if array.shape != (batch, units):
            raise InvalidInput(f"state {info.name!r} must have shape [{batch}, {units}], got {list(array.shape)}")
        checked.append(np.ascontiguousarray(_cast_float(info.name, array, "state {!r}")))
    return checked


def zero_states(signature: ModelSignature, batch: int) -> list[np.ndarray]:
    """Keras's initial (and reset) state: zeros."""
    return [np.zeros((batch, int(info.shape[-1] or 0)), dtype=np.float32) for info in signature.states]


def check_batch_size(signature: ModelSignature, batch: int, limits: Limits) -> None:
    """A session's batch size: >= 1, within the limit, and the model's fixed batch when it has one."""
    _check_batch(signature, batch, None, limits)


# ---- helpers ------------------------------------------------------------------------------------------------------


def _by_name(signature: ModelSignature, inputs: Tensors) -> Mapping[str, np.ndarray]:
    if isinstance(inputs, np.ndarray) and len(signature.inputs) == 1:  # the common case first
        return {signature.inputs[0].name: inputs}
    names = [info.name for info in signature.inputs]
    if isinstance(inputs, RawTensors):
        return decode_raw(signature, inputs)
    if isinstance(inputs, np.ndarray):
        if len(names) != 1:
            raise InvalidInput(
                f"model {signature.name!r} has {len(names)} inputs {names}: send an object keyed by their names"
            )
        return {names[0]: inputs}
    missing = [n for n in names if n not in inputs]
    unknown = [n for n in inputs if n not in names]
    if missing or unknown:
        state_inputs = [n for n in unknown if n in signature.initial_state_inputs.values()]
        hint = (
            f" ({state_inputs} set initial states: a session takes them as initial_state when it opens, or as "
            "states when it is reset)"
            if state_inputs
            else ""
        )
        raise InvalidInput(f"inputs must be keyed by {names}; missing {missing}, unknown {unknown}{hint}")
    return inputs


def decode_raw(signature: ModelSignature, raw: RawTensors) -> dict[str, np.ndarray]:
    """Views of a binary body as the signature's inputs, after checking that its length is exactly what the
    shapes and the inputs' dtypes need."""
    names = [info.name for info in signature.inputs]
    shapes = dict(raw.shapes)
    if None in shapes:
        if len(shapes) > 1 or len(names) != 1:
            raise InvalidInput(
                f"model {signature.name!r} has {len(names)} inputs {names}: give every input's shape by name, "
                "as name=B,T,F;name2=B,T"
            )
        shapes = {names[0]: shapes[None]}
    missing = [n for n in names if n not in shapes]
    unknown = [n for n in shapes if n not in names]
    if missing or unknown:
        raise InvalidInput(f"binary inputs must be shaped by name as {names}; missing {missing}, unknown {unknown}")
    layout: list[tuple[str, np.dtype[Any], int]] = []
    for info in signature.inputs:
        dtype = WIRE_DTYPES.get(info.dtype)
        if dtype is None:
            raise InvalidInput(f"input {info.name!r} has dtype {info.dtype!r}, which binary bodies do not carry")
        count = math.prod(shapes[info.name])
        layout.append((info.name, dtype, count))
    needed = sum(count * dtype.itemsize for _, dtype, count in layout)
    if needed != len(raw.data):
        described = "; ".join(f"{name}={','.join(map(str, shapes[name]))} as {dtype.name}" for name, dtype, _ in layout)
        raise InvalidInput(f"the binary body has {len(raw.data)} bytes, but {needed} are expected for {described}")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for name, dtype, count in layout:
        arrays[name] = np.frombuffer(raw.data, dtype, count, offset).reshape(shapes[name])
        offset += count * dtype.itemsize
    return arrays


def _rank_error(info: TensorInfo, array: np.ndarray, time_major: bool) -> None:
    layout = "[T][B]" if time_major else "[B][T]"
    dims = "".join("[D]" for _ in info.shape[2:])
    raise InvalidInput(
        f"input {info.name!r} must have {len(info.shape)} dimensions ({layout}{dims}), "
        f"got {array.ndim} (shape {list(array.shape)})"
    )


def _features_error(info: TensorInfo, array: np.ndarray, time_major: bool) -> None:
    """Every dimension after batch and time is fixed by the signature: name the first one that differs."""
    for axis, (want, got) in enumerate(zip(info.shape[2:], array.shape[2:], strict=True), start=2):
        if want is not None and want != got:
            expected = ["T", "B"] if time_major else ["B", "T"]
            expected += [str(d) for d in info.shape[2:]]
            raise InvalidInput(
                f"input {info.name!r} dimension {axis} must be {want}, got {got} "
                f"(expected [{', '.join(expected)}], got {list(array.shape)})"
            )


def _check_batch(signature: ModelSignature, b: int, required: int | None, limits: Limits) -> None:
    if b < 1:
        raise InvalidInput("the batch is empty: send at least one row")
    if b > limits.max_batch:
        raise PayloadTooLarge(f"batch size {b} exceeds the limit of {limits.max_batch} rows")
    if required is not None and b != required:
        raise InvalidInput(f"this session has batch size {required}, the inputs have {b} rows")
    if signature.batch_size is not None and b != signature.batch_size:
        raise InvalidInput(f"model {signature.name!r} was built for batch size {signature.batch_size}, got {b}")


def _check_timesteps(t: int, limits: Limits) -> None:
    if t < 1:
        raise InvalidInput("the inputs have no timesteps: send at least one")
    if t > limits.max_timesteps:
        raise PayloadTooLarge(f"{t} timesteps exceed the limit of {limits.max_timesteps} per request")


def _cast(info: TensorInfo, array: np.ndarray) -> np.ndarray:
    if info.dtype == "float32":
        return _cast_float(info.name, array, "input {!r}")
    what = f"input {info.name!r}"
    if info.dtype == "int64":
        if array.dtype.kind not in _INTEGER_KINDS:
            raise InvalidInput(f"{what} takes integer token ids (int64), got {array.dtype.name} values")
        if array.size:
            low, high = array.min(), array.max()
            if low < 0 or high > _INT64_MAX:
                raise InvalidInput(f"{what} takes token ids >= 0 that fit int64")
            if info.vocabulary is not None and high >= info.vocabulary:
                raise InvalidInput(
                    f"{what} takes token ids below {info.vocabulary} (the Embedding's input_dim), got {int(high)}"
                )
        return array.astype(np.int64, copy=False)
    raise InvalidInput(f"{what} has unsupported dtype {info.dtype!r}")


def _cast_float(name: str, array: np.ndarray, what: str = "{}") -> np.ndarray:
    """`array` as float32, or `InvalidInput` naming the tensor (`what` formatted with `name`, only on failure)."""
    kind = array.dtype.kind
    if kind != "f":
        if kind not in _INTEGER_KINDS:
            raise InvalidInput(f"{what.format(name)} takes numbers (float32), got {array.dtype.name} values")
        return array.astype(np.float32)  # every 64-bit integer is within the float32 range
    # Before the cast, so that the cast itself never overflows: the sum of squares clears the common case; else one
    # reduction finds NaN (which fails the comparison), Inf and what would round beyond float32's range.
    if (
        array.size
        and not float(np.vdot(array, array)) < _SQUARES_BOUND
        and not (float(_max(np.abs(array), axis=None)) < _FLOAT32_LIMIT)
    ):
        raise InvalidInput(f"{what.format(name)} holds NaN, Inf or values beyond the float32 range")
    return array.astype(np.float32, copy=False)
