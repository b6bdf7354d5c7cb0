"""`to_onnx`: a `ModelSpec` as one ONNX graph with explicit state, named as `rnnserve.runtime.runner` says.

Graph inputs: each signature input (by Keras input name; model inputs that only feed `initial_state` become
state inputs instead), then `mask` (bool `[batch, time]`, ANDed with the masks Embedding/Masking derive), then
one float32 `[batch, units]` input per state (`state_layout` order, named as the state). Outputs: each model
output by name, then each state's final value (after the last unmasked step) named `state + ":out"`.
Batch and time are symbolic (`batch`, `time`); an unrolled graph fixes time to its T.

A layer whose `initial_state` comes from another layer's output (an encoder's states) starts from that tensor,
and its state input is then unused: such a model answers whole sequences, not streams.

With `dropout=True` the graph is the model's Monte-Carlo dropout graph: after the state inputs, one float32 input
per training-time dropout mask (`rnnserve.export.dropout`); the default graph never has them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import onnx
from onnx import TensorProto

from rnnserve.errors import InvalidArgument, ModelFileError
from rnnserve.export.builder import Dim, GraphBuilder, elem_type
from rnnserve.export.context import LayerCall, Value
from rnnserve.export.converters.recurrent import wants_unroll
from rnnserve.export.dropout import MaskInputs, dropout_sites
from rnnserve.export.registry import get_converter
from rnnserve.kinds import kind_of
from rnnserve.runtime.runner import MASK_INPUT, STATE_OUT_SUFFIX
from rnnserve.signature import ModelSignature, TensorInfo, signature_from_spec
from rnnserve.spec import InputSpec, LayerSpec, ModelSpec, TensorRef, layer_states, state_layout

BATCH_DIM = "batch"
TIME_DIM = "time"


def is_recurrent(layer: LayerSpec) -> bool:
    """Whether the layer runs a cell over time (itself or wrapped), so that it may be unrolled."""
    return kind_of(layer).recurrent_config(layer.config) is not None


def is_sequence_input(spec_input: InputSpec) -> bool:
    """Inputs with a time axis: `(batch, time, ...)` floats, or `(batch, time)` token ids."""
    return len(spec_input.shape) >= 3 or (len(spec_input.shape) == 2 and spec_input.dtype == "int64")


def fixed_time_steps(spec: ModelSpec, unroll: bool | None, time_steps: int | None) -> int | None:
    """T of the graph when any recurrent layer is unrolled, else None. Raises InvalidArgument when T is unknown."""
    if time_steps is not None and time_steps < 1:
        raise InvalidArgument(f"time_steps must be >= 1, got {time_steps}")
    unrolled = [layer.name for layer in spec.layers if is_recurrent(layer) and wants_unroll(layer, unroll)]
    if not unrolled:
        return None
    if time_steps is not None:
        return time_steps
    time_major = signature_from_spec(spec).time_major
    static = [i.shape[0 if time_major else 1] for i in spec.inputs if is_sequence_input(i)]
    if static and isinstance(static[0], int):
        return static[0]
    raise InvalidArgument(
        f"layers {unrolled} are unrolled, which needs a fixed number of timesteps: pass time_steps= "
        "or give the model input a static time dimension"
    )


def choose_unroll(unroll: bool | None, time_steps: int | None) -> bool | None:
    """The graph form: the caller's choice, else unrolled for a single step, else each layer's own setting.

    Measured with bench/bench_graphs.py (units 128, one onnxruntime thread): for T = 1 the unrolled step takes
    0.56-0.89 of a Scan's time and is exact for any mask; for T >= 8 the unrolled chain is slower than the Scan
    (1.0-1.5x), so longer fixed-length graphs keep the layers' setting.
    """
    if unroll is not None:
        return unroll
    return True if time_steps == 1 else None


class _Export:
    """The state of one export: the builder, the values made so far and the final states."""

    def __init__(self, spec: ModelSpec, unroll: bool | None, time_steps: int | None, dropout: bool = False) -> None:
        self.spec = spec
        self.dropout = dropout
        self.masks: MaskInputs | None = None
        self.unroll = unroll
        self.time_steps = fixed_time_steps(spec, unroll, time_steps)
        self.signature = signature_from_spec(spec)
        self.g = GraphBuilder(spec.name)
        self.values: dict[TensorRef, Value] = {}
        self.final_states: dict[str, str] = {}
        self.state_inputs: dict[str, str] = {}

    def axes(self) -> tuple[int, int]:
        """(batch axis, time axis) of the model's sequence inputs."""
        return (1, 0) if self.signature.time_major else (0, 1)

    def declare_inputs(self) -> None:
        """Data inputs, then `mask`, then one input per state; model inputs that are initial states read those."""
        sig, g = self.signature, self.g
        by_name = {i.name: i for i in self.spec.inputs}
        data = [by_name[info.name] for info in sig.inputs]
        declared = {i.name: g.add_input(i.name, elem_type(i.dtype), self._input_dims(i)) for i in data}
        mask = g.add_input(MASK_INPUT, TensorProto.BOOL, [BATCH_DIM, self.time_steps or TIME_DIM])
        for state in sig.states:
            self.state_inputs[state.name] = g.add_input(state.name, TensorProto.FLOAT, [BATCH_DIM, state.shape[1]])
        if self.dropout:
            self.masks = MaskInputs(g, dropout_sites(self.spec), BATCH_DIM, TIME_DIM)
        for i in data:
            sequence = is_sequence_input(i)
            self.values[TensorRef(i.name)] = Value(
                declared[i.name],
                tuple(self._input_sizes(i)),
                elem_type(i.dtype),
                mask if sequence else None,
                sig.time_major and sequence,
            )
        units = {s.name: s.shape[1] for s in sig.states}
        for state_name, input_name in sig.initial_state_inputs.items():
            self.values.setdefault(
                TensorRef(input_name), Value(self.state_inputs[state_name], (None, units[state_name]))
            )

    def _input_sizes(self, spec_input: InputSpec) -> list[int | None]:
        """Static sizes: the batch is always free; the time is T for an unrolled graph, else free."""
        batch_axis, time_axis = self.axes()
        sizes: list[int | None] = [None if d is None else int(d) for d in spec_input.shape]
        sizes[batch_axis] = None
        if is_sequence_input(spec_input):
            sizes[time_axis] = self.time_steps
        return sizes

    def _input_dims(self, spec_input: InputSpec) -> list[Dim]:
        """The declared graph input shape: symbolic `batch` and `time`, static features."""
        batch_axis, time_axis = self.axes()
        dims: list[Dim] = list(self._input_sizes(spec_input))
        dims[batch_axis] = BATCH_DIM
        if is_sequence_input(spec_input) and self.time_steps is None:
            dims[time_axis] = TIME_DIM
        return dims

    def _initial_state(self, layer: LayerSpec) -> tuple[str, ...]:
        model_inputs = {i.name for i in self.spec.inputs}
        names = []
        for k, state in enumerate(layer_states(layer)):
            ref = layer.initial_state[k] if k < len(layer.initial_state) else None
            if ref is None or ref.layer in model_inputs:
                names.append(self.state_inputs[state.name])
            else:
                names.append(self._value(ref, layer).name)
        return tuple(names)

    def _value(self, ref: TensorRef, consumer: LayerSpec) -> Value:
        try:
            return self.values[ref]
        except KeyError:
            raise ModelFileError(
                f"layer {consumer.name!r} reads output {ref.index} of {ref.layer!r}, which does not exist "
                "(or comes later in the layer order)",
                layer=consumer.name,
            ) from None

    def convert_layers(self) -> None:
        for layer in self.spec.layers:
            call = LayerCall(
                layer=layer,
                inputs=tuple(self._value(ref, layer) for ref in layer.inputs),
                initial_state=self._initial_state(layer),
                unroll=self.unroll,
            )
            converter = get_converter(layer.class_name)
            if self.masks is not None:
                converter = self.masks.converter(layer, converter)
            result = converter(self.g, call)
            for k, value in enumerate(result.outputs):
                self.values[TensorRef(layer.name, k)] = value
            for state, final in zip(layer_states(layer), result.final_states, strict=True):
                self.final_states[state.name] = final

    def declare_outputs(self) -> dict[str, Value]:
        g = self.g
        outputs = {}
        for name, ref in zip(self.spec.output_names, self.spec.outputs, strict=True):
            value = self.values.get(ref)
            if value is None:
                raise ModelFileError(f"model output {name!r} refers to {ref}, which no layer produces")
            g.add_output(g.identity(value.name, name), value.elem_type, [None] * len(value.shape))
            outputs[name] = value
        for state in state_layout(self.spec):
            g.add_output(
                g.identity(self.final_states[state.name], state.name + STATE_OUT_SUFFIX),
                TensorProto.FLOAT,
                [None, None],
            )
        return outputs

    def reserve_outputs(self) -> None:
        for name in self.spec.output_names:
            self.g.reserve(name)
        for state in state_layout(self.spec):
            self.g.reserve(state.name + STATE_OUT_SUFFIX)


def _checked_output_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """Validate the model (what `check_model(full_check=True)` does, inferring once) and read its output shapes."""
    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    shapes = {}
    for output in inferred.graph.output:
        dims = output.type.tensor_type.shape.dim
        shapes[output.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return shapes


def _signature(
    export: _Export, outputs: Mapping[str, Value], inferred: Mapping[str, tuple[int | None, ...]]
) -> ModelSignature:
    """The model's signature: time stays free (other lengths get other graphs), output sizes from inference."""
    sig = export.signature

    def model_shape(shape: Sequence[int | None], sequence: bool) -> tuple[int | None, ...]:
        batch_axis, time_axis = export.axes() if sequence else (0, None)
        sizes = list(shape)
        if time_axis is not None and len(sizes) > time_axis:
            sizes[time_axis] = None
        if len(sizes) > batch_axis:
            sizes[batch_axis] = sig.batch_size
        return tuple(sizes)

    by_name = {i.name: i for i in export.spec.inputs}
    inputs = tuple(
        replace(info, shape=model_shape(info.shape, is_sequence_input(by_name[info.name]))) for info in sig.inputs
    )
    out_infos = tuple(
        TensorInfo(name, model_shape(inferred.get(name) or value.shape, value.is_sequence), "float32")
        for name, value in outputs.items()
    )
    return replace(sig, inputs=inputs, outputs=out_infos)


def to_onnx(
    spec: ModelSpec, *, unroll: bool | None = None, time_steps: int | None = None, dropout: bool = False
) -> tuple[onnx.ModelProto, ModelSignature]:
    """Export `spec` as an ONNX model and return it with the model's signature.

    `unroll=None` exports each recurrent layer as its config says (`Scan` for unroll=False, an unrolled chain for
    unroll=True), except that a graph for `time_steps=1` is always unrolled (see `choose_unroll`); True/False
    overrides every recurrent layer. An unrolled graph needs a fixed T: `time_steps`, else the input's static
    time dimension, else InvalidArgument. A `Scan` sits behind an `If` that runs onnxruntime's fused
    RNN/GRU/LSTM op instead when the whole mask is True and the cell has an exact fused form
    (`converters/native.py`). The model passes `onnx.checker` (full check) and strict shape inference before
    it is returned. `dropout`: the Monte-Carlo dropout graph, which takes the training-time dropout masks as inputs
    (`rnnserve.export.dropout`; `InvalidInput` when a layer drops units in a way it does not support).
    """
    export = _Export(spec, choose_unroll(unroll, time_steps), time_steps, dropout)
    export.declare_inputs()
    export.reserve_outputs()
    export.convert_layers()
    outputs = export.declare_outputs()
    model = export.g.model(doc_string=f"rnnserve export of Keras model {spec.name!r}")
    return model, _signature(export, outputs, _checked_output_shapes(model))
