"""LSTM, gates in Keras order i, f, c, o (SEMANTICS §1); states `[h, c]`.

`zz = x K + b + h R`; `c = f * c + i * act(zz_c)`; `h = o * act(c)`. The exported weights put the column blocks
in the order i, f, o, c (an exact permutation) so the three sigmoid gates take one activation node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rnnserve.export.activations import emit_activation
from rnnserve.export.builder import GraphBuilder
from rnnserve.export.converters.native import NativeForm, native_cell
from rnnserve.export.converters.recurrent import Cell, activate_gates, cell_activation
from rnnserve.kinds.base import register_kind
from rnnserve.kinds.recurrent import RNN_DEFAULTS, RecurrentKind
from rnnserve.layers.cells import LSTMCell

NATIVE = NativeForm(
    "LSTM", (0, 3, 1, 2), ("recurrent_activation", "activation", "activation"), state_count=2, max_batch=None
)

_IFCO_TO_IFOC = (0, 1, 3, 2)


def _ifoc(array: np.ndarray, units: int) -> np.ndarray:
    """Reorder the last axis's four gate blocks from Keras's i, f, c, o to i, f, o, c."""
    blocks = [array[..., k * units : (k + 1) * units] for k in _IFCO_TO_IFOC]
    return np.concatenate(blocks, axis=-1)


def build_cell(
    g: GraphBuilder, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str, *, native: bool
) -> Cell:
    """The LSTM cell; with `native`, also its fused ONNX op for unmasked passes."""
    units = int(config["units"])
    activation = cell_activation(config, "activation", name)
    gate_activation = cell_activation(config, "recurrent_activation", name)
    recurrent = g.initializer(_ifoc(weights["recurrent_kernel"], units), f"{name}/recurrent_kernel")
    split = g.ints([3 * units, units])

    def step(b: GraphBuilder, xp_t: str, states: Sequence[str]) -> tuple[str, tuple[str, ...]]:
        h, c = states
        gates, cell_in = b.node("Split", [b.op("Add", xp_t, b.op("MatMul", h, recurrent)), split], 2, axis=-1)
        i, f, o = activate_gates(b, gate_activation, gates, 3)
        c_new = b.op("Add", b.op("Mul", f, c), b.op("Mul", i, emit_activation(b, activation, cell_in)), hint="c")
        h_new = b.op("Mul", o, emit_activation(b, activation, c_new), hint="h")
        return h_new, (h_new, c_new)

    bias = g.initializer(_ifoc(weights["bias"], units), f"{name}/bias") if "bias" in weights else None
    fused = native_cell(g, NATIVE, config, weights, name) if native else None
    return Cell(units, g.initializer(_ifoc(weights["kernel"], units), f"{name}/kernel"), bias, step, fused)


class LSTM(RecurrentKind):
    class_name = "LSTM"
    defaults = {**RNN_DEFAULTS, "recurrent_activation": "sigmoid", "unit_forget_bias": True}
    dropped = frozenset({"implementation"})
    activation_keys = ("activation", "recurrent_activation")
    gates = 4
    cell_states = ("h", "c")
    native = NATIVE

    def make_cell(self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = "") -> LSTMCell:
        return LSTMCell.from_config(config, weights, name)

    def build_cell(
        self, g: GraphBuilder, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str, *, native: bool
    ) -> Cell:
        return build_cell(g, config, weights, name, native=native)


register_kind(LSTM())
