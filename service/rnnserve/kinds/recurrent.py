"""What SimpleRNN, GRU and LSTM share: a cell run over time (`RecurrentKind`); each has its own module. What they
share with `RNN(cell)` (`kinds/rnn.py`), and what Bidirectional asks of the layer it wraps: `LoopKind`.

Config keys (Keras 3 names, every key present): `name, units, activation, use_bias, kernel_initializer,
recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer, bias_regularizer,
activity_regularizer, kernel_constraint, recurrent_constraint, bias_constraint, dropout, recurrent_dropout,
return_sequences, return_state, go_backwards, stateful, unroll, zero_output_for_mask, seed, time_major`;
GRU adds `recurrent_activation, reset_after`; LSTM adds `recurrent_activation, unit_forget_bias`.
Weights (SEMANTICS §1): `kernel (F, gU)`, `recurrent_kernel (U, gU)`, `bias (gU,)` with g gates
(GRU `reset_after`: `bias (2, gU)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from rnnserve.export.builder import GraphBuilder
from rnnserve.export.context import LayerCall, LayerResult
from rnnserve.export.converters.native import NativeForm
from rnnserve.export.converters.recurrent import Cell, convert_recurrent, sequence_input, wants_unroll
from rnnserve.export.weights import check_weights
from rnnserve.kinds.base import KEEP_MASK, NO_MASK, REQUIRED, LayerKind, MaskRule, Shape
from rnnserve.spec import LayerSpec

if TYPE_CHECKING:
    from rnnserve.layers.cells import GRUCell, LSTMCell, SimpleRNNCell
    from rnnserve.layers.model import Node
    from rnnserve.layers.recurrent import RecurrentLayer

RNN_DEFAULTS: Mapping[str, Any] = {
    "units": REQUIRED,
    "activation": "tanh",
    "use_bias": True,
    "kernel_initializer": "glorot_uniform",
    "recurrent_initializer": "orthogonal",
    "bias_initializer": "zeros",
    "kernel_regularizer": None,
    "recurrent_regularizer": None,
    "bias_regularizer": None,
    "activity_regularizer": None,
    "kernel_constraint": None,
    "recurrent_constraint": None,
    "bias_constraint": None,
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
    "return_sequences": False,
    "return_state": False,
    "go_backwards": False,
    "stateful": False,
    "unroll": False,
    "zero_output_for_mask": False,
    "seed": None,
    "time_major": False,
}


def cell_vars_path(cell_key: str = "") -> str:
    """Where a `.keras` archive keeps a recurrent layer's cell variables, under the layer's group: `cell/vars`, or
    for stacked cells the variables of the cell saved as `cell_key` (`cell/cells/gru_cell/vars`)."""
    return f"cell/cells/{cell_key}/vars" if cell_key else "cell/vars"


class LoopKind(LayerKind):
    """A layer that runs a cell, or stacked cells, over the time axis, with Keras' loop arguments
    (`return_sequences, return_state, go_backwards, stateful, unroll, zero_output_for_mask, time_major`) at the top
    of its normalised config: SimpleRNN, GRU, LSTM and their cuDNN variants (`RecurrentKind`), and `RNN(cell)`.
    Bidirectional wraps any of them through the methods below."""

    is_recurrent = True
    call_params = ("sequences", "initial_state", "mask", "training")
    takes_initial_state = True
    uses_mask = True

    def loop_config(self, config: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
        """`config` with loop arguments changed (Bidirectional: `go_backwards` flipped, `zero_output_for_mask`)."""
        return {**config, **changes}

    def state_widths(self, config: Mapping[str, Any]) -> list[int]:
        """The width of every state, in `state_names` order."""
        raise NotImplementedError

    def recurrent_layer(
        self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = ""
    ) -> RecurrentLayer:
        """The numpy reference of the layer (`rnnserve.layers.recurrent`)."""
        raise NotImplementedError

    def build_cell(
        self, g: GraphBuilder, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str, *, native: bool
    ) -> Cell:
        """The ONNX cell (one step); with `native`, also its fused op for unmasked passes, where it has one."""
        raise NotImplementedError

    def recurrent_config(self, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return config

    def output_mask(self, config: Mapping[str, Any], index: int) -> MaskRule:
        return KEEP_MASK if index == 0 and config["return_sequences"] else NO_MASK

    def reads_backwards(self, config: Mapping[str, Any]) -> bool:
        return bool(config.get("go_backwards"))

    def reference(self, layer: LayerSpec) -> Node:
        from rnnserve.layers.model import RecurrentNode

        return RecurrentNode(self.recurrent_layer(layer.config, layer.weights, layer.name))


class RecurrentKind(LoopKind):
    """A Keras recurrent layer: one cell (`cell_states`, `gates` weight blocks) run over the time axis."""

    defaults: ClassVar[Mapping[str, Any]] = RNN_DEFAULTS
    activation_keys: ClassVar[tuple[str, ...]] = ("activation",)
    gates: ClassVar[int] = 1
    cell_states: ClassVar[tuple[str, ...]] = ("h",)
    native: ClassVar[NativeForm]  # its onnxruntime fused op

    # ---- the parts each recurrent kind module provides -------------------------------------------------------

    def make_cell(
        self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = ""
    ) -> SimpleRNNCell | GRUCell | LSTMCell:
        """The numpy reference cell (`rnnserve.layers.cells`)."""
        raise NotImplementedError

    def split_bias(self, config: Mapping[str, Any]) -> bool:
        """Whether the bias holds input and recurrent rows `(2, gU)` (GRU reset_after)."""
        return False

    # ---- shared ------------------------------------------------------------------------------------------------

    def weight_shapes(self, config: Mapping[str, Any], in_features: int | None) -> dict[str, Shape]:
        units = int(config["units"])
        width = self.gates * units
        shapes: dict[str, Shape] = {"kernel": (in_features, width), "recurrent_kernel": (units, width)}
        if config.get("use_bias", True):
            shapes["bias"] = (2, width) if self.split_bias(config) else (width,)
        return shapes

    def output_features(self, config: Mapping[str, Any], in_features: int | None) -> list[int | None]:
        units = int(config["units"])
        states = len(self.cell_states) if config["return_state"] else 0
        return [units] * (1 + states)

    def vars_path(self, prefix: str) -> str:
        return cell_vars_path()

    def output_count(self, config: Mapping[str, Any]) -> int:
        return 1 + len(self.cell_states) if config.get("return_state") else 1

    def state_names(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        return self.cell_states

    def state_widths(self, config: Mapping[str, Any]) -> list[int]:
        return [int(config["units"])] * len(self.cell_states)

    def recurrent_layer(
        self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = ""
    ) -> RecurrentLayer:
        from rnnserve.layers.recurrent import RecurrentLayer

        return RecurrentLayer.from_config(self.class_name, config, weights, name)

    def convert(self, g: GraphBuilder, call: LayerCall) -> LayerResult:
        check_weights(call.layer, sequence_input(call).shape[-1])
        native = not wants_unroll(call.layer, call.unroll)
        cell = self.build_cell(g, call.layer.config, call.layer.weights, call.layer.name, native=native)
        return convert_recurrent(g, call, cell)
