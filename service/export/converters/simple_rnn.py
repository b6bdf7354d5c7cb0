"""SimpleRNN: `h_t = activation(x_t K + b + h_{t-1} R)`; the output is the state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.export.activations import emit_activation
from service.export.builder import GraphBuilder
from service.export.context import LayerCall, LayerResult
from service.export.converters.native import native_cell
from service.export.converters.recurrent import (
    Cell,
    cell_activation,
    convert_recurrent,
    sequence_input,
    wants_unroll,
)
from service.export.registry import register_converter
from service.export.weights import check_weights


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
    fused = native_cell(g, "SimpleRNN", config, weights, name) if native else None
    return Cell(units, g.initializer(weights["kernel"], f"{name}/kernel"), bias, step, fused)


@register_converter("SimpleRNN")
def convert_simple_rnn(g: GraphBuilder, call: LayerCall) -> LayerResult:
    check_weights(call.layer, sequence_input(call).shape[-1])
    cell = build_cell(
        g, call.layer.config, call.layer.weights, call.layer.name, native=not wants_unroll(call.layer, call.unroll)
    )
    return convert_recurrent(g, call, cell)
