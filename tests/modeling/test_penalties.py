"""Regularizers and constraints: accepted forms, validation, Keras config form, and what they compute."""

from __future__ import annotations

import numpy as np
import pytest

from rnnserve.errors import InvalidArgument
from rnnserve.modeling import (
    constraint_maxnorm,
    constraint_minmaxnorm,
    constraint_nonneg,
    constraint_unitnorm,
    regularizer_l1,
    regularizer_l1_l2,
    regularizer_l2,
    regularizer_orthogonal,
)
from rnnserve.modeling import constraints as con
from rnnserve.modeling import regularizers as reg


def test_regularizer_configs_as_keras_writes_them() -> None:
    assert regularizer_l2(0.01).serialize() == {
        "module": "keras.regularizers",
        "class_name": "L2",
        "config": {"l2": 0.01},
        "registered_name": None,
    }
    # L1 and OrthogonalRegularizer keep their factor in a float32 tensor (SEMANTICS §6).
    assert regularizer_l1(0.02).get_config() == {"l1": 0.019999999552965164}
    assert regularizer_orthogonal().get_config() == {"factor": 0.009999999776482582, "mode": "rows"}
    assert regularizer_l1_l2(0.01, 0.02).get_config() == {"l1": 0.01, "l2": 0.02}


@pytest.mark.parametrize(
    ("identifier", "class_name", "config"),
    [
        ("l2", "L2", {"l2": 0.01}),
        ("L1", "L1", {"l1": 0.009999999776482582}),
        ("l1l2", "L1L2", {"l1": 0.0, "l2": 0.0}),  # Keras' string default is zeros
        ("l1_l2", "L1L2", {"l1": 0.0, "l2": 0.0}),
        ("orthogonal_regularizer", "OrthogonalRegularizer", {"factor": 0.009999999776482582, "mode": "rows"}),
        ({"class_name": "L2", "config": {"l2": 0.5}}, "L2", {"l2": 0.5}),
    ],
)
def test_regularizer_forms(identifier: object, class_name: str, config: dict[str, object]) -> None:
    obj = reg.get(identifier)
    assert obj is not None and obj.class_name == class_name and obj.get_config() == config
    assert reg.get(obj) is obj and reg.get(None) is None


def test_regularizer_penalties() -> None:
    w = np.array([[1.0, -2.0], [0.5, 0.0]])
    assert regularizer_l1(0.5)(w) == pytest.approx(0.5 * 3.5)
    assert regularizer_l2(0.1)(w) == pytest.approx(0.1 * 5.25)
    assert regularizer_l1_l2(0.5, 0.1)(w) == pytest.approx(0.5 * 3.5 + 0.1 * 5.25)
    assert regularizer_orthogonal(1.0)(np.eye(3)) == pytest.approx(0.0)
    # two identical unit columns: 0.5 * (sum of |off-diagonal| = 2) / (1 pair)
    assert regularizer_orthogonal(1.0, mode="columns")(np.ones((3, 2))) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: regularizer_l2(-0.1), "l2"),
        (lambda: regularizer_l1(float("nan")), "l1"),
        (lambda: regularizer_l1_l2(l2="x"), "l2"),
        (lambda: regularizer_orthogonal(mode="diagonal"), "mode"),
        (lambda: reg.get("l3", "kernel_regularizer"), "kernel_regularizer"),
        (lambda: reg.get(0.01, "bias_regularizer"), "bias_regularizer"),
    ],
)
def test_bad_regularizers_name_the_argument(make: object, argument: str) -> None:
    with pytest.raises(InvalidArgument, match=argument) as info:
        make()  # type: ignore[operator]
    assert info.value.extra["argument"] == argument


def test_constraint_configs_as_keras_writes_them() -> None:
    assert constraint_maxnorm(2.0).serialize() == {
        "module": "keras.constraints",
        "class_name": "MaxNorm",
        "config": {"max_value": 2.0, "axis": 0},
        "registered_name": None,
    }
    assert constraint_unitnorm().get_config() == {"axis": 0}
    assert constraint_nonneg().get_config() == {}
    assert constraint_minmaxnorm().get_config() == {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}
    assert con.get("max_norm").get_config() == {"max_value": 2, "axis": 0}  # type: ignore[union-attr]
    assert con.get({"class_name": "UnitNorm", "config": {"axis": 1}}).get_config() == {"axis": 1}  # type: ignore[union-attr]


def test_constraint_projections() -> None:
    w = np.array([[3.0, 0.1], [4.0, -0.1]])  # column norms 5 and ~0.14
    np.testing.assert_allclose(constraint_maxnorm(2.0)(w)[:, 0], [1.2, 1.6], rtol=1e-6)
    np.testing.assert_allclose(constraint_maxnorm(2.0)(w)[:, 1], w[:, 1], rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(constraint_unitnorm()(w), axis=0), [1, 1], rtol=1e-5)
    np.testing.assert_array_equal(constraint_nonneg()(w), np.maximum(w, 0))


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: constraint_maxnorm("big"), "max_value"),
        (lambda: constraint_unitnorm(axis=-1), "axis"),
        (lambda: constraint_minmaxnorm(min_value=2.0, max_value=1.0), "max_value"),
        (lambda: con.get("nonnegative", "kernel_constraint"), "kernel_constraint"),
    ],
)
def test_bad_constraints_name_the_argument(make: object, argument: str) -> None:
    with pytest.raises(InvalidArgument, match=argument) as info:
        make()  # type: ignore[operator]
    assert info.value.extra["argument"] == argument
