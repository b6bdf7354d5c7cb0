"""The layer base class: naming, the Keras keyword arguments every layer takes, weights, and calls on tensors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from rnnserve.errors import InvalidArgument
from rnnserve.importers.keras_layers import normalise_layer
from rnnserve.modeling import arguments
from rnnserve.modeling.naming import unique_name
from rnnserve.modeling.serialization import DTYPE, dtype_policy, keras_object
from rnnserve.modeling.tensors import KerasTensor, Node, Shape

# Keyword arguments Keras 3 removed, with what to do instead (SEMANTICS §7).
_REMOVED_KWARGS: Mapping[str, str] = {
    "batch_input_shape": "Keras 3 rejects it: give the batch size to the input instead, "
    "layer_input(batch_shape = c(B, T, F)) or keras_model_sequential(input_shape = c(T, F), batch_size = B)",
    "batch_size": "Keras 3 rejects it on layers: use layer_input(batch_size = B) or "
    "keras_model_sequential(input_shape = ..., batch_size = B)",
    "time_major": "Keras 3 removed it from every recurrent layer: inputs are (batch, time, features)",
}


def reject_unknown_kwargs(class_name: str, kwargs: Mapping[str, Any]) -> None:
    for key in kwargs:
        if key in _REMOVED_KWARGS:
            raise InvalidArgument(
                f"`{key}` is not accepted by {class_name}: {_REMOVED_KWARGS[key]}. Received: {key}={kwargs[key]!r}",
                argument=key,
            )
    if kwargs:
        raise InvalidArgument(
            f"Unrecognized keyword arguments passed to {class_name}: {dict(kwargs)!r}", argument=next(iter(kwargs))
        )


def check_dtype(value: Any) -> str:
    """Layers compute in float32 only: dtype may be None, "float32" or a float32 DTypePolicy dict."""
    if isinstance(value, Mapping):
        value = value.get("config", {}).get("name")
    if value not in (None, DTYPE):
        raise arguments.invalid("dtype", value, 'must be "float32" (the only compute dtype supported)')
    return DTYPE


def require_float_input(layer: Layer, x: KerasTensor) -> None:
    """Recurrent and Dense layers take float inputs: integer token ids must go through an Embedding first."""
    if x.dtype != DTYPE:
        raise InvalidArgument(
            f"layer {layer.name!r} ({layer.class_name}) got a {x.dtype} input: integer token ids need a "
            "layer_embedding() first",
            argument="object",
        )


class Layer:
    """A Keras layer: config, weights (created on first build with the layer's initializers) and calls.

    Subclasses define `class_name`, `prefix` (the automatic name), `layer_config()`, and as needed
    `build_weights()`, `output_specs()`, `check_call()` and `spec_config()`.
    """

    class_name: ClassVar[str]
    prefix: ClassVar[str]
    module: ClassVar[str] = "keras.layers"
    # Keras builds weightless layers such as Masking and Dropout at init and writes no build_config for them.
    writes_build_config: ClassVar[bool] = True

    def __init__(
        self,
        *,
        name: str | None = None,
        trainable: bool = True,
        dtype: Any = None,
        input_shape: Any = None,
        input_dim: Any = None,
        **kwargs: Any,
    ) -> None:
        reject_unknown_kwargs(self.class_name, kwargs)
        self.name = arguments.name("name", name) or unique_name(self.prefix)
        self.trainable = arguments.flag("trainable", trainable)
        self.dtype = check_dtype(dtype)
        # Deprecated in Keras 3 but accepted: a Sequential turns it into its InputLayer.
        if input_dim is not None:
            input_shape = (arguments.positive_int("input_dim", input_dim),)
        self.input_shape_arg: Shape | None = (
            None if input_shape is None else arguments.shape("input_shape", input_shape)
        )
        self._weights: dict[str, np.ndarray] | None = None
        self.build_shape: Shape | None = None
        self.node: Node | None = None  # set when called on a tensor
        self.owner: str | None = None  # set when added to a Sequential model

    # ---- what subclasses define ----------------------------------------------------------------------------------

    def layer_config(self) -> dict[str, Any]:
        """The layer's own keys of its Keras config (after name, trainable, dtype)."""
        return {}

    def build_weights(self, input_shape: Shape) -> dict[str, np.ndarray]:
        """Fresh weights for this input shape, in Keras creation order, under Keras names."""
        return {}

    def check_call(self, x: KerasTensor, initial_state: tuple[KerasTensor, ...]) -> None:
        """Reject an input (or initial_state) this layer cannot take, naming it."""
        if initial_state:
            raise InvalidArgument(f"{self.class_name} takes no initial_state", argument="initial_state")

    def output_specs(self, x: KerasTensor) -> list[tuple[Shape, str, bool]]:
        """(shape, dtype, has_mask) of each output for input `x`. Default: same as the input."""
        return [(x.shape, x.dtype, x.has_mask)]

    def spec_config(self) -> dict[str, Any]:
        """The config in the normalised form of `rnnserve.spec`: the importers' normaliser applied to the Keras 3
        config, so a built spec and the spec imported from the same model saved by Keras agree."""
        return normalise_layer(self.class_name, self.get_config(), self.name, "3")

    # ---- config --------------------------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The Keras 3 config of this layer (`layer.get_config()`)."""
        return {"name": self.name, "trainable": self.trainable, "dtype": dtype_policy(), **self.layer_config()}

    def serialize(self) -> dict[str, Any]:
        """`{"module", "class_name", "config", "registered_name"}`, plus `build_config` once built."""
        out = keras_object(self.module, self.class_name, self.get_config())
        if self.build_shape is not None and self.writes_build_config:
            out["build_config"] = self.build_config()
        return out

    def build_config(self) -> dict[str, Any]:
        return {"input_shape": list(self.build_shape or ())}

    # ---- weights -------------------------------------------------------------------------------------------------

    @property
    def built(self) -> bool:
        return self._weights is not None

    def build(self, input_shape: Shape) -> None:
        """Create the weights for `input_shape` (once: a built layer keeps its weights)."""
        if self._weights is None:
            self._weights = self.build_weights(tuple(input_shape))
            self.build_shape = tuple(input_shape)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """Name -> float32 array, in Keras order; empty before the layer is built."""
        return dict(self._weights or {})

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self.weights.values()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace the weights (Keras order and shapes) of a built layer."""
        current = self._weights
        if current is None:
            raise InvalidArgument(f"layer {self.name!r} is not built yet: call it or build its model first")
        if len(weights) != len(current):
            raise arguments.invalid("weights", f"{len(weights)} arrays", f"must hold {len(current)} arrays")
        new = {}
        for (key, old), value in zip(current.items(), weights, strict=True):
            array = np.asarray(value, dtype=np.float32)
            if array.shape != old.shape:
                raise arguments.invalid("weights", array.shape, f"must have shape {old.shape} for {key!r}")
            new[key] = array
        self._weights = new

    def count_params(self) -> int:
        return sum(int(w.size) for w in self.weights.values())

    # ---- calls ---------------------------------------------------------------------------------------------------

    def apply(self, x: KerasTensor, initial_state: Sequence[KerasTensor] = ()) -> Node:
        """Build if needed and record one application on symbolic tensors (models use this to trace)."""
        states = tuple(initial_state)
        self.check_call(x, states)
        self.build(x.shape)
        node = Node(self, (x,), states)
        node.outputs = tuple(
            KerasTensor(shape, dtype, node, i, mask) for i, (shape, dtype, mask) in enumerate(self.output_specs(x))
        )
        return node

    def __call__(self, inputs: Any, initial_state: Any = None) -> KerasTensor | list[KerasTensor]:
        """Apply the layer to a symbolic tensor: one output tensor, or a list with several (return_state)."""
        if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
            inputs = inputs[0]
        if not isinstance(inputs, KerasTensor):
            raise arguments.invalid("object", inputs, "must be a symbolic tensor (from layer_input() or a layer)")
        if self.node is not None or self.owner is not None:
            where = f"in model {self.owner!r}" if self.owner else "on a tensor"
            raise InvalidArgument(
                f"layer {self.name!r} is already used ({where}): rnnserve models apply each layer once, "
                "so create a new layer",
                argument="object",
            )
        states = _state_list(initial_state)
        node = self.apply(inputs, states)
        self.node = node
        return node.outputs[0] if len(node.outputs) == 1 else list(node.outputs)

    def __repr__(self) -> str:
        return f"<{self.class_name} name={self.name!r} built={self.built}>"


def _state_list(initial_state: Any) -> tuple[KerasTensor, ...]:
    if initial_state is None:
        return ()
    states = initial_state if isinstance(initial_state, (list, tuple)) else [initial_state]
    for state in states:
        if not isinstance(state, KerasTensor):
            raise arguments.invalid("initial_state", initial_state, "must be symbolic tensors (from layer_input())")
    return tuple(states)
