"""Dense, Embedding, Masking and Dropout at inference, in float64 (SEMANTICS.md §4).

Masks here follow the layout of the tensor they belong to: `value.shape[:2]` for a sequence, `(batch, time)`
normally and `(time, batch)` in a time-major model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnserve.errors import InvalidInput, ModelFileError
from rnnserve.layers import activations


def _weight(layer: str, weights: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    if key not in weights:
        raise ModelFileError(f"layer {layer!r}: missing weight {key!r} (has {sorted(weights)})")
    return np.asarray(weights[key], dtype=np.float64)


@dataclass(frozen=True)
class Dense:
    """`activation(x @ kernel + bias)` on the last axis of an input of any rank."""

    kernel: np.ndarray
    bias: np.ndarray | None
    activation: str = "linear"

    @classmethod
    def from_config(cls, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = "") -> Dense:
        kernel = _weight(name, weights, "kernel")
        units = int(config.get("units", kernel.shape[-1]))
        if kernel.ndim != 2 or kernel.shape[1] != units:
            raise ModelFileError(f"layer {name!r}: kernel has shape {kernel.shape}, expected (inputs, {units})")
        bias = None
        if config.get("use_bias", True):
            bias = _weight(name, weights, "bias")
            if bias.shape != (units,):
                raise ModelFileError(f"layer {name!r}: bias has shape {bias.shape}, expected {(units,)}")
        activation = activations.canonical_activation(config.get("activation"))
        if activation in activations.SHAPE_CHANGING and units % 2:
            raise ModelFileError(f"layer {name!r}: activation {activation!r} needs even units, got {units}")
        return cls(kernel, bias, activation)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != self.kernel.shape[0]:
            raise InvalidInput(f"Dense expects {self.kernel.shape[0]} features on the last axis, got shape {x.shape}")
        y = np.asarray(x, dtype=np.float64) @ self.kernel
        if self.bias is not None:
            y = y + self.bias
        return activations.apply(self.activation, y)


@dataclass(frozen=True)
class Embedding:
    """`embeddings[ids]`; with `mask_zero`, id 0 is masked."""

    embeddings: np.ndarray
    mask_zero: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = "") -> Embedding:
        table = _weight(name, weights, "embeddings")
        expected = (int(config.get("input_dim", table.shape[0])), int(config.get("output_dim", table.shape[-1])))
        if table.shape != expected:
            raise ModelFileError(f"layer {name!r}: embeddings have shape {table.shape}, expected {expected}")
        return cls(table, bool(config.get("mask_zero", False)))

    def __call__(self, ids: np.ndarray, source: str = "input") -> np.ndarray:
        """Look up `ids`; `source` names the tensor in errors (out-of-range or non-integer ids)."""
        return self.embeddings[self._indices(ids, source)]  # type: ignore[no-any-return]

    def compute_mask(self, ids: np.ndarray) -> np.ndarray | None:
        return np.asarray(ids) != 0 if self.mask_zero else None

    def _indices(self, ids: np.ndarray, source: str) -> np.ndarray:
        raw = np.asarray(ids)
        if raw.dtype.kind == "f":
            if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
                raise InvalidInput(f"input {source!r}: token ids must be integers")
        elif raw.dtype.kind not in "iub":
            raise InvalidInput(f"input {source!r}: token ids must be integers, got dtype {raw.dtype}")
        index = raw.astype(np.int64)
        size = self.embeddings.shape[0]
        if index.size and (index.min() < 0 or index.max() >= size):
            bad = index[(index < 0) | (index >= size)].flat[0]
            raise InvalidInput(f"input {source!r}: token id {int(bad)} is out of range [0, {size})")
        return index


@dataclass(frozen=True)
class Masking:
    """A step is masked when all its features equal `mask_value`; masked steps of the output are zeros."""

    mask_value: float = 0.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = "") -> Masking:
        if weights:
            raise ModelFileError(f"layer {name!r}: Masking has no weights, got {sorted(weights)}")
        return cls(float(config.get("mask_value", 0.0)))

    def compute_mask(self, x: np.ndarray) -> np.ndarray:
        return np.any(np.asarray(x) != self.mask_value, axis=-1)  # type: ignore[no-any-return]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x * self.compute_mask(x)[..., None]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Dropout:
    """Identity: dropout is inactive at inference (SEMANTICS.md §6)."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = "") -> Dropout:
        return cls()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x
