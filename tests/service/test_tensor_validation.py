"""`rnnserve.validation` on its own: JSON -> numpy decoding and the checks against a signature."""

from __future__ import annotations

import numpy as np
import pytest

from rnnserve.errors import InvalidInput, PayloadTooLarge
from rnnserve.signature import ModelSignature, TensorInfo
from rnnserve.validation import Limits, check_inputs, check_mask, check_states, decode_array, zero_states

LIMITS = Limits(max_timesteps=10, max_batch=4)
FLOAT_SIG = ModelSignature(
    name="m",
    inputs=(TensorInfo("x", (None, None, 2), "float32"),),
    outputs=(TensorInfo("y", (None, None, 3), "float32"),),
    states=(TensorInfo("rnn/h", (None, 3), "float32"), TensorInfo("rnn/c", (None, 3), "float32")),
)
TOKEN_SIG = ModelSignature(
    name="t",
    inputs=(TensorInfo("ids", (None, None), "int64"),),
    outputs=(TensorInfo("y", (None, 3), "float32"),),
    states=(TensorInfo("rnn/h", (None, 3), "float32"),),
)


def test_decode_keeps_the_numeric_kind() -> None:
    assert decode_array([[1, 2]], "a").dtype.kind == "i"
    assert decode_array([[1.5, 2]], "a").dtype.kind == "f"
    assert decode_array([[True, False]], "a").dtype.kind == "b"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1,2", "nested list"),
        ({"a": 1}, "nested list"),
        (None, "nested list"),
        ([[1, 2], [3]], "rectangular"),
        ([[1, "2"]], "strings"),
        ([[1, None]], "nulls"),
        ([[1, {"a": 1}]], "rectangular|nulls"),
        ([2**80], "nulls, objects or integers beyond 64 bits"),
    ],
)
def test_decode_refuses_what_is_not_a_numeric_tensor(value: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_array(value, "inputs")


def test_check_inputs_casts_to_float32_and_reports_sizes() -> None:
    checked = check_inputs(FLOAT_SIG, np.array([[[1, 2], [3, 4], [5, 6]]]), time_major=None, limits=LIMITS)
    assert (checked.batch, checked.timesteps) == (1, 3)
    assert checked.feeds["x"].dtype == np.float32 and checked.feeds["x"].flags.c_contiguous


def test_check_inputs_moves_a_time_major_request_into_the_model_layout() -> None:
    batch_major = np.arange(12, dtype=np.float64).reshape(2, 3, 2)  # (B=2, T=3, F=2)
    checked = check_inputs(FLOAT_SIG, batch_major.swapaxes(0, 1), time_major=True, limits=LIMITS)
    assert (checked.batch, checked.timesteps) == (2, 3)
    np.testing.assert_array_equal(checked.feeds["x"], batch_major.astype(np.float32))


@pytest.mark.parametrize(
    ("array", "kwargs", "error", "message"),
    [
        (np.zeros((1, 3, 5)), {}, InvalidInput, "dimension 2 must be 2"),
        (np.zeros((1, 3)), {}, InvalidInput, "must have 3 dimensions"),
        (np.zeros((5, 3, 2)), {}, PayloadTooLarge, "batch size 5 exceeds"),
        (np.zeros((1, 11, 2)), {}, PayloadTooLarge, "11 timesteps"),
        (np.zeros((2, 3, 2)), {"batch": 1}, InvalidInput, "batch size 1"),
        (np.array([[[np.nan, 0.0]]]), {}, InvalidInput, "NaN"),
        (np.array([[[np.inf, 0.0]]]), {}, InvalidInput, "Inf"),
        (np.array([[[1e300, 0.0]]]), {}, InvalidInput, "float32 range"),
        (np.array([[[True, False]]]), {}, InvalidInput, "got bool"),
    ],
)
def test_check_inputs_refuses(array: np.ndarray, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        check_inputs(FLOAT_SIG, array, time_major=None, limits=LIMITS, **kwargs)


def test_a_fixed_batch_model_takes_only_its_batch() -> None:
    fixed = ModelSignature("f", FLOAT_SIG.inputs, FLOAT_SIG.outputs, FLOAT_SIG.states, stateful=True, batch_size=2)
    check_inputs(fixed, np.zeros((2, 1, 2)), time_major=None, limits=LIMITS)
    with pytest.raises(InvalidInput, match="built for batch size 2"):
        check_inputs(fixed, np.zeros((1, 1, 2)), time_major=None, limits=LIMITS)


def test_token_ids_must_be_non_negative_integers() -> None:
    assert check_inputs(TOKEN_SIG, np.array([[1, 2, 0]]), time_major=None, limits=LIMITS).feeds["ids"].dtype == np.int64
    with pytest.raises(InvalidInput, match="integer token ids"):
        check_inputs(TOKEN_SIG, np.array([[1.0, 2.5]]), time_major=None, limits=LIMITS)
    with pytest.raises(InvalidInput, match=">= 0"):
        check_inputs(TOKEN_SIG, np.array([[1, -1]]), time_major=None, limits=LIMITS)


def test_named_inputs_must_match_the_signature() -> None:
    with pytest.raises(InvalidInput, match=r"missing \['x'\], unknown \['z'\]"):
        check_inputs(FLOAT_SIG, {"z": np.zeros((1, 1, 2))}, time_major=None, limits=LIMITS)


def test_mask_layout_and_values() -> None:
    mask = check_mask(np.array([[1, 0, 1]]), batch=1, timesteps=3, time_major=False)
    assert mask.dtype == bool and mask.tolist() == [[True, False, True]]
    time_major = check_mask(np.array([[True], [False], [True]]), batch=1, timesteps=3, time_major=True)
    assert time_major.tolist() == [[True, False, True]]
    with pytest.raises(InvalidInput, match="booleans"):
        check_mask(np.array([[2, 0, 1]]), batch=1, timesteps=3, time_major=False)
    with pytest.raises(InvalidInput, match=r"\[B\]\[T\] = \[1, 3\]"):
        check_mask(np.array([[True, False]]), batch=1, timesteps=3, time_major=False)


def test_states_one_per_signature_state_of_shape_batch_units() -> None:
    states = check_states(FLOAT_SIG, [np.ones((2, 3)), np.zeros((2, 3), dtype=np.int64)], batch=2)
    assert [s.dtype for s in states] == [np.float32, np.float32]
    with pytest.raises(InvalidInput, match="expected 2 state arrays"):
        check_states(FLOAT_SIG, [np.ones((2, 3))], batch=2)
    with pytest.raises(InvalidInput, match=r"must have shape \[2, 3\]"):
        check_states(FLOAT_SIG, [np.ones((2, 3)), np.ones((1, 3))], batch=2)
    assert [s.shape for s in zero_states(FLOAT_SIG, 4)] == [(4, 3), (4, 3)]
