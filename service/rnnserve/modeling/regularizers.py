"""Keras 3 weight regularizers: validated, serialized as Keras writes them, kept in layer configs.

They change training only; inference ignores them (SEMANTICS §6). `__call__` gives the penalty Keras adds to
`model.losses`, for completeness. L1 and OrthogonalRegularizer keep their factor in a float32 tensor in Keras,
so their configs hold float32-rounded values (0.02 -> 0.019999999552965164); L2 and L1L2 keep Python floats.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnserve.modeling import arguments
from rnnserve.modeling.serialization import Factory, KerasObject, float32_rounded, resolve


def _penalty_factor(argument: str, value: Any, default: float) -> float:
    value = default if value is None else value
    number = arguments.finite_float(argument, value)
    if number < 0:
        raise arguments.invalid(argument, value, "must be a non-negative float")
    return number


class Regularizer(KerasObject):
    module = "keras.regularizers"

    def __call__(self, weight: np.ndarray) -> float:
        raise NotImplementedError


class L1(Regularizer):
    class_name = "L1"

    def __init__(self, l1: float = 0.01) -> None:
        self.l1 = float32_rounded(_penalty_factor("l1", l1, 0.01))

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}

    def __call__(self, weight: np.ndarray) -> float:
        return self.l1 * float(np.sum(np.abs(weight)))


class L2(Regularizer):
    class_name = "L2"

    def __init__(self, l2: float = 0.01) -> None:
        self.l2 = _penalty_factor("l2", l2, 0.01)

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}

    def __call__(self, weight: np.ndarray) -> float:
        return self.l2 * float(np.sum(np.square(weight)))


class L1L2(Regularizer):
    class_name = "L1L2"

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = _penalty_factor("l1", l1, 0.0)
        self.l2 = _penalty_factor("l2", l2, 0.0)

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}

    def __call__(self, weight: np.ndarray) -> float:
        return self.l1 * float(np.sum(np.abs(weight))) + self.l2 * float(np.sum(np.square(weight)))


class OrthogonalRegularizer(Regularizer):
    class_name = "OrthogonalRegularizer"

    def __init__(self, factor: float = 0.01, mode: str = "rows") -> None:
        self.factor = float32_rounded(_penalty_factor("factor", factor, 0.01))
        self.mode = arguments.choice("mode", mode, {"rows", "columns"})

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "mode": self.mode}

    def __call__(self, weight: np.ndarray) -> float:
        w = np.asarray(weight, dtype=np.float64)
        if w.ndim != 2:
            raise arguments.invalid("weight", w.shape, "must be a 2-D weight for OrthogonalRegularizer")
        vectors = w if self.mode == "rows" else w.T
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        product = vectors @ vectors.T
        size = product.shape[0]
        off_diagonal = np.abs(product * (1.0 - np.eye(size))).sum()
        return float(self.factor * 0.5 * off_diagonal / (size * (size - 1.0) / 2.0))


_CLASSES: tuple[type[Regularizer], ...] = (L1, L2, L1L2, OrthogonalRegularizer)
REGISTRY: Mapping[str, Factory] = {
    **{cls.class_name: cls for cls in _CLASSES},
    "l1": L1,
    "l2": L2,
    "l1l2": L1L2,
    "l1_l2": L1L2,  # R's regularizer_l1_l2 spelling
    "orthogonal_regularizer": OrthogonalRegularizer,
}


def get(identifier: Any, argument: str = "regularizer") -> Regularizer | None:
    """None, a Regularizer, a Keras name ("l2", "L1L2", ...) or a serialized dict; InvalidArgument otherwise."""
    obj = resolve(identifier, argument=argument, kind="regularizer", base=Regularizer, registry=REGISTRY)
    assert obj is None or isinstance(obj, Regularizer)
    return obj


# ---- R keras constructors ----------------------------------------------------------------------------------------


def regularizer_l1(l1: float = 0.01) -> Regularizer:
    return L1(l1)


def regularizer_l2(l2: float = 0.01) -> Regularizer:
    return L2(l2)


def regularizer_l1_l2(l1: float = 0.01, l2: float = 0.01) -> Regularizer:
    return L1L2(l1, l2)


def regularizer_orthogonal(factor: float = 0.01, mode: str = "rows") -> Regularizer:
    return OrthogonalRegularizer(factor, mode)
