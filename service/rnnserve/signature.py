"""What a served model takes and gives, derived from its `ModelSpec` (`rnnserve.spec`).

A `ModelSignature` names and shapes a model's inputs, outputs and recurrent states (`TensorInfo` each), and says
how it may be served: stateful (a fixed batch), time-major, bidirectional (no streaming sessions), which
inputs set a layer's initial state. `signature_from_spec` derives it from a spec (the exporter adds the output
shapes); a package stores it as JSON (`to_dict`/`from_dict`), and the API, validation and batching read it. How a
model is run against it is `rnnserve.runtime.runner`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rnnserve.kinds.base import kind_of, stream_refusal
from rnnserve.spec import LayerSpec, ModelSpec, state_layout


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int | None, ...]  # None = free dimension (batch, time)
    dtype: str  # "float32" | "int64" | "bool"
    # token ids (int64) read by an Embedding are below this (its input_dim); checked before the model runs,
    # since a GPU gather does not check its indices
    vocabulary: int | None = None
    # a state's Keras layer (what `reset` names in `layers`); None for inputs and outputs
    layer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.vocabulary is not None:
            d["vocabulary"] = self.vocabulary
        if self.layer is not None:
            d["layer"] = self.layer
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorInfo:
        vocabulary = d.get("vocabulary")
        layer = d.get("layer")
        return cls(
            str(d["name"]),
            tuple(None if s is None else int(s) for s in d["shape"]),
            str(d["dtype"]),
            None if vocabulary is None else int(vocabulary),
            None if layer is None else str(layer),
        )


@dataclass(frozen=True)
class ModelSignature:
    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    states: tuple[TensorInfo, ...]  # each (batch, units)
    stateful: bool = False  # the Keras config said stateful=True
    batch_size: int | None = None  # fixed batch (stateful Keras models), else None
    time_major: bool = False  # the model's own layout is (time, batch, ...)
    bidirectional: bool = False  # needs the future: sessions are refused
    # state name -> model input name, for Functional models that take initial_state as inputs
    initial_state_inputs: Mapping[str, str] = field(default_factory=dict)

    @property
    def stream_capable(self) -> bool:
        return bool(self.states) and not self.bidirectional

    @property
    def state_inputs(self) -> tuple[TensorInfo, ...]:
        """The model inputs that feed a recurrent layer's `initial_state` (Keras `Input`s passed as
        `initial_state=`), each a float32 `(batch, units)` tensor, in state order. They are not among `inputs`: a
        predict request sends them either as its `initial_state` (every state, in `states` order) or, as Keras'
        `model.predict([x, h0])` takes them, as inputs under these names (`initial_state_inputs` says which state
        each one sets; a state whose input is not sent starts from zeros)."""
        by_state = {s.name: s for s in self.states}
        found: dict[str, TensorInfo] = {}
        for state, name in self.initial_state_inputs.items():
            info = by_state.get(state)
            if info is not None and name not in found:
                found[name] = TensorInfo(name, info.shape, "float32", layer=info.layer)
        return tuple(found.values())

    @property
    def state_layers(self) -> tuple[str, ...]:
        """The Keras layers that carry states, in state order (each once)."""
        return tuple(dict.fromkeys(s.layer or s.name for s in self.states))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "states": [t.to_dict() for t in self.states],
            "stateful": self.stateful,
            "batch_size": self.batch_size,
            "time_major": self.time_major,
            "bidirectional": self.bidirectional,
            "initial_state_inputs": dict(self.initial_state_inputs),
            "state_inputs": [t.to_dict() for t in self.state_inputs],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSignature:
        return cls(
            name=str(d["name"]),
            inputs=tuple(TensorInfo.from_dict(t) for t in d["inputs"]),
            outputs=tuple(TensorInfo.from_dict(t) for t in d["outputs"]),
            states=tuple(_state_info(t) for t in d["states"]),
            stateful=bool(d.get("stateful", False)),
            batch_size=d.get("batch_size"),
            time_major=bool(d.get("time_major", False)),
            bidirectional=bool(d.get("bidirectional", False)),
            initial_state_inputs=dict(d.get("initial_state_inputs", {})),
        )


def signature_from_spec(
    spec: ModelSpec, output_shapes: Mapping[str, tuple[int | None, ...]] | None = None
) -> ModelSignature:
    """Derive the signature of a spec. Output shapes come from the exporter (ONNX shape inference) when known."""
    states = state_layout(spec)
    input_names = {i.name for i in spec.inputs}
    initial_state_inputs: dict[str, str] = {}
    for layer in spec.layers:
        layer_state_names = [s.name for s in states if s.layer == layer.name]
        for state_name, ref in zip(layer_state_names, layer.initial_state, strict=False):
            if ref.layer in input_names:
                initial_state_inputs[state_name] = ref.layer
    batch = next((i.shape[0] for i in spec.inputs if i.shape and isinstance(i.shape[0], int)), None)
    time_major = any(bool(_rnn_config(layer).get("time_major")) for layer in spec.layers)
    if time_major:
        batch = next((i.shape[1] for i in spec.inputs if len(i.shape) > 1 and isinstance(i.shape[1], int)), None)
    vocabularies = token_vocabularies(spec)
    data_inputs = tuple(
        TensorInfo(i.name, i.shape, i.dtype, vocabularies.get(i.name))
        for i in spec.inputs
        if i.name not in initial_state_inputs.values()
    )
    shapes = output_shapes or {}
    return ModelSignature(
        name=spec.name,
        inputs=data_inputs,
        outputs=tuple(TensorInfo(n, tuple(shapes.get(n, ())), "float32") for n in spec.output_names),
        states=tuple(TensorInfo(s.name, (batch, s.units), "float32", layer=s.layer) for s in states),
        stateful=any(bool(_rnn_config(layer).get("stateful")) for layer in spec.layers),
        batch_size=batch,
        time_major=time_major,
        bidirectional=stream_refusal(spec) is not None,
        initial_state_inputs=initial_state_inputs,
    )


def token_vocabularies(spec: ModelSpec) -> dict[str, int]:
    """Model input -> how many token ids it may hold: the smallest `input_dim` of the Embedding layers reading it."""
    input_names = {i.name for i in spec.inputs}
    found: dict[str, int] = {}
    for layer in spec.layers:
        size = kind_of(layer).vocabulary(layer)
        for ref in layer.inputs:
            if ref.layer in input_names and size is not None:
                found[ref.layer] = min(found.get(ref.layer, int(size)), int(size))
    return found


def with_vocabularies(signature: ModelSignature, spec: ModelSpec) -> ModelSignature:
    """`signature` with its inputs' token vocabularies taken from `spec` (packages exported before the signature
    recorded them)."""
    vocabularies = token_vocabularies(spec)
    if all(vocabularies.get(i.name) == i.vocabulary for i in signature.inputs):
        return signature
    inputs = tuple(replace(i, vocabulary=vocabularies.get(i.name, i.vocabulary)) for i in signature.inputs)
    return replace(signature, inputs=inputs)


def _state_info(d: Mapping[str, Any]) -> TensorInfo:
    """A state of a stored signature; one stored before states named their layer takes the first segment of its
    name (`<layer>/h`, `<layer>/forward/h`: Keras layer names have no '/')."""
    info = TensorInfo.from_dict(d)
    return info if info.layer is not None else replace(info, layer=info.name.split("/", 1)[0])


def _rnn_config(layer: LayerSpec) -> Mapping[str, Any]:
    return kind_of(layer).recurrent_config(layer.config) or layer.config
