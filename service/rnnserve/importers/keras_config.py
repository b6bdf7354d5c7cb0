"""Normalise a Keras model config plus its weights into a `ModelSpec` (any Keras generation, any container).

`spec_from_config` walks the graph `keras_graph.read_graph` parsed, in topological order, and for each layer:
normalises its config (`keras_layers`), checks its initial states are model inputs, propagates feature sizes
(to check weight shapes) and implicit masks (to check the masks a Keras 3 Functional config states
explicitly), and takes its weights from a `WeightSource`, checking their shapes against the config.

Conventions of the produced spec (beyond those of `rnnserve.spec`):

* inputs are the model's InputLayers in `input_layers` order (Sequential: its InputLayer, or `<first>_input`);
  the shape is what the file states (`batch_shape`/`batch_input_shape`, batch first, or time first for
  `time_major` models; a Keras 2 file may fix the time length); dtype "int64" for integer InputLayers and for
  inputs read by a layer of a kind that `reads_token_ids` (Embedding), else "float32";
* output names: the layer name for output 0 of a layer, `f"{layer}:{k}"` for output k > 0 (the keys when the
  config stores outputs as a dict); a Sequential's outputs are every output of its last layer;
* weights are float32 arrays in Keras creation order (see `LayerKind.weight_shapes`).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rnnserve.errors import ModelFileError, UnsupportedLayer
from rnnserve.importers.jsonish import array, is_index, short
from rnnserve.importers.keras_graph import Call, Graph, MaskExpr, read_graph
from rnnserve.importers.keras_layers import (
    describe,
    dtype_policy_name,
    normalise_layer,
    output_features,
    weight_shapes,
)
from rnnserve.kinds import get_kind, kind_of
from rnnserve.spec import InputSpec, LayerSpec, ModelSpec, TensorRef, layer_output_count

_INT_DTYPES = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})
_FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})


class WeightSource(Protocol):
    """Where a container keeps each layer's weights (`.keras` archive or legacy `.h5`)."""

    def layer_weights(self, layer: str, class_name: str, names: Sequence[str]) -> Mapping[str, np.ndarray]:
        """The float32 arrays of layer `layer`'s weights `names` (normalised names in Keras creation order).

        Raises ModelFileError when the layer or one of the weights is missing or not floating point, or the
        layer has others.
        """
        ...


@dataclass(frozen=True)
class StoredModel:
    """What a model file holds: its model config, the Keras version that wrote it, and its weights."""

    model_config: Any
    keras_version: str
    weights: WeightSource


_VERSION = re.compile(r"(\d+)(\.\d+){0,3}([.+-]?[0-9A-Za-z.+-]{0,30})?")


def keras_version_of(value: Any, where: str) -> str:
    """The `keras_version` string of a file, checked: rnnserve reads files from Keras 2 and Keras 3."""
    if not isinstance(value, str) or not _VERSION.fullmatch(value):
        raise ModelFileError(f"{where} has no valid keras_version (found {short(value)})")
    if value.split(".", 1)[0] not in ("2", "3"):
        raise ModelFileError(f"{where} was written by Keras {value}; rnnserve reads files from Keras 2 and Keras 3")
    return value


def spec_from_config(
    model_config: Any,
    weights: WeightSource,
    *,
    name: str,
    keras_version: str,
    source: Mapping[str, Any],
) -> ModelSpec:
    """The `ModelSpec` of a stored model config (`{"class_name", "config", ...}`) whose weights are in `weights`."""
    _, graph = read_graph(model_config)
    builder = _Builder(graph, weights, keras_version)
    layers = [builder.add(call) for call in _topological(graph)]
    outputs, output_names = _outputs(graph, layers, builder.output_counts)
    inputs = builder.inputs()
    _check_batch_and_layout(inputs, layers)
    return ModelSpec(
        name=name,
        inputs=inputs,
        layers=tuple(layers),
        outputs=outputs,
        output_names=output_names,
        keras_version=keras_version,
        keras_config=model_config,
        source=dict(source),
    )


class _Builder:
    """Turns calls into `LayerSpec`s one at a time, tracking what each tensor carries."""

    def __init__(self, graph: Graph, weights: WeightSource, keras_version: str) -> None:
        self.graph = graph
        self.weights = weights
        self.keras_version = keras_version
        self.input_shapes = {name: _input_shape(name, config) for name, config in graph.inputs}
        self.features: dict[TensorRef, int | None] = {}
        self.masks: dict[TensorRef, MaskExpr | None] = {}
        self.output_counts: dict[str, int] = {}
        self.token_inputs: set[str] = set()
        for name, shape in self.input_shapes.items():
            self.features[TensorRef(name)] = shape[-1] if len(shape) >= 2 else None
            self.masks[TensorRef(name)] = None
            self.output_counts[name] = 1

    def add(self, call: Call) -> LayerSpec:
        config = normalise_layer(call.class_name, call.config, call.name, self.keras_version)
        layer = LayerSpec(call.class_name, call.name, config, {}, call.inputs, call.initial_state)
        for ref in call.inputs:
            self._require_tensor(ref, call)
        in_features = self.features[call.inputs[0]]
        in_mask = self.masks[call.inputs[0]]
        self._check_initial_state(layer)
        if self.graph.explicit_masks:
            _check_mask(call, in_mask)
        if get_kind(call.class_name).reads_token_ids:
            self.token_inputs.add(call.inputs[0].layer)
        weights = self._read_weights(layer, in_features)
        features = output_features(call.class_name, config, in_features)
        self.output_counts[call.name] = layer_output_count(layer)
        for index, size in enumerate(features):
            ref = TensorRef(call.name, index)
            self.features[ref] = size
            self.masks[ref] = _output_mask(layer, index, in_mask)
        return LayerSpec(call.class_name, call.name, config, weights, call.inputs, call.initial_state)

    def inputs(self) -> tuple[InputSpec, ...]:
        specs = []
        for name, config in self.graph.inputs:
            dtype = "int64" if name in self.token_inputs else _input_dtype(name, config)
            specs.append(InputSpec(name, self.input_shapes[name], dtype))
        return tuple(specs)

    def _require_tensor(self, ref: TensorRef, call: Call) -> None:
        count = self.output_counts.get(ref.layer)
        if count is None:
            raise ModelFileError(f"{describe(call.name, call.class_name)} reads unknown layer {ref.layer!r}")
        if ref.index >= count:
            raise ModelFileError(
                f"{describe(call.name, call.class_name)} reads output {ref.index} of {ref.layer!r}, "
                f"which has {count} output(s)"
            )

    def _check_initial_state(self, layer: LayerSpec) -> None:
        if not layer.initial_state:
            return
        where = describe(layer.name, layer.class_name)
        rnn = _rnn_config(layer)
        if rnn is None:
            raise UnsupportedLayer(f"{where}: only recurrent layers take an initial_state")
        expected = len(kind_of(layer).state_names(layer.config))
        if len(layer.initial_state) != expected:
            raise ModelFileError(f"{where}: called with {len(layer.initial_state)} initial states, expected {expected}")
        widths = [state.units for state in kind_of(layer).states(layer)]
        for ref, units in zip(layer.initial_state, widths, strict=True):
            if ref.layer not in self.input_shapes or ref.index != 0:
                raise UnsupportedLayer(
                    f"{where}: its initial_state is computed by layer {ref.layer!r}; rnnserve supports initial "
                    "states given as model inputs only (an Input(shape=(units,)) passed as initial_state=)"
                )
            shape = self.input_shapes[ref.layer]
            if len(shape) != 2 or shape[-1] not in (None, units):
                raise ModelFileError(
                    f"{where}: initial state input {ref.layer!r} has shape {shape}, expected (batch, {units})"
                )

    def _read_weights(self, layer: LayerSpec, in_features: int | None) -> dict[str, np.ndarray]:
        shapes = weight_shapes(layer.class_name, layer.config, in_features)
        if not shapes:
            return {}
        arrays = self.weights.layer_weights(layer.name, layer.class_name, list(shapes))
        for weight, expected in shapes.items():
            found = tuple(arrays[weight].shape)
            if not _shape_matches(found, expected):
                shown = "(" + ", ".join("?" if e is None else str(e) for e in expected) + ")"
                raise ModelFileError(f"layer {layer.name!r} weight {weight!r} has shape {found}, expected {shown}")
        return {weight: arrays[weight] for weight in shapes}


def _shape_matches(found: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    if len(found) != len(expected):
        return False
    return all(e is None or e == f for e, f in zip(expected, found, strict=True))


# ---- graph order, outputs, masks -------------------------------------------------------------------------------


def _topological(graph: Graph) -> list[Call]:
    """Calls in dependency order, ties broken by config order; a cycle or a dangling reference is an error."""
    by_name = {call.name: call for call in graph.calls}
    known = set(by_name) | {name for name, _ in graph.inputs}
    waiting: dict[str, set[str]] = {}
    users: dict[str, list[str]] = {}
    for call in graph.calls:
        deps = {ref.layer for ref in (*call.inputs, *call.initial_state)}
        for dep in deps:
            if dep not in known:
                raise ModelFileError(f"{describe(call.name, call.class_name)} reads unknown layer {dep!r}")
            users.setdefault(dep, []).append(call.name)
        waiting[call.name] = deps & set(by_name)
    ready = [(graph.index[n], n) for n, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[Call] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(by_name[name])
        for user in users.get(name, []):
            waiting[user].discard(name)
            if not waiting[user]:
                heapq.heappush(ready, (graph.index[user], user))
    if len(order) != len(graph.calls):
        stuck = sorted(n for n, deps in waiting.items() if deps)
        raise ModelFileError(f"the model graph has a cycle through layers {stuck[:5]}")
    return order


def _outputs(
    graph: Graph, layers: Sequence[LayerSpec], counts: Mapping[str, int]
) -> tuple[tuple[TensorRef, ...], tuple[str, ...]]:
    if graph.outputs is None:  # Sequential
        _check_sequential_chain(layers)
        last = layers[-1]
        refs = [TensorRef(last.name, k) for k in range(counts[last.name])]
    else:
        refs = graph.outputs
    for ref in refs:
        if ref.layer not in counts:
            raise ModelFileError(f"output_layers names unknown layer {ref.layer!r}")
        if ref.index >= counts[ref.layer]:
            raise ModelFileError(
                f"output_layers reads output {ref.index} of {ref.layer!r}, which has {counts[ref.layer]}"
            )
    names = graph.output_names or [ref.layer if ref.index == 0 else f"{ref.layer}:{ref.index}" for ref in refs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ModelFileError(f"the model lists output {duplicates[0]!r} more than once")
    return tuple(refs), tuple(names)


def _check_sequential_chain(layers: Sequence[LayerSpec]) -> None:
    for layer in layers[:-1]:
        if layer_output_count(layer) != 1:
            raise ModelFileError(
                f"{describe(layer.name, layer.class_name)} returns {layer_output_count(layer)} tensors inside a "
                "Sequential model; only the last layer may return its states"
            )


def _output_mask(layer: LayerSpec, index: int, in_mask: MaskExpr | None) -> MaskExpr | None:
    """The mask Keras attaches to output `index` of a layer (what implicit propagation gives); states have none."""
    rule = kind_of(layer).output_mask(layer.config, index)
    if rule.rule == "keep":
        return in_mask
    if rule.rule == "none":
        return None
    return MaskExpr(rule.rule, layer.inputs[0], rule.value)


def _check_mask(call: Call, implicit: MaskExpr | None) -> None:
    """A Keras 3 Functional config states each layer's mask; it must be the one the spec's consumers derive."""
    if call.mask == implicit or (call.mask is None and not get_kind(call.class_name).uses_mask):
        return
    where = describe(call.name, call.class_name)
    if call.mask is None:
        raise UnsupportedLayer(
            f"{where}: Keras applies no mask here although its input carries {implicit} (Keras 3 drops the "
            "implicit mask when a layer is called with initial_state); rnnserve would apply it. Pass mask= "
            "explicitly when calling the layer, or remove the masking"
        )
    raise UnsupportedLayer(f"{where}: called with mask {call.mask}, but its input carries {implicit}")


# ---- inputs and model-wide checks ------------------------------------------------------------------------------


def _input_shape(name: str, config: Mapping[str, Any]) -> tuple[int | None, ...]:
    raw = config.get("batch_shape", config.get("batch_input_shape"))
    dims = array(raw, f"the shape of input {name!r}")
    if not dims or not all(d is None or is_index(d) for d in dims):
        raise ModelFileError(f"input {name!r} has an invalid shape {short(raw)}")
    return tuple(dims)


def _input_dtype(name: str, config: Mapping[str, Any]) -> str:
    for flag in ("sparse", "ragged", "optional"):
        if config.get(flag):
            raise UnsupportedLayer(f"input {name!r} is {flag}; rnnserve supports dense inputs only")
    dtype = dtype_policy_name(config.get("dtype"), f"input {name!r}")
    if dtype in _INT_DTYPES:
        return "int64"
    if dtype in _FLOAT_DTYPES:
        return "float32"
    raise UnsupportedLayer(f"input {name!r} has dtype {short(dtype)}; rnnserve supports float and integer inputs")


def _rnn_config(layer: LayerSpec) -> Mapping[str, Any] | None:
    return kind_of(layer).recurrent_config(layer.config)


def _check_batch_and_layout(inputs: Sequence[InputSpec], layers: Sequence[LayerSpec]) -> None:
    """Stateful models need one fixed batch size; `time_major` must be all or nothing."""
    rnns = [(layer, cfg) for layer in layers if (cfg := _rnn_config(layer)) is not None]
    time_major = {bool(cfg["time_major"]) for _, cfg in rnns}
    if len(time_major) > 1:
        raise UnsupportedLayer("the model mixes time_major and batch-major recurrent layers")
    stateful = [layer for layer, cfg in rnns if cfg["stateful"]]
    if not stateful:
        return
    state_inputs = {ref.layer for layer in layers for ref in layer.initial_state}
    batch_axis = 1 if time_major == {True} else 0
    batches = {_batch_size(spec, 0 if spec.name in state_inputs else batch_axis) for spec in inputs}
    if None in batches or len(batches) != 1:
        where = describe(stateful[0].name, stateful[0].class_name)
        raise UnsupportedLayer(
            f"{where} is stateful, but the model inputs have no single fixed batch size "
            f"(found {sorted(map(str, batches))}); build it with Input(batch_shape=(B, T, F)) "
            "(Keras 2: batch_input_shape=(B, T, F))"
        )


def _batch_size(spec: InputSpec, axis: int) -> int | None:
    return spec.shape[axis] if len(spec.shape) > axis else None
