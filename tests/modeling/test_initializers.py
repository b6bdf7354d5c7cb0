"""Initializers: Keras definitions (bounds, variances, orthogonality), names, configs and seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnnserve.errors import InvalidArgument
from rnnserve.modeling import initializers as init
from rnnserve.modeling import set_random_seed

FAN_IN, FAN_OUT = 120, 360  # e.g. a GRU kernel (F, 3U)
SHAPE = (FAN_IN, FAN_OUT)


def _relative(a: float, b: float) -> float:
    return abs(a - b) / b


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("glorot_uniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
        ("he_uniform", math.sqrt(6 / FAN_IN)),
        ("lecun_uniform", math.sqrt(3 / FAN_IN)),
    ],
)
def test_uniform_family_bounds_and_variance(name: str, limit: float) -> None:
    w = init.get(name)(SHAPE)
    assert w.dtype == np.float32 and w.shape == SHAPE
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit  # the whole range is used
    assert _relative(float(w.var()), limit**2 / 3) < 0.03
    assert abs(float(w.mean())) < 0.01 * limit


@pytest.mark.parametrize(
    ("name", "variance"),
    [
        ("glorot_normal", 2 / (FAN_IN + FAN_OUT)),
        ("he_normal", 2 / FAN_IN),
        ("lecun_normal", 1 / FAN_IN),
    ],
)
def test_truncated_normal_family_variance_and_truncation(name: str, variance: float) -> None:
    """Keras divides the stddev by .8796... so the variance after truncation at 2 stddev is the target."""
    w = init.get(name)(SHAPE)
    stddev = math.sqrt(variance) / init.TRUNCATION_STDDEV
    assert np.abs(w).max() <= 2 * stddev * (1 + 1e-6)
    assert _relative(float(w.var()), variance) < 0.03


def test_variance_scaling_modes_and_distributions() -> None:
    w = init.VarianceScaling(scale=3.0, mode="fan_out", distribution="untruncated_normal", seed=3)(SHAPE)
    assert _relative(float(w.var()), 3.0 / FAN_OUT) < 0.03
    assert np.abs(w).max() > 2 * math.sqrt(3.0 / FAN_OUT)  # not truncated
    w = init.VarianceScaling(scale=0.5, mode="fan_avg", distribution="uniform", seed=3)(SHAPE)
    limit = math.sqrt(3 * 0.5 / ((FAN_IN + FAN_OUT) / 2))
    assert np.abs(w).max() <= limit
    assert init.VarianceScaling(distribution="normal").distribution == "truncated_normal"


def test_fans_are_computed_as_keras_does() -> None:
    assert init.compute_fans((7, 12)) == (7, 12)
    assert init.compute_fans((5,)) == (5, 5)
    assert init.compute_fans(()) == (1, 1)
    assert init.compute_fans((3, 4, 5, 6)) == (60, 72)


@pytest.mark.parametrize(("rows", "cols"), [(16, 16), (16, 48), (48, 16)])
def test_orthogonal(rows: int, cols: int) -> None:
    w = init.Orthogonal(seed=5)((rows, cols)).astype(np.float64)
    if rows <= cols:  # e.g. a recurrent kernel (U, 3U): orthonormal rows over all gates together
        np.testing.assert_allclose(w @ w.T, np.eye(rows), atol=1e-5)
    else:
        np.testing.assert_allclose(w.T @ w, np.eye(cols), atol=1e-5)


def test_orthogonal_gain_transpose_rule_and_rank() -> None:
    w = init.Orthogonal(gain=2.0, seed=5)((8, 8)).astype(np.float64)
    np.testing.assert_allclose(w @ w.T, 4 * np.eye(8), atol=1e-5)
    # Both shapes draw the same (max, min) normal matrix; the wide one is the transpose of the tall one.
    np.testing.assert_array_equal(init.Orthogonal(seed=9)((6, 15)), init.Orthogonal(seed=9)((15, 6)).T)
    assert init.Orthogonal(seed=1)((2, 3, 6)).shape == (2, 3, 6)
    with pytest.raises(InvalidArgument, match="rank"):
        init.Orthogonal()((4,))


def test_truncated_normal_stays_within_two_stddev() -> None:
    w = init.TruncatedNormal(mean=1.0, stddev=0.5, seed=2)((200, 200))
    assert np.all(np.abs(w - 1.0) <= 1.0 + 1e-6)
    # a unit normal truncated to [-2, 2] has stddev 0.8796...
    assert _relative(float(w.std()), 0.5 * init.TRUNCATION_STDDEV) < 0.02


def test_random_normal_and_uniform() -> None:
    w = init.RandomNormal(mean=0.3, stddev=0.1, seed=2)((200, 200))
    assert abs(float(w.mean()) - 0.3) < 0.002 and _relative(float(w.std()), 0.1) < 0.02
    w = init.get("uniform")((200, 200))  # Embedding's default: RandomUniform(-0.05, 0.05)
    assert w.min() >= -0.05 and w.max() < 0.05 and w.max() > 0.049


def test_constants_and_identity() -> None:
    np.testing.assert_array_equal(init.get("zeros")((2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(init.get("ones")((4,)), np.ones(4))
    np.testing.assert_array_equal(init.Constant(0.25)((2, 2)), np.full((2, 2), 0.25, np.float32))
    np.testing.assert_array_equal(init.Identity(gain=3.0)((2, 3)), 3 * np.eye(2, 3))
    with pytest.raises(InvalidArgument, match="2-D"):
        init.Identity()((2, 2, 2))


def test_same_seed_same_values_and_unseeded_object_is_stable() -> None:
    a, b, c = init.GlorotUniform(seed=7), init.GlorotUniform(seed=7), init.GlorotUniform(seed=8)
    np.testing.assert_array_equal(a((5, 6)), b((5, 6)))
    assert not np.array_equal(a((5, 6)), c((5, 6)))
    unseeded = init.Orthogonal()
    np.testing.assert_array_equal(unseeded((4, 4)), unseeded((4, 4)))  # Keras: one object, same values
    assert not np.array_equal(init.Orthogonal()((4, 4)), init.Orthogonal()((4, 4)))


def test_set_random_seed_makes_unseeded_initializers_reproducible() -> None:
    set_random_seed(42)
    first = [init.get(name)((3, 5)) for name in ("glorot_uniform", "orthogonal", "he_normal")]
    set_random_seed(42)
    second = [init.get(name)((3, 5)) for name in ("glorot_uniform", "orthogonal", "he_normal")]
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(InvalidArgument, match="seed"):
        set_random_seed(-1)


def test_serialized_configs_are_keras_3s() -> None:
    assert init.get("glorot_uniform").serialize() == {
        "module": "keras.initializers",
        "class_name": "GlorotUniform",
        "config": {"seed": None, "input_axes": None, "output_axes": None},
        "registered_name": None,
    }
    assert init.Orthogonal(gain=2.0, seed=3).serialize()["config"] == {"seed": 3, "gain": 2.0}
    assert init.get("uniform").serialize()["config"] == {"seed": None, "minval": -0.05, "maxval": 0.05}
    assert init.get("normal").serialize()["class_name"] == "RandomNormal"
    assert init.get("zero").serialize()["config"] == {}
    assert init.Constant(0.3).serialize()["config"] == {"value": 0.3}
    assert init.get("variance_scaling").serialize()["config"] == {
        "seed": None, "scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal",
        "input_axes": None, "output_axes": None,
    }  # fmt: skip


def test_every_keras_name_resolves_and_dicts_round_trip() -> None:
    for name in init.REGISTRY:
        obj = init.get(name)
        again = init.get(obj.serialize())
        assert type(again) is type(obj) and again.get_config() == obj.get_config()
    seeded = init.get({"class_name": "RandomNormal", "config": {"seed": 9, "mean": 1.0, "stddev": 0.1}})
    np.testing.assert_array_equal(seeded((3,)), init.RandomNormal(1.0, 0.1, seed=9)((3,)))


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("glorot_uniformm", "kernel_initializer='glorot_uniformm'"),
        (None, "kernel_initializer"),
        (3.5, "kernel_initializer=3.5"),
        ({"class_name": "Nope"}, "Nope"),
    ],
)
def test_unknown_initializer_names_the_argument(identifier: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        init.get(identifier, "kernel_initializer")


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: init.VarianceScaling(scale=0), "scale"),
        (lambda: init.VarianceScaling(mode="fan"), "mode"),
        (lambda: init.VarianceScaling(distribution="cauchy"), "distribution"),
        (lambda: init.RandomNormal(seed=-3), "seed"),
        (lambda: init.Constant("a"), "value"),
    ],
)
def test_bad_initializer_arguments(make: object, argument: str) -> None:
    with pytest.raises(InvalidArgument, match=f"`{argument}`") as info:
        make()  # type: ignore[operator]
    assert info.value.extra["argument"] == argument
