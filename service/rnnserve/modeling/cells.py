"""RNN cells and the RNN layer around them (Keras `SimpleRNNCell`, `GRUCell`, `LSTMCell`, `StackedRNNCells`, `RNN`).

A cell holds the arguments of its layer class without the loop arguments (`return_sequences`, ...): it is built
with a layer of that class, which validates them, initialises the weights and writes the config. `RNN(cell)` adds
the loop; `RNN([cells])` / `RNN(StackedRNNCells(cells))` runs the cells one after the other at each timestep.
Weights and states are named as the importers name them (`rnnserve.kinds.rnn`): a single cell's `kernel`,
`recurrent_kernel`, `bias`; stacked cells' prefixed with Keras' saving name of each cell (`gru_cell/kernel`, ...).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from rnnserve.errors import InvalidArgument
from rnnserve.kinds import rnn
from rnnserve.modeling import arguments
from rnnserve.modeling.base import Layer, require_float_input
from rnnserve.modeling.naming import unique_name
from rnnserve.modeling.recurrent import GRU, LSTM, RecurrentLayer, SimpleRNN, loop_flags
from rnnserve.modeling.serialization import dtype_policy, keras_object
from rnnserve.modeling.tensors import KerasTensor, Shape

_LOOP_ARGUMENTS = frozenset(rnn.LOOP_DEFAULTS) | {"activity_regularizer", "input_shape", "input_dim"}
_LAYER_ONLY_KEYS = frozenset(rnn.LOOP_DEFAULTS) | {"activity_regularizer"}


class RNNCell:
    """One cell: the arguments of `layer_class` less the loop's, validated by a layer of that class."""

    class_name: ClassVar[str]
    prefix: ClassVar[str]
    layer_class: ClassVar[type[RecurrentLayer]]
    module: ClassVar[str] = "keras.layers"

    def __init__(self, units: Any, **kwargs: Any) -> None:
        for key in kwargs:
            if key in _LOOP_ARGUMENTS:
                raise InvalidArgument(
                    f"Unrecognized keyword arguments passed to {self.class_name}: {{{key!r}: {kwargs[key]!r}}} "
                    "(a cell takes no loop arguments: give them to layer_rnn())",
                    argument=key,
                )
        name = arguments.name("name", kwargs.pop("name", None)) or unique_name(self.prefix)
        self.layer = self.layer_class(units, name=name, **kwargs)
        self.name = name

    @property
    def units(self) -> int:
        return self.layer.units

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.layer.state_names

    def get_config(self) -> dict[str, Any]:
        """Keras' cell config: the layer's without the loop arguments (and with the dropout seed)."""
        config = {k: v for k, v in self.layer.get_config().items() if k not in _LAYER_ONLY_KEYS}
        return {**config, "dtype": dtype_policy(), "seed": self.layer.seed}

    def serialize(self) -> dict[str, Any]:
        return keras_object(self.module, self.class_name, self.get_config())

    def build_weights(self, features: int) -> dict[str, np.ndarray]:
        return self.layer.build_weights((None, None, features))


class SimpleRNNCell(RNNCell):
    class_name = "SimpleRNNCell"
    prefix = "simple_rnn_cell"
    layer_class = SimpleRNN


class GRUCell(RNNCell):
    class_name = "GRUCell"
    prefix = "gru_cell"
    layer_class = GRU


class LSTMCell(RNNCell):
    class_name = "LSTMCell"
    prefix = "lstm_cell"
    layer_class = LSTM


class StackedRNNCells:
    """Cells run one after the other at each timestep, each reading the previous one's output."""

    class_name = rnn.STACKED
    module = "keras.layers"

    def __init__(self, cells: Any, *more: Any, name: str | None = None) -> None:
        listed = [*(cells if isinstance(cells, (list, tuple)) else [cells]), *more]
        if not listed or not all(isinstance(c, RNNCell) for c in listed):
            raise arguments.invalid(
                "cells", cells, "must be a list of RNN cells (rnn_cell_simple, rnn_cell_gru, rnn_cell_lstm)"
            )
        self.cells: list[RNNCell] = listed
        self.name = arguments.name("name", name) or unique_name("stacked_rnn_cells")

    def serialize(self) -> dict[str, Any]:
        config = {
            "name": self.name,
            "trainable": True,
            "dtype": dtype_policy(),
            "cells": [c.serialize() for c in self.cells],
        }
        return keras_object(self.module, self.class_name, config)


class RNN(Layer):
    """Keras `RNN`: the loop around a cell, or around stacked cells (a list, or `StackedRNNCells`)."""

    class_name = rnn.RNN.class_name
    prefix = "rnn"

    def __init__(
        self,
        cell: Any,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(list(cell))
        if not isinstance(cell, (RNNCell, StackedRNNCells)):
            raise arguments.invalid(
                "cell",
                cell,
                "must be an RNN cell (rnn_cell_simple, rnn_cell_gru, rnn_cell_lstm), a list of them or "
                "rnn_cells_stack()",
            )
        self.cell = cell
        self.cells = cell.cells if isinstance(cell, StackedRNNCells) else [cell]
        self.return_sequences = arguments.flag("return_sequences", return_sequences)
        self.return_state = arguments.flag("return_state", return_state)
        self.go_backwards = arguments.flag("go_backwards", go_backwards)
        self.stateful = arguments.flag("stateful", stateful)
        self.unroll = arguments.flag("unroll", unroll)
        self.zero_output_for_mask = arguments.flag("zero_output_for_mask", zero_output_for_mask)

    def __call__(self, inputs: Any, initial_state: Any = None) -> KerasTensor | list[KerasTensor]:
        return super().__call__(inputs, _flat_states(initial_state))

    @property
    def stacked(self) -> bool:
        return isinstance(self.cell, StackedRNNCells)

    @property
    def units(self) -> int:
        """The width of the output: the last cell's units."""
        return self.cells[-1].units

    @property
    def state_widths(self) -> list[int]:
        return [c.units for c in self.cells for _ in c.state_names]

    def copy(self, name: str, **loop: Any) -> RNN:
        """A fresh RNN with fresh cells of the same arguments (new weights) and `loop` arguments changed, as Keras
        builds Bidirectional's two directions from the wrapped layer's config."""
        cells = [type(c)(**c.get_config()) for c in self.cells]
        cell: RNNCell | StackedRNNCells = StackedRNNCells(cells, name=self.cell.name) if self.stacked else cells[0]
        return RNN(cell, **{**loop_flags(self), **loop}, name=name)

    def layer_config(self) -> dict[str, Any]:
        return {**loop_flags(self), "cell": self.cell.serialize()}

    def _keys(self) -> list[str]:
        """Each cell's weight prefix: Keras' saving name of the cell among the stack (as `rnnserve.kinds.rnn`)."""
        used: dict[str, int] = {}
        keys = []
        for c in self.cells:
            count = used.get(c.prefix, 0)
            used[c.prefix] = count + 1
            keys.append(c.prefix if count == 0 else f"{c.prefix}_{count}")
        return keys

    def build_weights(self, input_shape: Shape) -> dict[str, np.ndarray]:
        features = input_shape[-1]
        assert features is not None  # check_call guarantees it
        if not self.stacked:
            return self.cells[0].build_weights(features)
        weights: dict[str, np.ndarray] = {}
        for key, c in zip(self._keys(), self.cells, strict=True):
            weights.update({f"{key}/{k}": v for k, v in c.build_weights(features).items()})
            features = c.units
        return weights

    def check_call(self, x: KerasTensor, initial_state: tuple[KerasTensor, ...]) -> None:
        if initial_state and x.has_mask:
            raise InvalidArgument(
                f"RNN {self.name!r} is called with initial_state on a masked input: Keras 3 then drops the mask, so "
                "Keras and rnnserve would compute different numbers. Remove the masking or the initial_state",
                argument="initial_state",
            )
        if len(x.shape) != 3 or x.shape[-1] is None:
            raise arguments.invalid("object", x, "must be a (batch, time, features) tensor with known features for RNN")
        require_float_input(self, x)
        if self.unroll and x.shape[1] is None:
            raise arguments.invalid("unroll", True, "needs a known time dimension: give it in the input shape")
        if self.stateful and x.shape[0] is None:
            raise InvalidArgument(
                f"`stateful=TRUE` in RNN {self.name!r} needs a fixed batch size, but the input has shape {x.shape}: "
                "use layer_input(batch_shape = c(B, T, F)). Received: stateful=True",
                argument="stateful",
            )
        widths = self.state_widths
        if initial_state:
            if len(initial_state) != len(widths):
                raise arguments.invalid("initial_state", initial_state, f"must hold {len(widths)} tensor(s)")
            for state, width in zip(initial_state, widths, strict=True):
                if len(state.shape) != 2 or state.shape[-1] != width:
                    raise arguments.invalid("initial_state", state, f"must have shape (batch, {width})")

    def output_specs(self, x: KerasTensor) -> list[tuple[Shape, str, bool]]:
        batch = x.shape[0]
        units = self.cells[-1].units
        y: Shape = (batch, x.shape[1], units) if self.return_sequences else (batch, units)
        outputs = [(y, "float32", x.has_mask and self.return_sequences)]
        if self.return_state:
            outputs += [((batch, w), "float32", False) for w in self.state_widths]
        return outputs


def _flat_states(initial_state: Any) -> Any:
    """Keras nests an LSTM cell's [h, c] among stacked cells' initial states; the layer takes them flat."""
    if not isinstance(initial_state, (list, tuple)):
        return initial_state
    flat: list[Any] = []
    for item in initial_state:
        flat += list(item) if isinstance(item, (list, tuple)) else [item]
    return flat
