"""SimpleRNN: `h_t = activation(x_t K + b + h_{t-1} R)`; the output is the state (one weight block, state `h`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rnnserve.export.activations import emit_activation
from rnnserve.export.builder import GraphBuilder
from rnnserve.export.converters.native import NativeForm, native_cell
from rnnserve.export.converters.recurrent import Cell, cell_activation
from rnnserve.kinds.base import register_kind
from rnnserve.kinds.recurrent import RecurrentKind
from rnnserve.layers.cells import SimpleRNNCell

# The fused RNN op loses from batch 4 on (bench/bench_graphs.py).
NATIVE = NativeForm("RNN", (0,), ("activation",), state_count=1, max_batch=1)


def build_cell(
    g: GraphBuilder, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str, *, native: bool
) -> Cell:
    """The SimpleRNN cell; with `native`, also its fused ONNX op for unmasked passes."""
    units = int(config["units"])
    activation = cell_activation(config, "activation", name)
    recurrent = g.initializer(weights["recurrent_kernel"], f"{name}/recurrent_kernel")

    def step(b: GraphBuilder, xp_t: str, states: Sequence[str]) -> tuple[str, tuple[str, ...]]:
        h = emit_activation(b, activation, b.op("Add", xp_t, b.op("MatMul", states[0], recurrent)))
        return h, (h,)

    bias = g.initializer(weights["bias"], f"{name}/bias") if "bias" in weights else None
    fused = native_cell(g, NATIVE, config, weights, name) if native else None
    return Cell(units, g.initializer(weights["kernel"], f"{name}/kernel"), bias, step, fused)


class SimpleRNN(RecurrentKind):
    class_name = "SimpleRNN"
    native = NATIVE

    def make_cell(self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = "") -> SimpleRNNCell:
        return SimpleRNNCell.from_config(config, weights, name)

    def build_cell(
        self, g: GraphBuilder, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str, *, native: bool
    ) -> Cell:
        return build_cell(g, config, weights, name, native=native)


register_kind(SimpleRNN())
