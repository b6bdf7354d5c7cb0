"""Activations: each canonical name against its Keras formula written out per scalar, and the name rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnnserve.errors import InvalidArgument
from rnnserve.layers import activations

POINTS = np.array([-7.0, -3.0, -2.5, -1.0, -0.7, -0.5, -0.2, 0.0, 0.3, 0.5, 0.9, 1.0, 2.0, 3.0, 6.5])


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


SCALAR = {
    "linear": lambda v: v,
    "relu": lambda v: max(v, 0.0),
    "relu6": lambda v: min(max(v, 0.0), 6.0),
    "leaky_relu": lambda v: v if v > 0 else 0.2 * v,
    "elu": lambda v: v if v > 0 else math.exp(v) - 1.0,
    "celu": lambda v: v if v >= 0 else math.exp(v) - 1.0,
    "selu": lambda v: 1.0507009873554805 * (v if v > 0 else 1.6732632423543772 * (math.exp(v) - 1.0)),
    "exponential": math.exp,
    "sigmoid": _sig,
    "hard_sigmoid": lambda v: 0.0 if v <= -3 else 1.0 if v >= 3 else v / 6.0 + 0.5,
    "hard_sigmoid_keras2": lambda v: 0.0 if v < -2.5 else 1.0 if v > 2.5 else 0.2 * v + 0.5,
    "log_sigmoid": lambda v: math.log(_sig(v)),
    "sparse_sigmoid": lambda v: 0.0 if v <= -1 else 1.0 if v >= 1 else 0.5 * (v + 1.0),
    "tanh": math.tanh,
    "hard_tanh": lambda v: -1.0 if v < -1 else 1.0 if v > 1 else v,
    "tanh_shrink": lambda v: v - math.tanh(v),
    "softplus": _softplus,
    "sparse_plus": lambda v: 0.0 if v <= -1 else v if v >= 1 else 0.25 * (v + 1.0) ** 2,
    "squareplus": lambda v: (v + math.sqrt(v * v + 4.0)) / 2.0,
    "softsign": lambda v: v / (1.0 + abs(v)),
    "soft_shrink": lambda v: v - 0.5 if v > 0.5 else v + 0.5 if v < -0.5 else 0.0,
    "hard_shrink": lambda v: v if abs(v) > 0.5 else 0.0,
    "silu": lambda v: v * _sig(v),
    "hard_silu": lambda v: 0.0 if v < -3 else v if v > 3 else v * (v + 3.0) / 6.0,
    "mish": lambda v: v * math.tanh(_softplus(v)),
    "gelu": lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))),
}


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    e = np.array([[math.exp(v) for v in row] for row in x])
    return e / e.sum(axis=-1, keepdims=True)


def _sparsemax_row(z: np.ndarray) -> np.ndarray:
    """Sparsemax by its definition: the Euclidean projection onto the simplex (sort-based threshold)."""
    s = sorted(z, reverse=True)
    k = max(j for j in range(1, len(s) + 1) if 1 + j * s[j - 1] > sum(s[:j]))
    tau = (sum(s[:k]) - 1) / k
    return np.maximum(z - tau, 0.0)


ROW_CASES = {
    "softmax": _softmax_rows,
    "log_softmax": lambda x: np.log(_softmax_rows(x)),
    "sparsemax": lambda x: np.stack([_sparsemax_row(row) for row in x]),
    "glu": lambda x: x[:, :2] * np.vectorize(_sig)(x[:, 2:]),
}


def test_every_canonical_name_is_tested() -> None:
    assert set(SCALAR) | set(ROW_CASES) == activations.ACTIVATION_NAMES


@pytest.mark.parametrize("name", sorted(SCALAR))
def test_elementwise_matches_formula(name: str) -> None:
    got = activations.apply(name, POINTS)
    expected = np.array([SCALAR[name](float(v)) for v in POINTS])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(ROW_CASES))
def test_row_wise_matches_formula(name: str) -> None:
    x = np.array([[0.5, -1.0, 2.0, 0.1], [-3.0, -3.0, 1.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(activations.apply(name, x), ROW_CASES[name](x), rtol=1e-12, atol=1e-12)


def test_large_inputs_do_not_overflow() -> None:
    x = np.array([-1000.0, -50.0, 50.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for name in sorted(activations.ACTIVATION_NAMES - {"exponential", "glu"}):
            assert np.all(np.isfinite(activations.apply(name, x))), name


@pytest.mark.parametrize(
    ("given", "version", "expected"),
    [
        (None, "3.15.1", "linear"),
        ("linear", "3.15.1", "linear"),
        ("swish", "3.15.1", "silu"),
        ("hard_swish", "3.15.1", "hard_silu"),
        ("hard_sigmoid", "3.15.1", "hard_sigmoid"),
        ("hard_sigmoid", "2.15.0", "hard_sigmoid_keras2"),
        ("hard_sigmoid", "2.x", "hard_sigmoid_keras2"),
        ("swish", "2.21.0", "silu"),
        ("hard_sigmoid_keras2", "3", "hard_sigmoid_keras2"),
        ("gelu", "3", "gelu"),
    ],
)
def test_canonical_names(given: str | None, version: str, expected: str) -> None:
    assert activations.canonical_activation(given, version) == expected


def test_canonical_names_map_to_themselves() -> None:
    for name in activations.ACTIVATION_NAMES:
        assert activations.canonical_activation(name) == name


@pytest.mark.parametrize("bad", ["nope", "threshold", "Tanh", 3])
def test_unknown_activation_names_value_and_argument(bad: object) -> None:
    with pytest.raises(InvalidArgument) as err:
        activations.canonical_activation(bad, argument="recurrent_activation")
    assert repr(bad) in str(err.value) and "recurrent_activation" in str(err.value)


def test_serialized_object_is_rejected() -> None:
    leaky = {"module": "keras.layers", "class_name": "LeakyReLU", "config": {"negative_slope": 0.3}}
    with pytest.raises(InvalidArgument, match="LeakyReLU"):
        activations.canonical_activation(leaky)


def test_glu_is_not_shape_preserving() -> None:
    with pytest.raises(InvalidArgument, match="glu"):
        activations.require_shape_preserving("glu")
    activations.require_shape_preserving("softmax")
    with pytest.raises(InvalidArgument, match="even"):
        activations.apply("glu", np.zeros((2, 3)))
