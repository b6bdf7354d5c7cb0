"""Bidirectional and TimeDistributed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rnnserve.errors import InvalidArgument
from rnnserve.kinds import bidirectional, time_distributed
from rnnserve.modeling import arguments
from rnnserve.modeling.base import Layer
from rnnserve.modeling.cells import RNN
from rnnserve.modeling.core import Dense
from rnnserve.modeling.recurrent import RecurrentLayer
from rnnserve.modeling.tensors import KerasTensor, Shape

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _copy_rnn(layer: RecurrentLayer | RNN, name: str, go_backwards: bool) -> RecurrentLayer | RNN:
    """A fresh layer from `layer`'s config, as Keras builds the two directions (new weights, same arguments)."""
    forced = layer.return_sequences  # Keras forces zero_output_for_mask on both directions (SEMANTICS §4)
    if isinstance(layer, RNN):
        return layer.copy(name, go_backwards=go_backwards, zero_output_for_mask=forced)
    config = {**layer.get_config(), "name": name, "go_backwards": go_backwards, "zero_output_for_mask": forced}
    return type(layer)(**config)


def _state_widths(layer: RecurrentLayer | RNN) -> list[int]:
    return layer.state_widths if isinstance(layer, RNN) else [layer.units] * len(layer.state_names)


class Bidirectional(Layer):
    """Runs a copy of `layer` forwards and one backwards and merges them (SEMANTICS §3); `merge_mode=None` gives
    the two sequences unmerged, forward then backward."""

    class_name = bidirectional.Bidirectional.class_name
    prefix = "bidirectional"

    def __init__(
        self,
        layer: Any,
        merge_mode: str | None = "concat",
        weights: Sequence[Any] | None = None,
        backward_layer: Any = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(layer, (RecurrentLayer, RNN)):
            raise arguments.invalid(
                "layer", layer, "must be a recurrent layer (layer_simple_rnn, layer_gru, layer_lstm or layer_rnn)"
            )
        if backward_layer is not None:
            raise arguments.invalid(
                "backward_layer", backward_layer, "is not supported: only NULL (a copy of `layer` run backwards)"
            )
        super().__init__(**kwargs)
        self.merge_mode = arguments.choice("merge_mode", merge_mode, MERGE_MODES)
        base = layer.name.removeprefix("forward_").removeprefix("backward_")
        self.forward = _copy_rnn(layer, f"forward_{base}", layer.go_backwards)
        self.backward = _copy_rnn(layer, f"backward_{base}", not layer.go_backwards)
        self.initial_weights = None if weights is None else list(weights)
        self.stateful = layer.stateful
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state

    @property
    def state_count(self) -> int:
        return len(_state_widths(self.forward))

    def layer_config(self) -> dict[str, Any]:
        # Keras 3.15 writes backward_layer even when it is the automatic copy.
        return {
            "merge_mode": self.merge_mode,
            "layer": self.forward.serialize(),
            "backward_layer": self.backward.serialize(),
        }

    def spec_config(self) -> dict[str, Any]:
        """The normalised config describes both directions by `layer` (the backward one is its flipped copy)."""
        config = super().spec_config()
        if isinstance(self.forward, RecurrentLayer):
            config["layer"]["config"]["seed"] = self.forward.seed
        return config

    def check_call(self, x: KerasTensor, initial_state: tuple[KerasTensor, ...]) -> None:
        if initial_state and len(initial_state) != 2 * self.state_count:
            raise arguments.invalid(
                "initial_state", initial_state, f"must hold {2 * self.state_count} tensors: forward then backward"
            )
        half = len(initial_state) // 2
        self.forward.check_call(x, initial_state[:half])
        self.backward.check_call(x, initial_state[half:])

    def build_weights(self, input_shape: Shape) -> dict[str, np.ndarray]:
        self.forward.build(input_shape)
        self.backward.build(input_shape)
        if self.initial_weights is not None:
            half = len(self.initial_weights) // 2
            expected = len(self.forward.weights)
            if len(self.initial_weights) != 2 * expected:
                raise arguments.invalid("weights", f"{len(self.initial_weights)} arrays", f"must hold {2 * expected}")
            self.forward.set_weights(self.initial_weights[:half])
            self.backward.set_weights(self.initial_weights[half:])
        return {
            **{f"forward/{k}": v for k, v in self.forward.weights.items()},
            **{f"backward/{k}": v for k, v in self.backward.weights.items()},
        }

    def output_specs(self, x: KerasTensor) -> list[tuple[Shape, str, bool]]:
        units = self.forward.units * (2 if self.merge_mode == "concat" else 1)
        batch = x.shape[0]
        y: Shape = (batch, x.shape[1], units) if self.return_sequences else (batch, units)
        outputs = [(y, "float32", x.has_mask and self.return_sequences)] * (2 if self.merge_mode is None else 1)
        if self.return_state:
            outputs += [((batch, w), "float32", False) for w in 2 * _state_widths(self.forward)]
        return outputs


class TimeDistributed(Layer):
    """Applies a Dense layer to every timestep."""

    class_name = time_distributed.TimeDistributed.class_name
    prefix = "time_distributed"

    def __init__(self, layer: Any, **kwargs: Any) -> None:
        if not isinstance(layer, Dense):
            raise arguments.invalid("layer", layer, "must be a layer_dense() (the only layer rnnserve distributes)")
        if layer.node is not None or layer.owner is not None:
            raise InvalidArgument(f"layer {layer.name!r} is already used: create a new one", argument="layer")
        super().__init__(**kwargs)
        self.layer = layer
        layer.owner = self.name

    def layer_config(self) -> dict[str, Any]:
        return {"layer": self.layer.serialize()}

    def check_call(self, x: KerasTensor, initial_state: tuple[KerasTensor, ...]) -> None:
        super().check_call(x, initial_state)
        if len(x.shape) != 3:
            raise arguments.invalid("object", x, "must be a (batch, time, features) tensor for TimeDistributed")
        self.layer.check_call(KerasTensor((x.shape[0], x.shape[2]), x.dtype, x.node, x.index), ())

    def build_weights(self, input_shape: Shape) -> dict[str, np.ndarray]:
        self.layer.build((input_shape[0], *input_shape[2:]))
        return self.layer.weights

    def output_specs(self, x: KerasTensor) -> list[tuple[Shape, str, bool]]:
        return [((*x.shape[:2], self.layer.units), "float32", x.has_mask)]
