"""`ReferenceModel`: a `Runner` that computes a `ModelSpec` in numpy (float64 inside, float32 out).

It is the executable spec the ONNX graphs are tested against. It walks `spec.layers` in order, keeping every
produced tensor with its Keras mask (implicit propagation, as in Keras 2 and in a Sequential model):

* `Embedding(mask_zero)` and `Masking` create a mask; `Dense`, `TimeDistributed`, `Dropout` and recurrent
  layers with `return_sequences` pass theirs on; a recurrent layer without `return_sequences` drops it;
* the caller's explicit `mask` (bool `(batch, time)`) is ANDed into the mask of every model input with a
  time axis and into every mask a layer creates, so it survives Embedding and Masking;
* each recurrent layer starts from its slice of `states` (in `state_layout` order); without `states`, from
  its `initial_state` tensors (a model input missing from `inputs` counts as zeros), else from zeros.

Masks are kept in the layout of their tensor: `(batch, time)`, or `(time, batch)` in a time-major model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rnnserve.errors import InvalidInput, ModelFileError
from rnnserve.kinds import kind_of
from rnnserve.layers.cells import States
from rnnserve.layers.core import Embedding, Masking
from rnnserve.layers.recurrent import RecurrentLayer
from rnnserve.layers.wrappers import Bidirectional
from rnnserve.runtime.runner import Feeds, RunResult
from rnnserve.signature import ModelSignature, signature_from_spec
from rnnserve.spec import InputSpec, LayerSpec, ModelSpec, TensorRef, layer_output_count

InitialStates = list[np.ndarray | None]


@dataclass(frozen=True)
class Tensor:
    """A produced tensor and its Keras mask (None: unmasked)."""

    value: np.ndarray
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class RunContext:
    """What a run shares with every layer: the caller's explicit mask, in the model's layout."""

    explicit_mask: np.ndarray | None = None

    def derive(self, mask: np.ndarray | None) -> np.ndarray | None:
        """A mask a layer creates, ANDed with the explicit mask."""
        if self.explicit_mask is None or mask is None:
            return self.explicit_mask if mask is None else mask
        if mask.shape != self.explicit_mask.shape:
            raise InvalidInput(
                f"mask has shape {self.explicit_mask.shape} but a layer derived one of shape {mask.shape}"
            )
        return np.asarray(np.logical_and(mask, self.explicit_mask))


class Node(Protocol):
    """One layer of the model: main input tensor and initial states in, output tensors and final states out."""

    @property
    def state_count(self) -> int: ...

    def __call__(
        self, x: Tensor, initial_states: InitialStates | None, ctx: RunContext
    ) -> tuple[list[Tensor], States]: ...


@dataclass(frozen=True)
class MaskPreserving:
    """A per-timestep layer (Dense, Dropout, TimeDistributed): a function of the value; the mask passes through."""

    fn: Callable[[np.ndarray], np.ndarray]
    state_count: int = 0

    def __call__(self, x: Tensor, initial_states: InitialStates | None, ctx: RunContext) -> tuple[list[Tensor], States]:
        return [Tensor(self.fn(x.value), x.mask)], []


@dataclass(frozen=True)
class EmbeddingNode:
    layer: Embedding
    source: str  # the input tensor's producer, named in out-of-range errors
    state_count: int = 0

    def __call__(self, x: Tensor, initial_states: InitialStates | None, ctx: RunContext) -> tuple[list[Tensor], States]:
        return [Tensor(self.layer(x.value, self.source), ctx.derive(self.layer.compute_mask(x.value)))], []


@dataclass(frozen=True)
class MaskingNode:
    layer: Masking
    state_count: int = 0

    def __call__(self, x: Tensor, initial_states: InitialStates | None, ctx: RunContext) -> tuple[list[Tensor], States]:
        return [Tensor(self.layer(x.value), ctx.derive(self.layer.compute_mask(x.value)))], []


@dataclass(frozen=True)
class RecurrentNode:
    layer: RecurrentLayer

    @property
    def state_count(self) -> int:
        return self.layer.state_count

    def __call__(self, x: Tensor, initial_states: InitialStates | None, ctx: RunContext) -> tuple[list[Tensor], States]:
        y, states = self.layer(x.value, x.mask, initial_states)
        outputs = [Tensor(y, x.mask if self.layer.return_sequences else None)]
        if self.layer.return_state:
            outputs += [Tensor(s) for s in states]
        return outputs, states


@dataclass(frozen=True)
class BidirectionalNode:
    layer: Bidirectional

    @property
    def state_count(self) -> int:
        return self.layer.state_count

    def __call__(self, x: Tensor, initial_states: InitialStates | None, ctx: RunContext) -> tuple[list[Tensor], States]:
        ys, states = self.layer(x.value, x.mask, initial_states)
        out_mask = x.mask if self.layer.return_sequences else None
        outputs = [Tensor(y, out_mask) for y in ys]
        if self.layer.return_state:
            outputs += [Tensor(s) for s in states]
        return outputs, states


class ReferenceModel:
    """The numpy `Runner` of a `ModelSpec` (see the module docstring for masks and states)."""

    def __init__(self, spec: ModelSpec) -> None:
        self._spec = spec
        self._check_graph()
        self._nodes = [kind_of(layer).reference(layer) for layer in spec.layers]
        self._signature = signature_from_spec(spec)
        self._time_major = any(_recurrent_config(layer).get("time_major", False) for layer in spec.layers)
        self._state_offsets = self._offsets()

    @property
    def signature(self) -> ModelSignature:
        return self._signature

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    def run(
        self, inputs: Feeds, states: Sequence[np.ndarray] | None = None, mask: np.ndarray | None = None
    ) -> RunResult:
        """Run a whole sequence (or one chunk of a stream) from the given states; see `Runner`."""
        return self.run_layers(inputs, states, mask)[0]

    @property
    def nodes(self) -> tuple[Node, ...]:
        """One reference node per layer of the spec, in its order."""
        return tuple(self._nodes)

    def run_layers(
        self,
        inputs: Feeds,
        states: Sequence[np.ndarray] | None = None,
        mask: np.ndarray | None = None,
        *,
        nodes: Sequence[Node] | None = None,
    ) -> tuple[RunResult, dict[str, list[np.ndarray]]]:
        """`run`, and every layer's output tensors by layer name (float64; with return_state, the states too);
        `nodes` replaces the layers' own nodes (the same count: e.g. cells with dropout masks)."""
        layer_outputs: dict[str, list[np.ndarray]] = {}
        if states is not None and len(states) != len(self._signature.states):
            names = [s.name for s in self._signature.states]
            raise InvalidInput(f"expected {len(names)} state arrays ({names}), got {len(states)}")
        ctx, values = self._feed(inputs, mask)
        final: States = []
        for layer, node, offset in zip(self._spec.layers, nodes or self._nodes, self._state_offsets, strict=True):
            initial = self._initial_states(layer, node.state_count, offset, states, values)
            outputs, layer_final = node(values[layer.inputs[0]], initial, ctx)
            for index, tensor in enumerate(outputs):
                values[TensorRef(layer.name, index)] = tensor
            layer_outputs[layer.name] = [tensor.value for tensor in outputs]
            final.extend(layer_final)
        result = RunResult(
            outputs={
                name: np.asarray(values[ref].value, dtype=np.float32)
                for name, ref in zip(self._spec.output_names, self._spec.outputs, strict=True)
            },
            states=[np.asarray(s, dtype=np.float32) for s in final],
        )
        return result, layer_outputs

    # ---- construction ---------------------------------------------------------------------------------------

    def _check_graph(self) -> None:
        """Every layer reads one tensor produced earlier; every model output exists."""
        known = {TensorRef(i.name) for i in self._spec.inputs}
        for layer in self._spec.layers:
            if len(layer.inputs) != 1:
                raise ModelFileError(f"layer {layer.name!r}: expected one input tensor, got {len(layer.inputs)}")
            for ref in (*layer.inputs, *layer.initial_state):
                if ref not in known:
                    raise ModelFileError(f"layer {layer.name!r}: reads {ref} before it is produced")
            known.update(TensorRef(layer.name, k) for k in range(layer_output_count(layer)))
        for ref in self._spec.outputs:
            if ref not in known:
                raise ModelFileError(f"model output {ref} is not produced by any layer")
        if len(self._spec.outputs) != len(self._spec.output_names):
            raise ModelFileError(
                f"{len(self._spec.outputs)} model outputs but {len(self._spec.output_names)} output names"
            )

    def _offsets(self) -> list[int]:
        offsets, total = [], 0
        for node in self._nodes:
            offsets.append(total)
            total += node.state_count
        return offsets

    # ---- running --------------------------------------------------------------------------------------------

    def _feed(self, inputs: Feeds, mask: np.ndarray | None) -> tuple[RunContext, dict[TensorRef, Tensor]]:
        known = {i.name for i in self._spec.inputs}
        unknown = sorted(set(inputs) - known)
        if unknown:
            raise InvalidInput(f"unknown input(s) {unknown}; the model takes {sorted(known)}")
        explicit = self._explicit_mask(mask)
        values: dict[TensorRef, Tensor] = {}
        data_inputs = {t.name for t in self._signature.inputs}
        for spec in self._spec.inputs:
            if spec.name in inputs:
                value = _input_array(spec, inputs[spec.name])
            elif spec.name in data_inputs:
                raise InvalidInput(f"missing input {spec.name!r}")
            else:
                continue  # an initial-state input the caller left out: zeros (see _initial_states)
            timed = spec.name in data_inputs and _has_time_axis(spec)
            values[TensorRef(spec.name)] = Tensor(value, _input_mask(spec.name, value, explicit) if timed else None)
        return RunContext(explicit), values

    def _explicit_mask(self, mask: np.ndarray | None) -> np.ndarray | None:
        if mask is None:
            return None
        keep = np.asarray(mask)
        if keep.ndim != 2:
            raise InvalidInput(f"mask must be bool (batch, time), got shape {keep.shape}")
        keep = keep.astype(bool)
        return keep.T if self._time_major else keep

    def _initial_states(
        self,
        layer: LayerSpec,
        count: int,
        offset: int,
        states: Sequence[np.ndarray] | None,
        values: Mapping[TensorRef, Tensor],
    ) -> InitialStates | None:
        """The layer's slice of `states`; else its initial_state tensors (None = zeros, for an unfed input)."""
        if count == 0:
            return None
        if states is not None:
            return [None if s is None else np.asarray(s, dtype=np.float64) for s in states[offset : offset + count]]
        if not layer.initial_state:
            return None
        if len(layer.initial_state) != count:
            raise ModelFileError(
                f"layer {layer.name!r}: {len(layer.initial_state)} initial_state tensors, expected {count}"
            )
        return [values[ref].value if ref in values else None for ref in layer.initial_state]


def _recurrent_config(layer: LayerSpec) -> Mapping[str, Any]:
    """The config holding a layer's recurrent options (a Bidirectional keeps them in its wrapped layer)."""
    return kind_of(layer).recurrent_config(layer.config) or layer.config


def _has_time_axis(spec: InputSpec) -> bool:
    return len(spec.shape) >= (2 if spec.dtype.startswith("int") else 3)


def _input_array(spec: InputSpec, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != len(spec.shape):
        raise InvalidInput(f"input {spec.name!r} has {array.ndim} dimensions {array.shape}, expected {spec.shape}")
    for axis in range(2, array.ndim):
        if spec.shape[axis] is not None and array.shape[axis] != spec.shape[axis]:
            raise InvalidInput(f"input {spec.name!r} has shape {array.shape}, expected {spec.shape}")
    if spec.dtype.startswith("int"):
        return array
    if array.dtype.kind not in "fiub":
        raise InvalidInput(f"input {spec.name!r} must be numeric, got dtype {array.dtype}")
    return array.astype(np.float64)


def _input_mask(name: str, value: np.ndarray, explicit: np.ndarray | None) -> np.ndarray | None:
    if explicit is None:
        return None
    if explicit.shape != value.shape[:2]:
        raise InvalidInput(f"mask has shape {explicit.shape}, but input {name!r} has {value.shape[:2]} steps")
    return explicit
