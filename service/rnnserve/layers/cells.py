"""One timestep of SimpleRNN, GRU and LSTM, in float64, exactly as Keras 3 computes them (SEMANTICS.md §1).

A cell knows its weights and one step; `rnnserve.layers.recurrent.run_recurrent` owns the loop, masking and
direction. Cells are built from a layer config (Keras 3 keys, canonical activation names) and its weights
(Keras names `kernel`, `recurrent_kernel` and, when `use_bias`, `bias`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rnnserve.errors import ModelFileError
from rnnserve.layers import activations

States = list[np.ndarray]


class Cell(Protocol):
    """What the recurrent loop needs from a cell."""

    @property
    def units(self) -> int: ...

    @property
    def state_count(self) -> int: ...

    def step(self, x_t: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, States]: ...


@dataclass(frozen=True)
class _Weights:
    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: np.ndarray | None


def _load_weights(
    layer: str, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], gates: int, bias_shape: tuple[int, ...]
) -> _Weights:
    """Read and shape-check kernel (F, gates*U), recurrent_kernel (U, gates*U) and bias (`bias_shape`)."""
    units = int(config["units"])
    kernel = _weight(layer, weights, "kernel")
    if kernel.ndim != 2 or kernel.shape[1] != gates * units:
        raise ModelFileError(f"layer {layer!r}: kernel has shape {kernel.shape}, expected (features, {gates * units})")
    recurrent = _weight(layer, weights, "recurrent_kernel")
    if recurrent.shape != (units, gates * units):
        raise ModelFileError(
            f"layer {layer!r}: recurrent_kernel has shape {recurrent.shape}, expected {(units, gates * units)}"
        )
    bias = None
    if config.get("use_bias", True):
        bias = _weight(layer, weights, "bias")
        if bias.shape != bias_shape:
            raise ModelFileError(f"layer {layer!r}: bias has shape {bias.shape}, expected {bias_shape}")
    elif "bias" in weights:
        raise ModelFileError(f"layer {layer!r}: has a bias weight but use_bias=False")
    return _Weights(kernel, recurrent, bias)


def _weight(layer: str, weights: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    if key not in weights:
        raise ModelFileError(f"layer {layer!r}: missing weight {key!r} (has {sorted(weights)})")
    return np.asarray(weights[key], dtype=np.float64)


def _activation(config: Mapping[str, Any], key: str, default: str) -> str:
    name = activations.canonical_activation(config.get(key, default), argument=key)
    activations.require_shape_preserving(name, argument=key)
    return name


def _act(name: str, x: np.ndarray) -> np.ndarray:
    return activations.apply(name, x)


@dataclass(frozen=True)
class SimpleRNNCell:
    """`h = activation(x K + b + h R)`; the output is the new state."""

    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: np.ndarray | None
    activation: str = "tanh"

    @classmethod
    def from_config(cls, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = "") -> SimpleRNNCell:
        units = int(config["units"])
        w = _load_weights(name, config, weights, 1, (units,))
        return cls(w.kernel, w.recurrent_kernel, w.bias, _activation(config, "activation", "tanh"))

    @property
    def units(self) -> int:
        return int(self.recurrent_kernel.shape[0])

    @property
    def state_count(self) -> int:
        return 1

    def step(self, x_t: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, States]:
        z = x_t @ self.kernel + states[0] @ self.recurrent_kernel
        if self.bias is not None:
            z = z + self.bias
        h = _act(self.activation, z)
        return h, [h]


@dataclass(frozen=True)
class GRUCell:
    """Gates z, r, h in that column order; `h_new = z * h + (1 - z) * hh` (SEMANTICS.md §1)."""

    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: np.ndarray | None  # (2, 3U) when reset_after, else (3U,)
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    reset_after: bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = "") -> GRUCell:
        units = int(config["units"])
        reset_after = bool(config.get("reset_after", True))
        w = _load_weights(name, config, weights, 3, (2, 3 * units) if reset_after else (3 * units,))
        return cls(
            w.kernel,
            w.recurrent_kernel,
            w.bias,
            _activation(config, "activation", "tanh"),
            _activation(config, "recurrent_activation", "sigmoid"),
            reset_after,
        )

    @property
    def units(self) -> int:
        return int(self.recurrent_kernel.shape[0])

    @property
    def state_count(self) -> int:
        return 1

    def step(self, x_t: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, States]:
        h = states[0]
        u = self.units
        input_bias, recurrent_bias = self._biases()
        xp = x_t @ self.kernel + input_bias
        if self.reset_after:
            hp = h @ self.recurrent_kernel + recurrent_bias
            z = _act(self.recurrent_activation, xp[:, :u] + hp[:, :u])
            r = _act(self.recurrent_activation, xp[:, u : 2 * u] + hp[:, u : 2 * u])
            recurrent_h = r * hp[:, 2 * u :]
        else:
            hp = h @ self.recurrent_kernel[:, : 2 * u]
            z = _act(self.recurrent_activation, xp[:, :u] + hp[:, :u])
            r = _act(self.recurrent_activation, xp[:, u : 2 * u] + hp[:, u:])
            recurrent_h = (r * h) @ self.recurrent_kernel[:, 2 * u :]
        hh = _act(self.activation, xp[:, 2 * u :] + recurrent_h)
        h_new = z * h + (1.0 - z) * hh
        return h_new, [h_new]

    def _biases(self) -> tuple[np.ndarray | float, np.ndarray | float]:
        if self.bias is None:
            return 0.0, 0.0
        if self.reset_after:
            return self.bias[0], self.bias[1]
        return self.bias, 0.0


@dataclass(frozen=True)
class LSTMCell:
    """Gates i, f, c, o in that column order; states `[h, c]` (SEMANTICS.md §1)."""

    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: np.ndarray | None
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"

    @classmethod
    def from_config(cls, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = "") -> LSTMCell:
        units = int(config["units"])
        w = _load_weights(name, config, weights, 4, (4 * units,))
        return cls(
            w.kernel,
            w.recurrent_kernel,
            w.bias,
            _activation(config, "activation", "tanh"),
            _activation(config, "recurrent_activation", "sigmoid"),
        )

    @property
    def units(self) -> int:
        return int(self.recurrent_kernel.shape[0])

    @property
    def state_count(self) -> int:
        return 2

    def step(self, x_t: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, States]:
        h, c = states
        zz = x_t @ self.kernel + h @ self.recurrent_kernel
        if self.bias is not None:
            zz = zz + self.bias
        z_i, z_f, z_c, z_o = np.split(zz, 4, axis=-1)
        i = _act(self.recurrent_activation, z_i)
        f = _act(self.recurrent_activation, z_f)
        c_new = f * c + i * _act(self.activation, z_c)
        o = _act(self.recurrent_activation, z_o)
        h_new = o * _act(self.activation, c_new)
        return h_new, [h_new, c_new]


@dataclass(frozen=True)
class StackedCells:
    """Keras `StackedRNNCells`: the cells run one after the other at each timestep, each reading the previous one's
    output; the states are every cell's, in cell order (LSTM `h, c`); the output is the last cell's."""

    cells: tuple[SimpleRNNCell | GRUCell | LSTMCell, ...]

    @property
    def units(self) -> int:
        return self.cells[-1].units

    @property
    def state_count(self) -> int:
        return sum(c.state_count for c in self.cells)

    @property
    def state_units(self) -> tuple[int, ...]:
        return tuple(c.units for c in self.cells for _ in range(c.state_count))

    def step(self, x_t: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, States]:
        new_states: States = []
        offset = 0
        for cell in self.cells:
            x_t, own = cell.step(x_t, states[offset : offset + cell.state_count])
            offset += cell.state_count
            new_states += own
        return x_t, new_states


def make_cell(
    class_name: str, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = ""
) -> SimpleRNNCell | GRUCell | LSTMCell:
    """The cell of a recurrent layer class (`SimpleRNN`, `GRU`, `LSTM`), built from its config and weights."""
    from rnnserve.kinds.base import recurrent_kind
    from rnnserve.kinds.recurrent import RecurrentKind

    kind = recurrent_kind(class_name, name)
    assert isinstance(kind, RecurrentKind)
    return kind.make_cell(config, weights, name)
