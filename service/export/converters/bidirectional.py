"""Bidirectional(SimpleRNN|GRU|LSTM) (SEMANTICS §3-4).

The forward pass runs as the inner layer says; the backward pass reads the sequence the other way
(`go_backwards` negated, as Keras builds `backward_layer`). With `return_sequences` the backward outputs are
flipped back into input time order, and Keras forces `zero_output_for_mask = return_sequences` on both passes.
States: forward then backward (LSTM `h, c` each).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from service.errors import UnsupportedLayer
from service.export.builder import GraphBuilder
from service.export.context import LayerCall, LayerResult, Value
from service.export.converters import gru, lstm, simple_rnn
from service.export.converters.recurrent import (
    Cell,
    Direction,
    output_value,
    run_direction,
    sequence_input,
    state_value,
    wants_unroll,
)
from service.export.registry import register_converter
from service.export.weights import check_weights, sub_weights
from service.spec import rnn_state_names


class CellBuilder(Protocol):
    def __call__(
        self, g: GraphBuilder, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str, *, native: bool
    ) -> Cell: ...


CELL_BUILDERS: Mapping[str, CellBuilder] = {
    "SimpleRNN": simple_rnn.build_cell,
    "GRU": gru.build_cell,
    "LSTM": lstm.build_cell,
}
MERGE_OPS = {"concat": "Concat", "sum": "Add", "mul": "Mul", "ave": "Add"}


def _merge(g: GraphBuilder, mode: str | None, forward: Value, backward: Value, units: int) -> list[Value]:
    if mode is None:
        return [forward, backward]
    if mode not in MERGE_OPS:
        raise UnsupportedLayer(f"Bidirectional merge_mode={mode!r}; expected one of {sorted(MERGE_OPS)} or None")
    if mode == "concat":
        merged = g.op("Concat", forward.name, backward.name, axis=-1, hint="bidirectional")
        return [Value(merged, (*forward.shape[:-1], 2 * units), mask=forward.mask, time_major=forward.time_major)]
    merged = g.op(MERGE_OPS[mode], forward.name, backward.name, hint="bidirectional")
    if mode == "ave":
        merged = g.op("Div", merged, g.scalar(2.0))
    return [Value(merged, forward.shape, mask=forward.mask, time_major=forward.time_major)]


@register_converter("Bidirectional")
def convert_bidirectional(g: GraphBuilder, call: LayerCall) -> LayerResult:
    layer = call.layer
    inner = layer.config["layer"]
    inner_class, inner_config = inner["class_name"], inner["config"]
    if inner_class not in CELL_BUILDERS:
        raise UnsupportedLayer(f"layer {layer.name!r}: Bidirectional({inner_class}) is not supported", layer=layer.name)
    if layer.config.get("backward_layer"):
        raise UnsupportedLayer(f"layer {layer.name!r}: a custom Bidirectional backward_layer is not supported")
    x = sequence_input(call)
    check_weights(layer, x.shape[-1])
    build = CELL_BUILDERS[inner_class]
    units = int(inner_config["units"])
    sequences = bool(inner_config.get("return_sequences", False))
    go_backwards = bool(inner_config.get("go_backwards", False))
    unroll = wants_unroll(layer, call.unroll)
    forced = {"return_sequences": sequences, "zero_output_for_mask": sequences, "unroll": unroll}
    passes = {
        "forward": Direction(go_backwards=go_backwards, **forced),
        "backward": Direction(go_backwards=not go_backwards, reverse_output=sequences, **forced),
    }
    n_states = len(rnn_state_names(inner_class))
    outputs: list[Value] = []
    finals: list[str] = []
    for k, (direction_name, direction) in enumerate(passes.items()):
        name = f"{layer.name}/{direction_name}"
        cell = build(g, inner_config, sub_weights(layer.weights, direction_name), name, native=not unroll)
        initial = call.initial_state[k * n_states : (k + 1) * n_states]
        y, states = run_direction(g, cell, x, initial, direction, hint=name)
        outputs.append(output_value(y, x, units, sequences))
        finals.extend(states)
    merged = _merge(g, layer.config.get("merge_mode", "concat"), outputs[0], outputs[1], units)
    if inner_config.get("return_state", False):
        merged += [state_value(s, x, units) for s in finals]
    return LayerResult(tuple(merged), tuple(finals))
