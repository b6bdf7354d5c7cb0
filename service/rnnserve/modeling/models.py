"""Sequential and Functional models: tracing the layer graph, Keras 3 configs, and `to_spec()` -> ModelSpec."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from rnnserve.errors import InvalidArgument
from rnnserve.modeling import arguments
from rnnserve.modeling.base import Layer
from rnnserve.modeling.core import Embedding, InputLayer
from rnnserve.modeling.naming import unique_name
from rnnserve.modeling.serialization import dtype_policy
from rnnserve.modeling.summary import summary_text
from rnnserve.modeling.tensors import KerasTensor, Node
from rnnserve.spec import InputSpec, LayerSpec, ModelSpec, TensorRef

SOURCE = {"builder": "rnnserve.modeling"}


class Model:
    """What Sequential and Functional share: a traced graph, weights, configs, the spec and a summary."""

    name: str

    # ---- what subclasses define ----------------------------------------------------------------------------------

    def trace(self) -> tuple[list[InputLayer], list[Node], list[KerasTensor]]:
        """(input layers, layer nodes in topological order, output tensors); builds every layer."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The Keras 3 model config (`model.get_config()`)."""
        raise NotImplementedError

    def serialize(self) -> dict[str, Any]:
        """The whole Keras 3 object, as in a `.keras` file's config.json."""
        raise NotImplementedError

    # ---- shared --------------------------------------------------------------------------------------------------

    @property
    def layers(self) -> list[Layer]:
        return [node.layer for node in self.trace()[1]]

    def to_json(self) -> str:
        return json.dumps(self.serialize())

    def to_spec(self) -> ModelSpec:
        """The normalised ModelSpec: layer configs, fresh (or set) weights, inputs and outputs."""
        inputs, nodes, outputs = self.trace()
        _check_unique_names([*inputs, *(n.layer for n in nodes)])
        return ModelSpec(
            name=self.name,
            inputs=tuple(_input_spec(layer, nodes) for layer in inputs),
            layers=tuple(_layer_spec(node) for node in nodes),
            outputs=tuple(_ref(t) for t in outputs),
            output_names=tuple(_output_name(t) for t in outputs),
            keras_version="3",
            keras_config=self.serialize(),
            source=dict(SOURCE),
        )

    def get_weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace every weight, in `get_weights()` order."""
        layers = self.layers
        expected = sum(len(layer.weights) for layer in layers)
        if len(weights) != expected:
            raise arguments.invalid("weights", f"{len(weights)} arrays", f"must hold {expected} arrays")
        start = 0
        for layer in layers:
            count = len(layer.weights)
            layer.set_weights(weights[start : start + count])
            start += count

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    def summary(self) -> str:
        """A Keras-like summary table (returned, not printed)."""
        inputs, nodes, _ = self.trace()
        return summary_text(self.name, inputs, nodes, connected=isinstance(self, Functional))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


class Sequential(Model):
    """A stack of single-input layers after one InputLayer (R `keras_model_sequential()`)."""

    def __init__(self, layers: Iterable[Any] | None = None, name: str | None = None) -> None:
        self.name = arguments.name("name", name) or unique_name("sequential")
        self.input_layer: InputLayer | None = None
        self._layers: list[Layer] = []
        for layer in layers or ():
            self.add(layer)

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def add(self, layer: Any) -> None:
        """Append a layer (or an InputLayer / `layer_input()` tensor first); trace at once when the input is known,
        so that bad shapes and `stateful` without a batch size fail here."""
        if isinstance(layer, KerasTensor) and isinstance(layer.layer, InputLayer):
            layer = layer.layer
        if isinstance(layer, InputLayer):
            if self.input_layer is not None or self._layers:
                raise InvalidArgument(f"model {self.name!r} already has an input; an input must come first")
            self.input_layer = layer
            return
        if not isinstance(layer, Layer):
            raise arguments.invalid("layer", layer, "must be a layer")
        if layer.node is not None or layer.owner is not None:
            raise InvalidArgument(f"layer {layer.name!r} is already used: create a new one", argument="layer")
        if self.input_layer is None and not self._layers and layer.input_shape_arg is not None:
            self.input_layer = InputLayer((None, *layer.input_shape_arg))
        self._layers.append(layer)
        layer.owner = self.name
        if self.input_layer is not None:
            try:
                self.trace()
            except InvalidArgument:
                self._layers.pop()
                layer.owner = None
                raise

    def trace(self) -> tuple[list[InputLayer], list[Node], list[KerasTensor]]:
        if self.input_layer is None:
            raise InvalidArgument(
                f"model {self.name!r} has no input shape: pass input_shape = ... to keras_model_sequential() "
                "or to its first layer",
                argument="input_shape",
            )
        outputs = [self.input_layer.output]
        nodes: list[Node] = []
        for layer in self._layers:
            if len(outputs) > 1:
                raise InvalidArgument(
                    f"layer {nodes[-1].layer.name!r} returns {len(outputs)} tensors (return_state) and is followed by "
                    f"{layer.name!r}: in a Sequential model only the last layer may return states",
                    argument="return_state",
                )
            node = layer.apply(outputs[0])
            nodes.append(node)
            outputs = list(node.outputs)
        return [self.input_layer], nodes, outputs

    def get_config(self) -> dict[str, Any]:
        inputs, nodes, _ = self.trace()
        return {
            "name": self.name,
            "trainable": True,
            "dtype": dtype_policy(),
            "layers": [inputs[0].serialize(), *(node.layer.serialize() for node in nodes)],
            "build_input_shape": list(inputs[0].batch_shape),
        }

    def serialize(self) -> dict[str, Any]:
        config = self.get_config()
        return {
            "module": "keras",
            "class_name": "Sequential",
            "config": config,
            "registered_name": None,
            "build_config": {"input_shape": config["build_input_shape"]},
        }


class Functional(Model):
    """A graph from `layer_input()` tensors to output tensors (R `keras_model(inputs, outputs)`)."""

    def __init__(self, inputs: Any, outputs: Any, name: str | None = None) -> None:
        self.name = arguments.name("name", name) or unique_name("functional")
        self.single_input = isinstance(inputs, KerasTensor)
        self.single_output = isinstance(outputs, KerasTensor)
        self.inputs = _tensor_list("inputs", inputs)
        self.outputs = _tensor_list("outputs", outputs)
        for tensor in self.inputs:
            if not isinstance(tensor.layer, InputLayer):
                raise arguments.invalid("inputs", tensor, "must be tensors returned by layer_input()")
        self.nodes = _collect_nodes(self.inputs, self.outputs)
        _check_unique_names([t.layer for t in self.inputs] + [n.layer for n in self.nodes])

    @property
    def input_layers(self) -> list[InputLayer]:
        return [t.layer for t in self.inputs]  # type: ignore[misc]

    @property
    def layers(self) -> list[Layer]:
        return [*self.input_layers, *(n.layer for n in self.nodes)]

    def trace(self) -> tuple[list[InputLayer], list[Node], list[KerasTensor]]:
        return self.input_layers, list(self.nodes), list(self.outputs)

    def get_config(self) -> dict[str, Any]:
        layers = [{**layer.serialize(), "name": layer.name, "inbound_nodes": []} for layer in self.input_layers]
        layers += [_functional_entry(node) for node in self.nodes]
        input_layers: Any = [t.keras_history() for t in self.inputs]
        output_layers: Any = [t.keras_history() for t in self.outputs]
        return {
            "name": self.name,
            "trainable": True,
            "layers": layers,
            "input_layers": input_layers[0] if self.single_input else input_layers,
            "output_layers": output_layers[0] if self.single_output else output_layers,
        }

    def serialize(self) -> dict[str, Any]:
        return {
            "module": "keras.src.models.functional",
            "class_name": "Functional",
            "config": self.get_config(),
            "registered_name": "Functional",
            "build_config": {"input_shape": None},
        }


# ---- helpers -----------------------------------------------------------------------------------------------------


def _tensor_list(argument: str, value: Any) -> list[KerasTensor]:
    """A tensor or a (once nested, as return_state gives) list of tensors, flattened."""
    items = value if isinstance(value, (list, tuple)) else [value]
    flat: list[Any] = []
    for item in items:
        flat.extend(item if isinstance(item, (list, tuple)) else [item])
    if not flat or not all(isinstance(t, KerasTensor) for t in flat):
        raise arguments.invalid(argument, value, "must be a symbolic tensor or a list of them")
    return flat


def _collect_nodes(inputs: list[KerasTensor], outputs: list[KerasTensor]) -> list[Node]:
    """The layer nodes between `inputs` and `outputs`, in call order; every input they need must be listed."""
    given = {id(t.node) for t in inputs}
    seen: dict[int, Node] = {}
    stack = [t.node for t in outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        if isinstance(node.layer, InputLayer):
            if id(node) not in given:
                raise InvalidArgument(
                    f"the outputs depend on input {node.layer.name!r}, which is not in `inputs`", argument="inputs"
                )
            continue
        stack.extend(t.node for t in node.parents)
    return sorted((n for n in seen.values() if not isinstance(n.layer, InputLayer)), key=lambda n: n.order)


def _functional_entry(node: Node) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if node.initial_state:
        states = [t.serialize() for t in node.initial_state]
        kwargs["initial_state"] = states[0] if len(states) == 1 else states
    inbound = {"args": [t.serialize() for t in node.inputs], "kwargs": kwargs}
    return {**node.layer.serialize(), "name": node.layer.name, "inbound_nodes": [inbound]}


def _check_unique_names(layers: Sequence[Layer]) -> None:
    counts = Counter(layer.name for layer in layers)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise InvalidArgument(
            f"All layer names in a model must be unique; repeated: {duplicates}", argument="name", value=duplicates
        )


def _output_name(tensor: KerasTensor) -> str:
    """As the importers name outputs: the layer name for its output 0, `layer:k` for its output k > 0."""
    return tensor.layer.name if tensor.index == 0 else f"{tensor.layer.name}:{tensor.index}"


def _ref(tensor: KerasTensor) -> TensorRef:
    return TensorRef(tensor.layer.name, tensor.index)


def _input_spec(layer: InputLayer, nodes: Sequence[Node]) -> InputSpec:
    """Token ids (an int input, or any input that feeds an Embedding) are int64 in a spec; the rest float32."""
    feeds_embedding = any(isinstance(n.layer, Embedding) and n.inputs[0].layer is layer for n in nodes)
    dtype = "int64" if feeds_embedding or layer.input_dtype != "float32" else "float32"
    return InputSpec(layer.name, tuple(layer.batch_shape), dtype)


def _layer_spec(node: Node) -> LayerSpec:
    layer = node.layer
    return LayerSpec(
        class_name=layer.class_name,
        name=layer.name,
        config=layer.spec_config(),
        weights={k: v.copy() for k, v in layer.weights.items()},
        inputs=tuple(_ref(t) for t in node.inputs),
        initial_state=tuple(_ref(t) for t in node.initial_state),
    )
