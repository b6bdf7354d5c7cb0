"""Keras 3 weight constraints: validated, serialized as Keras writes them, kept in layer configs.

Keras applies them only in optimizer steps, never to weights that are set or loaded, so inference ignores them
(SEMANTICS §6). `__call__` gives the projection Keras applies, for completeness.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnserve.modeling import arguments
from rnnserve.modeling.serialization import Factory, KerasObject, resolve

EPSILON = 1e-7  # keras.backend.epsilon()


class Constraint(KerasObject):
    module = "keras.constraints"

    def __call__(self, weight: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _axis(value: Any) -> Any:
    """An int axis, or a list of them (Keras accepts both)."""
    if isinstance(value, (list, tuple)):
        return [arguments.non_negative_int("axis", a) for a in value]
    return arguments.non_negative_int("axis", value)


def _norms(weight: np.ndarray, axis: Any) -> np.ndarray:
    axes = tuple(axis) if isinstance(axis, list) else axis
    return np.asarray(np.sqrt(np.sum(np.square(weight), axis=axes, keepdims=True)))


class MaxNorm(Constraint):
    class_name = "MaxNorm"

    def __init__(self, max_value: float = 2, axis: Any = 0) -> None:
        arguments.finite_float("max_value", max_value)
        self.max_value = max_value
        self.axis = _axis(axis)

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}

    def __call__(self, weight: np.ndarray) -> np.ndarray:
        norms = _norms(weight, self.axis)
        return weight * (np.clip(norms, 0, self.max_value) / (EPSILON + norms))  # type: ignore[no-any-return]


class MinMaxNorm(Constraint):
    class_name = "MinMaxNorm"

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis: Any = 0) -> None:
        arguments.finite_float("min_value", min_value)
        arguments.finite_float("max_value", max_value)
        arguments.finite_float("rate", rate)
        if max_value < min_value:
            raise arguments.invalid("max_value", max_value, f"must be >= min_value={min_value!r}")
        self.min_value, self.max_value, self.rate = min_value, max_value, rate
        self.axis = _axis(axis)

    def get_config(self) -> dict[str, Any]:
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}

    def __call__(self, weight: np.ndarray) -> np.ndarray:
        norms = _norms(weight, self.axis)
        desired = self.rate * np.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return weight * (desired / (EPSILON + norms))  # type: ignore[no-any-return]


class NonNeg(Constraint):
    class_name = "NonNeg"

    def __call__(self, weight: np.ndarray) -> np.ndarray:
        return np.asarray(np.maximum(weight, 0))


class UnitNorm(Constraint):
    class_name = "UnitNorm"

    def __init__(self, axis: Any = 0) -> None:
        self.axis = _axis(axis)

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}

    def __call__(self, weight: np.ndarray) -> np.ndarray:
        return np.asarray(weight / (EPSILON + _norms(weight, self.axis)))


_CLASSES: tuple[type[Constraint], ...] = (MaxNorm, MinMaxNorm, NonNeg, UnitNorm)
REGISTRY: Mapping[str, Factory] = {
    **{cls.class_name: cls for cls in _CLASSES},
    "max_norm": MaxNorm,
    "min_max_norm": MinMaxNorm,
    "non_neg": NonNeg,
    "unit_norm": UnitNorm,
}


def get(identifier: Any, argument: str = "constraint") -> Constraint | None:
    """None, a Constraint, a Keras name ("max_norm", "NonNeg", ...) or a serialized dict; InvalidArgument otherwise."""
    obj = resolve(identifier, argument=argument, kind="constraint", base=Constraint, registry=REGISTRY)
    assert obj is None or isinstance(obj, Constraint)
    return obj


# ---- R keras constructors ----------------------------------------------------------------------------------------


def constraint_maxnorm(max_value: float = 2, axis: Any = 0) -> Constraint:
    return MaxNorm(max_value, axis)


def constraint_minmaxnorm(
    min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis: Any = 0
) -> Constraint:
    return MinMaxNorm(min_value, max_value, rate, axis)


def constraint_nonneg() -> Constraint:
    return NonNeg()


def constraint_unitnorm(axis: Any = 0) -> Constraint:
    return UnitNorm(axis)
