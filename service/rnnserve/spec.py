"""The model description shared by importers, the layer API, the numpy reference and the ONNX exporter.

A `ModelSpec` is a small functional graph in Keras terms, already normalised so that its consumers never
need to know which file format or Keras version it came from:

* every model (Sequential or Functional, Keras 3 or Keras 2) is a list of `LayerSpec` nodes in topological
  order, each reading `TensorRef`s produced by model inputs or earlier layers;
* masks are implicit, as in Keras 2: `Embedding(mask_zero)` and `Masking` produce one and layers propagate
  it (the explicit `NotEqual`/`Any` op nodes of Keras 3 Functional configs are folded away by the importer);
* layer configs use Keras 3 key names with every key present (defaults filled in), plus `time_major` for
  recurrent layers; activations are canonical names from `rnnserve.layers.activations` (`None` -> "linear",
  "swish" -> "silu", Keras 2's hard_sigmoid -> "hard_sigmoid_keras2");
* weights use Keras names: `kernel`, `recurrent_kernel`, `bias`, `embeddings`; a Bidirectional layer prefixes
  them with `forward/` and `backward/`; a TimeDistributed layer uses its inner layer's names.

Recurrent layers expose their states; `state_layout(spec)` lists them in the one order used everywhere
(graph inputs/outputs, the API's `states`, sessions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Weights = Mapping[str, np.ndarray]


def __getattr__(name: str) -> Any:
    """`SUPPORTED_LAYERS`: the Keras classes that may be layers of a spec (every registered `rnnserve.kinds` kind
    but model inputs); computed on first use, since the kinds themselves import this module."""
    if name == "SUPPORTED_LAYERS":
        from rnnserve.kinds import layer_classes

        return layer_classes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class TensorRef:
    """Output `index` of layer (or model input) `layer`."""

    layer: str
    index: int = 0


@dataclass(frozen=True)
class InputSpec:
    """A model input. `shape` includes the batch axis; `None` marks a free dimension.

    Batch-major `(batch, time, features)` or `(batch, time)` for token ids; `(time, batch, features)` when the
    model was saved with `time_major=True`. The batch dimension is an int only for a fixed (stateful) batch.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"  # "float32" | "int64"


@dataclass(frozen=True)
class LayerSpec:
    """One layer applied once.

    `inputs` are the main inputs; `initial_state` the tensors passed as Keras `initial_state=` (recurrent layers
    only; LSTM: `[h, c]`; Bidirectional: forward states then backward states).
    """

    class_name: str
    name: str
    config: Mapping[str, Any]
    weights: Weights = field(default_factory=dict)
    inputs: tuple[TensorRef, ...] = ()
    initial_state: tuple[TensorRef, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    name: str
    inputs: tuple[InputSpec, ...]
    layers: tuple[LayerSpec, ...]
    outputs: tuple[TensorRef, ...]
    output_names: tuple[str, ...]
    keras_version: str = "3"
    # The Keras model config as it was read (kept verbatim in exported manifests) and where the model came from.
    keras_config: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


@dataclass(frozen=True)
class StateSpec:
    """One recurrent state vector of one layer: shape `(batch, units)`."""

    name: str  # "<layer>/h", "<layer>/c", "<layer>/forward/h", ...
    layer: str
    units: int


def rnn_state_names(class_name: str) -> tuple[str, ...]:
    """The states of one cell of a recurrent class (`h`, or LSTM `h, c`)."""
    from rnnserve.kinds.base import recurrent_kind

    return recurrent_kind(class_name).state_names({})


def layer_states(layer: LayerSpec) -> list[StateSpec]:
    """The states a layer carries, in Keras order (LSTM h then c; Bidirectional forward then backward)."""
    from rnnserve.kinds.base import kind_of

    return kind_of(layer).states(layer)


def state_layout(spec: ModelSpec) -> list[StateSpec]:
    """Every recurrent state of the model, layer by layer in `spec.layers` order."""
    return [s for layer in spec.layers for s in layer_states(layer)]


def layer_output_count(layer: LayerSpec) -> int:
    """How many tensors a layer outputs: `[y]`, or `[y, *states]` with return_state (Bidirectional with
    merge_mode=None: two ys)."""
    from rnnserve.kinds.base import kind_of

    return kind_of(layer).output_count(layer.config)
