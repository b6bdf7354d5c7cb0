"""SimpleRNN, GRU and LSTM layers: Keras 3 arguments, validation, configs and freshly initialised weights.

Weights follow SEMANTICS §1: kernel (F, gU), recurrent_kernel (U, gU), bias (gU,) with g = 1, 3, 4 gates;
GRU with reset_after=True has a (2, 3U) bias; LSTM with unit_forget_bias has ones in its f block.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from rnnserve.errors import InvalidArgument
from rnnserve.kinds import gru, lstm, simple_rnn
from rnnserve.layers.activations import canonical_activation, require_shape_preserving
from rnnserve.modeling import arguments, constraints, initializers, regularizers
from rnnserve.modeling.base import Layer, require_float_input
from rnnserve.modeling.serialization import serialize_or_none
from rnnserve.modeling.tensors import KerasTensor, Shape

_IMPLEMENTATIONS = (1, 2)
_USE_CUDNN = ("auto", True, False)


def keras3_activation(name: Any, argument: str, *, in_cell: bool = False) -> str:
    """A Keras 3 activation name in canonical form (`hard_sigmoid_keras2` exists only in Keras 2 files); with
    `in_cell`, one that keeps the shape of the state."""
    try:
        canonical = canonical_activation(name, "3", argument=argument)
        if in_cell:
            require_shape_preserving(canonical, argument=argument)
    except InvalidArgument as exc:
        raise InvalidArgument(exc.detail, argument=argument) from None
    if canonical == "hard_sigmoid_keras2":
        raise arguments.invalid(argument, name, "is not a Keras 3 activation")
    return canonical


LOOP_FLAGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll", "zero_output_for_mask")
"""The arguments of Keras' recurrent loop, written into a layer's config in this order."""


def loop_flags(layer: Any) -> dict[str, Any]:
    """A recurrent layer's (or an `RNN`'s) `LOOP_FLAGS` by name, as its config writes them."""
    return {name: getattr(layer, name) for name in LOOP_FLAGS}


class RecurrentLayer(Layer):
    """What SimpleRNN, GRU and LSTM share: the RNN arguments, the three weights and the output shapes."""

    gates: ClassVar[int]
    state_names: ClassVar[tuple[str, ...]] = ("h",)

    def __init__(
        self,
        units: Any,
        activation: Any = "tanh",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        seed: int | None = None,
        zero_output_for_mask: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = arguments.positive_int("units", units)
        self.activation = keras3_activation(activation, "activation", in_cell=True)
        self.use_bias = arguments.flag("use_bias", use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, "kernel_initializer")
        self.recurrent_initializer = initializers.get(recurrent_initializer, "recurrent_initializer")
        self.bias_initializer = initializers.get(bias_initializer, "bias_initializer")
        self.kernel_regularizer = regularizers.get(kernel_regularizer, "kernel_regularizer")
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer, "recurrent_regularizer")
        self.bias_regularizer = regularizers.get(bias_regularizer, "bias_regularizer")
        self.activity_regularizer = regularizers.get(activity_regularizer, "activity_regularizer")
        self.kernel_constraint = constraints.get(kernel_constraint, "kernel_constraint")
        self.recurrent_constraint = constraints.get(recurrent_constraint, "recurrent_constraint")
        self.bias_constraint = constraints.get(bias_constraint, "bias_constraint")
        self.dropout = arguments.fraction("dropout", dropout)
        self.recurrent_dropout = arguments.fraction("recurrent_dropout", recurrent_dropout)
        self.return_sequences = arguments.flag("return_sequences", return_sequences)
        self.return_state = arguments.flag("return_state", return_state)
        self.go_backwards = arguments.flag("go_backwards", go_backwards)
        self.stateful = arguments.flag("stateful", stateful)
        self.unroll = arguments.flag("unroll", unroll)
        self.seed = arguments.optional_int("seed", seed)
        self.zero_output_for_mask = arguments.flag("zero_output_for_mask", zero_output_for_mask)

    # ---- config --------------------------------------------------------------------------------------------------

    def rnn_flags(self) -> dict[str, Any]:
        return loop_flags(self)

    def initializer_configs(self) -> dict[str, Any]:
        return {
            "kernel_initializer": self.kernel_initializer.serialize(),
            "recurrent_initializer": self.recurrent_initializer.serialize(),
            "bias_initializer": self.bias_initializer.serialize(),
        }

    def penalty_configs(self) -> dict[str, Any]:
        """Regularizers, constraints and dropout rates, in Keras key order."""
        return {
            "kernel_regularizer": serialize_or_none(self.kernel_regularizer),
            "recurrent_regularizer": serialize_or_none(self.recurrent_regularizer),
            "bias_regularizer": serialize_or_none(self.bias_regularizer),
            "activity_regularizer": serialize_or_none(self.activity_regularizer),
            "kernel_constraint": serialize_or_none(self.kernel_constraint),
            "recurrent_constraint": serialize_or_none(self.recurrent_constraint),
            "bias_constraint": serialize_or_none(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
        }

    def spec_config(self) -> dict[str, Any]:
        """The normalised config, with the dropout seed even where Keras 3 does not store it (SimpleRNN)."""
        return {**super().spec_config(), "seed": self.seed}

    def build_config(self) -> dict[str, Any]:
        node = self.node
        if node is not None and node.initial_state:
            return {
                "shapes_dict": {
                    "sequences_shape": list(node.inputs[0].shape),
                    "initial_state_shape": [list(s.shape) for s in node.initial_state],
                }
            }
        return super().build_config()

    # ---- weights -------------------------------------------------------------------------------------------------

    def bias_shape(self) -> tuple[int, ...]:
        return (self.gates * self.units,)

    def initial_bias(self) -> np.ndarray:
        return self.bias_initializer(self.bias_shape())

    def build_weights(self, input_shape: Shape) -> dict[str, np.ndarray]:
        features = input_shape[-1]
        assert features is not None  # check_call guarantees it
        weights = {
            "kernel": self.kernel_initializer((features, self.gates * self.units)),
            "recurrent_kernel": self.recurrent_initializer((self.units, self.gates * self.units)),
        }
        if self.use_bias:
            weights["bias"] = self.initial_bias()
        return weights

    # ---- calls ---------------------------------------------------------------------------------------------------

    def check_call(self, x: KerasTensor, initial_state: tuple[KerasTensor, ...]) -> None:
        if initial_state and x.has_mask:
            raise InvalidArgument(
                f"{self.class_name} {self.name!r} is called with initial_state on a masked input: Keras 3 then "
                "drops the mask, so Keras and rnnserve would compute different numbers. Remove the masking "
                "(Embedding mask_zero / layer_masking) or the initial_state",
                argument="initial_state",
            )
        if len(x.shape) != 3 or x.shape[-1] is None:
            raise arguments.invalid(
                "object", x, f"must be a (batch, time, features) tensor with known features for {self.class_name}"
            )
        require_float_input(self, x)
        if self.unroll and x.shape[1] is None:
            raise arguments.invalid("unroll", True, "needs a known time dimension: give it in the input shape")
        if self.stateful and x.shape[0] is None:
            raise InvalidArgument(
                f"`stateful=TRUE` in {self.class_name} {self.name!r} needs a fixed batch size, but the input has "
                f"shape {x.shape}: use layer_input(batch_shape = c(B, T, F)) or "
                "keras_model_sequential(input_shape = c(T, F), batch_size = B). Received: stateful=True",
                argument="stateful",
            )
        self.check_initial_state(initial_state)

    def check_initial_state(self, initial_state: tuple[KerasTensor, ...]) -> None:
        if not initial_state:
            return
        if len(initial_state) != len(self.state_names):
            raise arguments.invalid(
                "initial_state", initial_state, f"must hold {len(self.state_names)} tensor(s) for {self.class_name}"
            )
        for state in initial_state:
            if len(state.shape) != 2 or state.shape[-1] != self.units:
                raise arguments.invalid("initial_state", state, f"must have shape (batch, {self.units})")

    def output_specs(self, x: KerasTensor) -> list[tuple[Shape, str, bool]]:
        batch = x.shape[0]
        y: Shape = (batch, x.shape[1], self.units) if self.return_sequences else (batch, self.units)
        outputs = [(y, "float32", x.has_mask and self.return_sequences)]
        if self.return_state:
            outputs += [((batch, self.units), "float32", False) for _ in self.state_names]
        return outputs


class SimpleRNN(RecurrentLayer):
    class_name = simple_rnn.SimpleRNN.class_name
    prefix = "simple_rnn"
    gates = 1

    def layer_config(self) -> dict[str, Any]:
        return {
            **self.rnn_flags(),
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            **self.initializer_configs(),
            **self.penalty_configs(),
        }


class _GatedLayer(RecurrentLayer):
    """GRU and LSTM: a recurrent activation, `implementation` (accepted, not stored) and a stored seed."""

    def __init__(
        self,
        units: Any,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        *,
        implementation: int = 2,
        use_cudnn: Any = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(units, activation, **kwargs)
        self.recurrent_activation = keras3_activation(recurrent_activation, "recurrent_activation", in_cell=True)
        self.implementation = arguments.choice("implementation", implementation, _IMPLEMENTATIONS)
        self.use_cudnn = arguments.choice("use_cudnn", use_cudnn, _USE_CUDNN)


class GRU(_GatedLayer):
    class_name = gru.GRU.class_name
    prefix = "gru"
    gates = 3

    def __init__(self, units: Any, *args: Any, reset_after: bool = True, **kwargs: Any) -> None:
        super().__init__(units, *args, **kwargs)
        self.reset_after = arguments.flag("reset_after", reset_after)

    def bias_shape(self) -> tuple[int, ...]:
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def layer_config(self) -> dict[str, Any]:
        return {
            **self.rnn_flags(),
            "units": self.units,
            "activation": self.activation,
            "recurrent_activation": self.recurrent_activation,
            "use_bias": self.use_bias,
            **self.initializer_configs(),
            **self.penalty_configs(),
            "reset_after": self.reset_after,
            "seed": self.seed,
        }


class LSTM(_GatedLayer):
    class_name = lstm.LSTM.class_name
    prefix = "lstm"
    gates = 4
    state_names = ("h", "c")

    def __init__(self, units: Any, *args: Any, unit_forget_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(units, *args, **kwargs)
        self.unit_forget_bias = arguments.flag("unit_forget_bias", unit_forget_bias)

    def initial_bias(self) -> np.ndarray:
        if not self.unit_forget_bias:
            return super().initial_bias()
        units = self.units
        return np.concatenate(
            [self.bias_initializer((units,)), np.ones(units, np.float32), self.bias_initializer((2 * units,))]
        )

    def layer_config(self) -> dict[str, Any]:
        return {
            **self.rnn_flags(),
            "units": self.units,
            "activation": self.activation,
            "recurrent_activation": self.recurrent_activation,
            "use_bias": self.use_bias,
            **self.initializer_configs(),
            "unit_forget_bias": self.unit_forget_bias,
            **self.penalty_configs(),
            "seed": self.seed,
        }
