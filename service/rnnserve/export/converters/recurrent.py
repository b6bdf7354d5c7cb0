"""The recurrent loop shared by SimpleRNN, GRU, LSTM and Bidirectional (SEMANTICS §3-4).

A `Cell` knows its weights and one step; this module owns everything around it:

* the input projection `x @ kernel + bias`, hoisted out of the loop as one MatMul over all timesteps;
* the loop itself, as a `Scan` over a free time axis, or as an unrolled chain for a fixed T;
* in front of a `Scan`, an `If` that runs the cell's fused onnxruntime op instead when no step is masked
  (`native.py`: the same numbers, several times faster);
* Keras masking: at a masked step the states keep their previous value and the output is the previous step's
  output (zeros before the first unmasked step), or zeros with `zero_output_for_mask`;
* `go_backwards` (the loop reads input and mask from the end; outputs stay in processing order) and
  `reverse_output` (the sequence output is flipped back into input order: Bidirectional's backward layer);
* `time_major` inputs `(T, B, F)` (Keras 2), read along axis 0 with no transpose.

The mask is always present (the graph's `mask` input at least), so every step is a masked step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import TensorProto

from rnnserve.errors import InvalidArgument, ModelFileError
from rnnserve.export.activations import emit_activation
from rnnserve.export.builder import GraphBuilder
from rnnserve.export.context import LayerCall, LayerResult, Value
from rnnserve.export.converters.native import NativeCell, run_native
from rnnserve.kinds.base import kind_of
from rnnserve.layers.activations import ROW_WISE, require_shape_preserving
from rnnserve.spec import LayerSpec

# (builder, projected input x_t @ kernel + bias, states) -> (output, candidate new states)
StepFn = Callable[[GraphBuilder, str, Sequence[str]], tuple[str, tuple[str, ...]]]


@dataclass(frozen=True)
class Cell:
    """One recurrent cell: its hoisted input projection and its step."""

    units: int
    kernel: str  # initializer (F, G)
    bias: str | None  # initializer (G,) added to the projection, or None
    step: StepFn
    native: NativeCell | None = None  # the fused ONNX op for unmasked passes, when it computes the same
    # the width of each state when they differ (stacked cells), else () for `units` each
    state_units: tuple[int, ...] = ()
    # the hoisted projection `x -> (B, T, G)` in place of `x @ kernel` (MC dropout's per-gate input masks,
    # `rnnserve.export.dropout`); the bias is still added after it
    project: Callable[[GraphBuilder, Value], str] | None = None
    # a stacked cell's in-step projection of its input (the previous cell's output, `(B, F)` -> `(B, G)`) in place
    # of `input @ kernel` (MC dropout's input masks of stacked cells); the bias is still added after it
    project_step: Callable[[GraphBuilder, str], str] | None = None

    def state_width(self, k: int) -> int:
        return self.state_units[k] if self.state_units else self.units


@dataclass(frozen=True)
class Direction:
    """How one pass over the sequence runs and what it returns."""

    go_backwards: bool = False
    reverse_output: bool = False
    return_sequences: bool = False
    zero_output_for_mask: bool = False
    unroll: bool = False


def wants_unroll(layer: LayerSpec, override: bool | None) -> bool:
    """Whether a recurrent layer is exported unrolled: the override when given, else its own `unroll`."""
    if override is not None:
        return override
    config = kind_of(layer).recurrent_config(layer.config) or layer.config
    return bool(config.get("unroll", False))


def cell_activation(config: Mapping[str, Any], key: str, layer_name: str) -> str:
    """A cell's activation name (canonical in the spec), refused when it changes the shape."""
    name = str(config[key])
    require_shape_preserving(name, argument=f"layer {layer_name!r} {key}")
    return name


def activate_gates(g: GraphBuilder, activation: str, x: str, parts: int) -> list[str]:
    """Apply `activation` to each of `parts` equal column blocks of `x` (one node when it is elementwise)."""
    if parts == 1:
        return [emit_activation(g, activation, x)]
    if activation in ROW_WISE:  # Keras applies it gate by gate: softmax over one gate, not over all of them
        return [emit_activation(g, activation, p) for p in g.node("Split", [x], parts, axis=-1, num_outputs=parts)]
    return g.node("Split", [emit_activation(g, activation, x)], parts, axis=-1, num_outputs=parts)


def sequence_input(call: LayerCall) -> Value:
    """The one sequence input of a recurrent layer."""
    if len(call.inputs) != 1 or not call.inputs[0].is_sequence or len(call.inputs[0].shape) != 3:
        raise ModelFileError(
            f"layer {call.layer.name!r} ({call.layer.class_name}) needs one (batch, time, features) sequence input, "
            f"got {[v.shape for v in call.inputs]}",
            layer=call.layer.name,
        )
    return call.inputs[0]


def run_direction(
    g: GraphBuilder, cell: Cell, x: Value, initial_state: Sequence[str], direction: Direction, *, hint: str
) -> tuple[str, tuple[str, ...]]:
    """Run `cell` over sequence `x` once; returns (sequence or last output, final states).

    Unrolled: a chain of T steps. Otherwise a `Scan`, behind an `If` that takes the cell's fused native op
    instead when the mask is all True (and the batch small enough for it to win), when the cell has one.
    """
    assert x.mask is not None
    if direction.unroll and x.time_steps is None:
        raise InvalidArgument(f"layer {hint!r}: an unrolled graph needs a fixed number of timesteps")
    if direction.unroll or cell.native is None:
        return _loop(g, cell, x, initial_state, direction, hint)
    return _dispatch(g, cell, cell.native, x, initial_state, direction, hint)


def _loop(
    g: GraphBuilder, cell: Cell, x: Value, initial: Sequence[str], d: Direction, hint: str
) -> tuple[str, tuple[str, ...]]:
    """The masked loop: projection hoisted out, then a Scan or an unrolled chain."""
    assert x.mask is not None
    project = cell.project
    projected = g.op("MatMul", x.name, cell.kernel, hint=f"{hint}/xk") if project is None else project(g, x)
    if cell.bias is not None:
        projected = g.op("Add", projected, cell.bias, hint=f"{hint}/xp")
    mask = g.op("Unsqueeze", x.mask, g.ints([2]), hint=f"{hint}/mask")  # (B, T, 1)
    zeros = ""
    if _needs_carry(d):
        # zeros shaped as the output: as a state of the output's width (stacked cells: the last cell's h)
        like = next(k for k in range(len(initial)) if cell.state_width(k) == cell.units)
        zeros = g.op("ConstantOfShape", g.op("Shape", initial[like]), hint=f"{hint}/zeros")
    if d.unroll:
        assert x.time_steps is not None
        return _unrolled(g, cell, x, projected, mask, initial, zeros, d, x.time_steps)
    return _scan(g, cell, x, projected, mask, initial, zeros, d, hint)


def _dispatch(
    g: GraphBuilder, cell: Cell, native: NativeCell, x: Value, initial: Sequence[str], d: Direction, hint: str
) -> tuple[str, tuple[str, ...]]:
    """`If(all steps unmasked [and batch <= max]) native op else Scan`: the same numbers, the fastest way."""
    assert x.mask is not None
    unmasked = g.op("ReduceMin", g.op("Cast", x.mask, to=TensorProto.INT32), keepdims=0)
    condition = g.op("Cast", unmasked, to=TensorProto.BOOL, hint=f"{hint}/unmasked")
    if native.max_batch is not None:
        batch = g.op("Gather", g.op("Shape", x.name), g.constant(1 if x.time_major else 0, "int64"))
        small = g.op("LessOrEqual", batch, g.constant(native.max_batch, "int64"))
        condition = g.op("And", condition, small, hint=f"{hint}/use_native")
    branches = []
    for label, run in (("native", _native), ("loop", _loop)):
        branch = g.subgraph(f"{hint}/{label}")
        y, finals = run(branch, cell, x, initial, d, hint)
        y_value = output_value(y, x, cell.units, d.return_sequences)
        for value in (y_value, *(state_value(s, x, cell.units) for s in finals)):
            branch.add_output(value.name, TensorProto.FLOAT, list(value.shape))
        branches.append(branch.graph())
    outputs = g.node("If", [condition], 1 + len(initial), hint=f"{hint}/out", then_branch=branches[0],
                     else_branch=branches[1])  # fmt: skip
    return outputs[0], tuple(outputs[1:])


def _native(
    g: GraphBuilder, cell: Cell, x: Value, initial: Sequence[str], d: Direction, hint: str
) -> tuple[str, tuple[str, ...]]:
    """The unmasked pass as one fused op; outputs in the same order and layout as the loop's."""
    assert cell.native is not None
    x_tbf = x.name if x.time_major else g.op("Transpose", x.name, perm=[1, 0, 2])
    sequence, finals = run_native(g, cell.native, x_tbf, initial, reverse=d.go_backwards)
    if not d.return_sequences:  # the last output of an unmasked pass is the final h
        return g.op("Identity", finals[0], hint=f"{hint}/last"), finals
    if d.go_backwards != d.reverse_output:  # ONNX writes reverse outputs in input order; Keras keeps processing order
        last = np.iinfo(np.int64).min
        sequence = g.op("Slice", sequence, g.ints([-1]), g.ints([last]), g.ints([0]), g.ints([-1]))
    return (sequence if x.time_major else g.op("Transpose", sequence, perm=[1, 0, 2])), finals


def _masked_step(
    g: GraphBuilder, cell: Cell, xp_t: str, mask_t: str, states: Sequence[str], prev_out: str, d: Direction
) -> tuple[str, tuple[str, ...]]:
    output, candidates = cell.step(g, xp_t, states)
    new_states = tuple(g.op("Where", mask_t, c, s, hint="state") for c, s in zip(candidates, states, strict=True))
    fill = g.scalar(0.0) if d.zero_output_for_mask else prev_out
    return g.op("Where", mask_t, output, fill, hint="out"), new_states


def _needs_carry(d: Direction) -> bool:
    """A loop-carried output is needed to repeat it at masked steps, or to return the last one."""
    return not d.zero_output_for_mask or not d.return_sequences


def _scan(
    g: GraphBuilder,
    cell: Cell,
    x: Value,
    projected: str,
    mask: str,
    initial: Sequence[str],
    zeros: str,
    d: Direction,
    hint: str,
) -> tuple[str, tuple[str, ...]]:
    body = g.subgraph(f"{hint}/step")
    width = None  # body shapes are left to shape inference from the Scan inputs
    states = [
        body.add_input(f"{hint}/state_in", TensorProto.FLOAT, [None, cell.state_width(k)], exact=False)
        for k in range(len(initial))
    ]
    carry = _needs_carry(d)
    prev_out = body.add_input(f"{hint}/out_in", TensorProto.FLOAT, [None, cell.units], exact=False) if carry else ""
    xp_t = body.add_input(f"{hint}/xp_t", TensorProto.FLOAT, [None, width], exact=False)
    mask_t = body.add_input(f"{hint}/mask_t", TensorProto.BOOL, [None, 1], exact=False)
    out_t, new_states = _masked_step(body, cell, xp_t, mask_t, states, prev_out, d)
    body_outputs = list(new_states)
    if carry:
        body_outputs.append(out_t)
    if d.return_sequences:
        body_outputs.append(body.op("Identity", out_t, hint="seq_out") if carry else out_t)
    widths = [cell.state_width(k) for k in range(len(new_states))] + [cell.units] * (
        len(body_outputs) - len(new_states)
    )
    for name, width in zip(body_outputs, widths, strict=True):
        body.add_output(name, TensorProto.FLOAT, [None, width])

    reverse_input = 1 if d.go_backwards else 0
    attrs: dict[str, Any] = {
        "num_scan_inputs": 2,
        "scan_input_axes": [x.time_axis, 1],
        "scan_input_directions": [reverse_input, reverse_input],
    }
    if d.return_sequences:
        attrs["scan_output_axes"] = [x.time_axis]
        attrs["scan_output_directions"] = [1 if d.reverse_output else 0]
    inputs = [*initial, *([zeros] if carry else []), projected, mask]
    outputs = g.node("Scan", inputs, len(body_outputs), hint=f"{hint}/scan", body=body.graph(), **attrs)
    finals = tuple(outputs[: len(initial)])
    result = outputs[-1] if d.return_sequences else outputs[len(initial)]
    return result, finals


def _unrolled(
    g: GraphBuilder,
    cell: Cell,
    x: Value,
    projected: str,
    mask: str,
    initial: Sequence[str],
    zeros: str,
    d: Direction,
    time_steps: int,
) -> tuple[str, tuple[str, ...]]:
    axis = x.time_axis
    states, prev_out = tuple(initial), zeros
    outputs: list[str] = []
    order = range(time_steps - 1, -1, -1) if d.go_backwards else range(time_steps)
    for t in order:
        index = g.constant(t, dtype="int64")
        xp_t = g.op("Gather", projected, index, axis=axis, hint=f"xp_{t}")
        mask_t = g.op("Gather", mask, index, axis=1, hint=f"mask_{t}")
        prev_out, states = _masked_step(g, cell, xp_t, mask_t, states, prev_out, d)
        outputs.append(prev_out)
    if not d.return_sequences:
        return prev_out, states
    if d.reverse_output:
        outputs.reverse()
    axes = g.ints([axis])
    steps = [g.op("Unsqueeze", o, axes) for o in outputs]
    return (steps[0] if len(steps) == 1 else g.op("Concat", *steps, axis=axis)), states


def convert_recurrent(g: GraphBuilder, call: LayerCall, cell: Cell) -> LayerResult:
    """A single-direction SimpleRNN/GRU/LSTM layer: outputs `[y]` or `[y, *states]`, and its final states."""
    config = call.layer.config
    x = sequence_input(call)
    direction = Direction(
        go_backwards=bool(config.get("go_backwards", False)),
        return_sequences=bool(config.get("return_sequences", False)),
        zero_output_for_mask=bool(config.get("zero_output_for_mask", False)),
        unroll=wants_unroll(call.layer, call.unroll),
    )
    y, finals = run_direction(g, cell, x, call.initial_state, direction, hint=call.layer.name)
    outputs = [output_value(y, x, cell.units, direction.return_sequences)]
    if config.get("return_state", False):
        outputs += [state_value(s, x, cell.units) for s in finals]
    return LayerResult(tuple(outputs), finals)


def output_value(name: str, x: Value, units: int, sequence: bool) -> Value:
    """The Value of a recurrent output: a sequence keeping `x`'s mask and layout, or the last step."""
    if sequence:
        return Value(name, (*x.shape[:-1], units), mask=x.mask, time_major=x.time_major)
    return state_value(name, x, units)


def state_value(name: str, x: Value, units: int) -> Value:
    batch = x.shape[1] if x.time_major else x.shape[0]
    return Value(name, (batch, units))
