"""The Monte-Carlo dropout graph: a model's graph that takes Keras' training-time dropout masks as inputs.

`to_onnx(spec, dropout=True)` exports it; `rnnserve.mc_dropout` draws the masks and states the rules, which this
graph computes exactly as the numpy reference (`mc_dropout.DroppedCell`) does. Besides the model's own inputs, it
takes one float32 input per mask, named as `mc_dropout.Masks` names them, with the masks' own shapes:

* `<layer>/dropout` `(g, batch, features)`: a recurrent layer's input masks, one per gate (`g` = 3 for GRU, 4 for
  LSTM) when it has a `recurrent_dropout`, else one (`g` = 1) that every gate shares;
* `<layer>/recurrent_dropout` `(g, batch, units)`: its state masks, one per gate;
* `<layer>/mask`: a Dropout layer's, its input's shape (`batch` and `time` symbolic, as the data inputs' are),
  with the fixed sizes of its `noise_shape` (1 broadcasts).

A layer with an input mask and no `recurrent_dropout` is the layer itself run on `x * m` (its fused onnxruntime op
kept for unmasked passes); with a `recurrent_dropout` its cell is built here, per gate:
`x_g = (x * m_g) K_g` (hoisted out of the loop as one batched MatMul over the gates and timesteps) and
`h_g = (h * r_g) R_g` (one batched MatMul over the gates a step), in both loop forms (Scan, unrolled). The mask
inputs are loop invariants read from the outer scope. A model's default graph is not touched: this one is built
only when a request first asks for dropout (`OrtModel.run_with_masks`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from rnnserve.errors import InvalidInput
from rnnserve.export.activations import emit_activation
from rnnserve.export.builder import GraphBuilder
from rnnserve.export.context import LayerCall, LayerResult, Value
from rnnserve.export.converters.recurrent import (
    Cell,
    StepFn,
    activate_gates,
    cell_activation,
    convert_recurrent,
    sequence_input,
)
from rnnserve.export.registry import Converter, get_converter
from rnnserve.export.weights import check_weights
from rnnserve.kinds import kind_of
from rnnserve.spec import LayerSpec, ModelSpec

GATES: Mapping[str, int] = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}
"""The recurrent classes whose cells Monte-Carlo dropout applies masks to, and their gates."""


@dataclass(frozen=True)
class DropoutSite:
    """A layer that drops something in training: a recurrent layer's rates, or a Dropout layer's."""

    layer: str
    dropout: float
    recurrent_dropout: float
    dropout_layer: bool = False
    noise_shape: tuple[int | None, ...] | None = None
    gates: int = 1  # a recurrent layer's
    features: int = 0  # a recurrent layer's input width
    units: int = 0

    @property
    def input_masks(self) -> int:
        """How many input masks a recurrent layer draws: one per gate with `recurrent_dropout`, else one."""
        return self.gates if self.recurrent_dropout else 1

    @property
    def mask_names(self) -> tuple[str, ...]:
        """The masks it takes, in the order they are drawn."""
        if self.dropout_layer:
            return (f"{self.layer}/mask",)
        names = (f"{self.layer}/dropout",) if self.dropout else ()
        return names + ((f"{self.layer}/recurrent_dropout",) if self.recurrent_dropout else ())


def _rate(config: Mapping[str, Any], key: str) -> float:
    rate = float(config.get(key) or 0.0)
    return rate if 0.0 < rate < 1.0 else 0.0  # Keras applies dropout only for 0 < rate < 1


def unsupported(layer: LayerSpec) -> InvalidInput:
    return InvalidInput(
        f"dropout: layer {layer.name!r} ({layer.class_name}) drops units in training, and Monte-Carlo dropout "
        "supports SimpleRNN, GRU, LSTM and Dropout layers only"
    )


def cell_layer(layer: LayerSpec) -> LayerSpec | None:
    """The SimpleRNN/GRU/LSTM layer that `layer` computes (itself, or the layer of an `RNN` around one built-in
    cell), None for any other layer."""
    if layer.class_name in GATES:
        return layer
    config = layer.config
    if layer.class_name == "RNN" and not config.get("stacked", True) and len(config.get("cells", ())) == 1:
        cell = config["cells"][0]
        if cell["layer"] in GATES:
            return LayerSpec(
                cell["layer"], layer.name, cell["config"], layer.weights, layer.inputs, layer.initial_state
            )
    return None


def _cells_drop(layer: LayerSpec) -> bool:
    """Whether stacked cells (`RNN(StackedRNNCells)`, also inside a Bidirectional) hold a dropout rate: their
    configs are per cell, the layer's parts other than its own config (`LayerKind.parts`)."""
    kind = kind_of(layer)
    own = kind.own_config(layer.config)
    return any(
        part != own and (_rate(part, "dropout") or _rate(part, "recurrent_dropout"))
        for part in kind.parts(layer.config).values()
    )


def dropout_sites(spec: ModelSpec) -> list[DropoutSite]:
    """The layers of `spec` that apply dropout in training, in layer order; `InvalidInput` when one of them is of a
    kind Monte-Carlo dropout does not support (Bidirectional, TimeDistributed(Dropout), stacked cells)."""
    sites = []
    for layer in spec.layers:
        kind = kind_of(layer)
        own = kind.own_config(layer.config)
        if getattr(kind, "drops_in_training", False):
            rate = _rate(own, "rate")
            noise = own.get("noise_shape")
            if rate:
                if kind.inner(layer.config) is not None:
                    raise unsupported(layer)
                sites.append(DropoutSite(layer.name, rate, 0.0, True, None if noise is None else tuple(noise)))
            continue
        rates = (_rate(own, "dropout"), _rate(own, "recurrent_dropout"))
        if kind.inner(layer.config) is not None and _rate(own, "rate"):
            raise unsupported(layer)  # TimeDistributed(Dropout)
        if _cells_drop(layer):
            raise unsupported(layer)
        if not any(rates):
            continue
        cell = cell_layer(layer)
        if cell is None:
            raise unsupported(layer)
        kernel = np.shape(cell.weights["kernel"])
        units = int(cell.config["units"])
        sites.append(DropoutSite(layer.name, *rates, gates=GATES[cell.class_name], features=kernel[0], units=units))
    return sites


# ---- the graph's mask inputs ------------------------------------------------------------------------------------


class MaskInputs:
    """The mask inputs of one export: declared with the model's inputs (so no generated name takes theirs), the
    shape of a Dropout layer's filled in when its input is known."""

    def __init__(self, g: GraphBuilder, sites: Sequence[DropoutSite], batch_dim: str, time_dim: str) -> None:
        self.sites = {s.layer: s for s in sites}
        self.batch_dim = batch_dim
        self.time_dim = time_dim
        self.inputs: dict[str, onnx.ValueInfoProto] = {}
        for site in sites:
            for name in site.mask_names:
                shape: list[int | str] | None = None
                if not site.dropout_layer:
                    width = site.units if name.endswith("/recurrent_dropout") else site.features
                    gates = site.gates if name.endswith("/recurrent_dropout") else site.input_masks
                    shape = [gates, batch_dim, width]
                g.add_input(name, TensorProto.FLOAT, shape)
                self.inputs[name] = g.inputs[-1]

    def converter(self, layer: LayerSpec, default: Converter) -> Converter:
        """The converter of `layer` in this graph: `default` unless the layer drops something."""
        site = self.sites.get(layer.name)
        if site is None:
            return default
        if site.dropout_layer:
            return lambda g, call: self._dropout_layer(g, call, site)
        return lambda g, call: _recurrent(g, call, site)

    def _dropout_layer(self, g: GraphBuilder, call: LayerCall, site: DropoutSite) -> LayerResult:
        """`x * mask`, the mask's input declared with `x`'s shape (noise_shape's fixed sizes where it has them)."""
        if len(call.inputs) != 1:
            raise InvalidInput(f"dropout: layer {call.layer.name!r} takes one input, got {len(call.inputs)}")
        x = call.inputs[0]
        name = f"{site.layer}/mask"
        noise = site.noise_shape
        if noise is not None and len(noise) != len(x.shape):
            raise InvalidInput(
                f"dropout: layer {site.layer!r} has noise_shape {list(noise)} for an input of {len(x.shape)} dimensions"
            )
        batch_axis = 1 if x.time_major else 0
        shape = self.inputs[name].type.tensor_type.shape
        for k, size in enumerate(x.shape):
            dim = shape.dim.add()
            fixed = None if noise is None else noise[k]
            if fixed is not None:
                dim.dim_value = int(fixed)
            elif k == batch_axis:
                dim.dim_param = self.batch_dim
            elif x.is_sequence and k == x.time_axis and size is None:
                dim.dim_param = self.time_dim
            elif size is not None:
                dim.dim_value = int(size)
            else:
                raise InvalidInput(f"dropout: the input of layer {site.layer!r} has an unknown size on axis {k}")
        return LayerResult((replace(x, name=g.op("Mul", x.name, name, hint=f"{site.layer}/dropped")),))


# ---- recurrent layers ---------------------------------------------------------------------------------------------


def _recurrent(g: GraphBuilder, call: LayerCall, site: DropoutSite) -> LayerResult:
    layer = cell_layer(call.layer)
    if layer is None:
        raise unsupported(call.layer)
    x = sequence_input(call)
    check_weights(layer, x.shape[-1])
    input_mask = f"{site.layer}/dropout" if site.dropout else None
    if not site.recurrent_dropout:  # one input mask the gates share: the layer itself on x * m
        assert input_mask is not None
        m = g.op("Gather", input_mask, g.constant(0, "int64"), axis=0, hint=f"{site.layer}/m")  # (B, F)
        dropped = g.op("Mul", x.name, g.op("Unsqueeze", m, g.ints([x.time_axis])), hint=f"{site.layer}/x_dropped")
        return get_converter(call.layer.class_name)(g, replace(call, inputs=(replace(x, name=dropped),)))
    cell = _dropped_cell(g, layer, input_mask, f"{site.layer}/recurrent_dropout")
    return convert_recurrent(g, replace(call, layer=layer, inputs=(x,)), cell)


def _blocks(array: np.ndarray, units: int, gates: int) -> np.ndarray:
    """`(n, gU)` -> `(g, n, U)`: the column block of each gate."""
    return np.stack([array[..., k * units : (k + 1) * units] for k in range(gates)])


def _per_gate(b: GraphBuilder, values: str) -> str:
    """`(g, B, U)` -> `(B, gU)`, gate blocks side by side as the kernels lay them out."""
    return b.op("Reshape", b.op("Transpose", values, perm=[1, 0, 2]), b.ints([0, -1]))


def _dropped_cell(g: GraphBuilder, layer: LayerSpec, input_mask: str | None, recurrent_mask: str) -> Cell:
    """The cell of a SimpleRNN/GRU/LSTM `layer` with per-gate masks, as `mc_dropout.DroppedCell` computes it."""
    config, weights, name = layer.config, layer.weights, layer.name
    units = int(config["units"])
    gates = GATES[layer.class_name]
    activation = cell_activation(config, "activation", name)
    gate_activation = activation if gates == 1 else cell_activation(config, "recurrent_activation", name)
    kernel = np.asarray(weights["kernel"])
    recurrent = np.asarray(weights["recurrent_kernel"])
    bias = np.asarray(weights["bias"]) if "bias" in weights else None
    reset_after = layer.class_name == "GRU" and bool(config.get("reset_after", True))
    input_bias = None if bias is None else (bias[0] if reset_after else bias)
    if input_mask is None:
        kernel_name, project = g.initializer(kernel, f"{name}/kernel"), None
    else:
        kernel_name = g.initializer(_blocks(kernel, units, gates)[:, None], f"{name}/kernel_gates")
        project = _projection(name, kernel_name, units, gates, input_mask)

    if layer.class_name == "SimpleRNN":
        r0 = g.op("Gather", recurrent_mask, g.constant(0, "int64"), axis=0, hint=f"{name}/r")
        rk = g.initializer(recurrent, f"{name}/recurrent_kernel")

        def simple(b: GraphBuilder, xp_t: str, states: Sequence[str]) -> tuple[str, tuple[str, ...]]:
            h = emit_activation(b, activation, b.op("Add", xp_t, b.op("MatMul", b.op("Mul", states[0], r0), rk)))
            return h, (h,)

        step: StepFn = simple
    elif layer.class_name == "LSTM":
        stacked = g.initializer(_blocks(recurrent, units, 4), f"{name}/recurrent_kernel_gates")

        def lstm(b: GraphBuilder, xp_t: str, states: Sequence[str]) -> tuple[str, tuple[str, ...]]:
            h, c = states
            hp = b.op("MatMul", b.op("Mul", b.op("Unsqueeze", h, b.ints([0])), recurrent_mask), stacked)
            zz = b.op("Add", xp_t, _per_gate(b, hp))
            i, f, c_in, o = b.node("Split", [zz], 4, axis=-1, num_outputs=4)
            i, f, o = (emit_activation(b, gate_activation, v) for v in (i, f, o))
            c_new = b.op("Add", b.op("Mul", f, c), b.op("Mul", i, emit_activation(b, activation, c_in)), hint="c")
            h_new = b.op("Mul", o, emit_activation(b, activation, c_new), hint="h")
            return h_new, (h_new, c_new)

        step = lstm
    else:
        step = _gru_step(g, name, units, activation, gate_activation, recurrent, bias, reset_after, recurrent_mask)
    return Cell(
        units,
        kernel_name,
        None if input_bias is None else g.initializer(input_bias, f"{name}/bias"),
        step,
        project=project,
    )


def _gru_step(
    g: GraphBuilder,
    name: str,
    units: int,
    activation: str,
    gate_activation: str,
    recurrent: np.ndarray,
    bias: np.ndarray | None,
    reset_after: bool,
    recurrent_mask: str,
) -> StepFn:
    split = g.ints([2 * units, units])

    def update(b: GraphBuilder, z: str, h: str, candidate: str) -> str:
        keep = b.op("Mul", z, h)
        return b.op("Add", keep, b.op("Mul", b.op("Sub", b.scalar(1.0), z), candidate), hint="h")

    if reset_after:
        stacked = g.initializer(_blocks(recurrent, units, 3), f"{name}/recurrent_kernel_gates")
        recurrent_bias = None if bias is None else g.initializer(bias[1], f"{name}/recurrent_bias")

        def after(b: GraphBuilder, xp_t: str, states: Sequence[str]) -> tuple[str, tuple[str, ...]]:
            h = states[0]
            hp = _per_gate(b, b.op("MatMul", b.op("Mul", b.op("Unsqueeze", h, b.ints([0])), recurrent_mask), stacked))
            if recurrent_bias is not None:
                hp = b.op("Add", hp, recurrent_bias)
            x_zr, x_h = b.node("Split", [xp_t, split], 2, axis=-1)
            h_zr, h_h = b.node("Split", [hp, split], 2, axis=-1)
            z, r = activate_gates(b, gate_activation, b.op("Add", x_zr, h_zr), 2)
            candidate = emit_activation(b, activation, b.op("Add", x_h, b.op("Mul", r, h_h)))
            h_new = update(b, z, h, candidate)
            return h_new, (h_new,)

        return after
    stacked_zr = g.initializer(_blocks(recurrent[:, : 2 * units], units, 2), f"{name}/recurrent_kernel_zr_gates")
    recurrent_h = g.initializer(recurrent[:, 2 * units :], f"{name}/recurrent_kernel_h")
    mask_zr = g.op("Slice", recurrent_mask, g.ints([0]), g.ints([2]), g.ints([0]), hint=f"{name}/r_zr")
    mask_h = g.op("Gather", recurrent_mask, g.constant(2, "int64"), axis=0, hint=f"{name}/r_h")

    def before(b: GraphBuilder, xp_t: str, states: Sequence[str]) -> tuple[str, tuple[str, ...]]:
        h = states[0]
        h_zr = _per_gate(b, b.op("MatMul", b.op("Mul", b.op("Unsqueeze", h, b.ints([0])), mask_zr), stacked_zr))
        x_zr, x_h = b.node("Split", [xp_t, split], 2, axis=-1)
        z, r = activate_gates(b, gate_activation, b.op("Add", x_zr, h_zr), 2)
        reset = b.op("Mul", r, b.op("Mul", h, mask_h))
        candidate = emit_activation(b, activation, b.op("Add", x_h, b.op("MatMul", reset, recurrent_h)))
        h_new = update(b, z, h, candidate)
        return h_new, (h_new,)

    return before


def _projection(
    name: str, blocks: str, units: int, gates: int, input_mask: str
) -> Callable[[GraphBuilder, Value], str]:
    """`x -> concat_g((x * m_g) K_g)` over every timestep: `(g, 1, F, U)` kernel blocks against `(g, B, T, F)`."""

    def project(g: GraphBuilder, x: Value) -> str:
        masks = g.op(
            "Unsqueeze", input_mask, g.ints([1 + x.time_axis]), hint=f"{name}/m"
        )  # (g, B, 1, F) or (g, 1, B, F)
        dropped = g.op("Mul", g.op("Unsqueeze", x.name, g.ints([0])), masks, hint=f"{name}/x_dropped")
        per_gate = g.op("MatMul", dropped, blocks, hint=f"{name}/xk_gates")  # (g, B, T, U)
        transposed = g.op("Transpose", per_gate, perm=[1, 2, 0, 3])
        return g.op("Reshape", transposed, g.ints([0, 0, gates * units]), hint=f"{name}/xk")

    return project
