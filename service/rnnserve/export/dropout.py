"""The Monte-Carlo dropout graph: a model's graph that takes Keras' training-time dropout masks as inputs.

`to_onnx(spec, dropout=True)` exports it; `rnnserve.mc_dropout` draws the masks and states the rules, which this
graph computes exactly as the numpy reference (`mc_dropout.DroppedCell`) does. Besides the model's own inputs, it
takes one float32 input per mask, named as `mc_dropout.Masks` names them, with the masks' own shapes. Each cell
that drops something has a prefix: a recurrent layer's (or `RNN(cell)`'s) is the layer's name, a Bidirectional
direction's `<layer>/forward`, `<layer>/backward`, a stacked cell's `<layer>/<key>` (`rnn/gru_cell`, inside a
Bidirectional `bi/forward/gru_cell`): the keys of `LayerKind.parts` under the layer's name. Its masks:

* `<prefix>/dropout` `(g, batch, features)`: the cell's input masks, one per gate (`g` = 3 for GRU, 4 for
  LSTM) when it has a `recurrent_dropout`, else one (`g` = 1) that every gate shares; a stacked cell's input is
  the previous cell's output. A tf_keras 2 GRU/LSTM layer on its fused path (`CellSite.per_step`) has instead one
  mask of its input's shape, `(batch, time, features)` (time first when the layer is `time_major`);
* `<prefix>/recurrent_dropout` `(g, batch, units)`: its state masks, one per gate;
* `<layer>/mask`: a Dropout layer's, its input's shape (`batch` and `time` symbolic, as the data inputs' are),
  with the fixed sizes of its `noise_shape` (1 broadcasts).

A layer (or a direction) with an input mask and no `recurrent_dropout` is the layer itself run on `x * m` (its
fused onnxruntime op kept for unmasked passes); with a `recurrent_dropout` its cell is built here, per gate:
`x_g = (x * m_g) K_g` (hoisted out of the loop as one batched MatMul over the gates and timesteps) and
`h_g = (h * r_g) R_g` (one batched MatMul over the gates a step), in both loop forms (Scan, unrolled). Stacked
cells are the stack of `kinds/rnn.py` with cells made here: a cell after the first applies its input masks to the
previous cell's output inside the step (`Cell.project_step`). The mask inputs are loop invariants read from the
outer scope. A model's default graph is not touched: this one is built only when a request first asks for dropout
(`OrtModel.run_with_masks`).
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
from rnnserve.kinds import get_kind, kind_of
from rnnserve.kinds.gru import reset_after_state
from rnnserve.kinds.gru import update as gru_update
from rnnserve.kinds.recurrent import LoopKind
from rnnserve.spec import LayerSpec, ModelSpec

GATES: Mapping[str, int] = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}
"""The recurrent classes whose cells Monte-Carlo dropout applies masks to, and their gates."""
DIRECTIONS = ("forward", "backward")  # a Bidirectional's, in the order it runs them (`kinds/bidirectional.py`)


@dataclass(frozen=True)
class CellSite:
    """One cell of a layer that drops something: a recurrent layer's (or `RNN(cell)`'s), one direction's of a
    Bidirectional, one of stacked cells (see the module docstring for `prefix`). Its rates may be zero (a stacked
    cell without dropout next to one with): it then takes no mask."""

    prefix: str
    class_name: str  # the layer the cell is the cell of: SimpleRNN, GRU, LSTM
    dropout: float
    recurrent_dropout: float
    features: int  # the cell's input width (a stacked cell's: the previous cell's units)
    units: int
    per_step: bool = False  # tf_keras 2's fused GRU/LSTM path: one input mask of the input's shape
    shares: str | None = None  # the prefix of the cell whose masks these repeat (Keras 3: a seeded Bidirectional)

    @property
    def gates(self) -> int:
        return GATES[self.class_name]

    @property
    def input_masks(self) -> int:
        """How many input masks the cell draws: one per gate with `recurrent_dropout`, else one."""
        return self.gates if self.recurrent_dropout else 1

    @property
    def input_mask(self) -> str | None:
        return f"{self.prefix}/dropout" if self.dropout else None

    @property
    def recurrent_mask(self) -> str | None:
        return f"{self.prefix}/recurrent_dropout" if self.recurrent_dropout else None

    @property
    def mask_names(self) -> tuple[str, ...]:
        return tuple(name for name in (self.input_mask, self.recurrent_mask) if name is not None)


@dataclass(frozen=True)
class DropoutSite:
    """A layer that drops something in training: a Dropout layer (`rate`, `noise_shape`), or a recurrent layer
    (its `cells`, every one in the order the layer runs them: directions forward then backward, stacked cells in
    stack order)."""

    layer: str
    rate: float = 0.0  # a Dropout layer's
    dropout_layer: bool = False
    noise_shape: tuple[int | None, ...] | None = None
    cells: tuple[CellSite, ...] = ()

    @property
    def mask_names(self) -> tuple[str, ...]:
        """The masks it takes, in the order they are drawn."""
        if self.dropout_layer:
            return (f"{self.layer}/mask",)
        return tuple(name for cell in self.cells for name in cell.mask_names)

    def cell(self, prefix: str) -> CellSite | None:
        """Its cell of that prefix (one that drops something), None for any other."""
        return next((c for c in self.cells if c.prefix == prefix and (c.dropout or c.recurrent_dropout)), None)


def _rate(config: Mapping[str, Any], key: str) -> float:
    rate = float(config.get(key) or 0.0)
    return rate if 0.0 < rate < 1.0 else 0.0  # Keras applies dropout only for 0 < rate < 1


def unsupported(layer: LayerSpec) -> InvalidInput:
    return InvalidInput(
        f"dropout: layer {layer.name!r} ({layer.class_name}) drops units in training, and Monte-Carlo dropout "
        "supports SimpleRNN, GRU, LSTM (as layers, RNN cells, stacked cells, in a Bidirectional) and Dropout layers "
        "only"
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


LoopCell = tuple[str, str, Mapping[str, Any], bool]
"""(part, cell class, cell config, whether the cell is a GRU/LSTM/SimpleRNN layer's own rather than an RNN's)."""


def loop_cells(class_name: str, config: Mapping[str, Any]) -> list[LoopCell] | None:
    """Every cell a layer of `class_name` runs, in order, with its part (`LayerKind.parts`' key: "", a stacked cell's
    key, a direction, or both); None for a layer that runs no SimpleRNN/GRU/LSTM cell."""
    if class_name in GATES:
        return [("", class_name, config, True)]
    if class_name == "RNN":
        cells = config["cells"]
        if not config.get("stacked", True):
            return [("", cells[0]["layer"], cells[0]["config"], False)] if cells[0]["layer"] in GATES else None
        if any(c["layer"] not in GATES for c in cells):
            return None
        return [(c["key"], c["layer"], c["config"], False) for c in cells]
    if class_name == "Bidirectional":
        inner = config["layer"]
        one = loop_cells(inner["class_name"], inner["config"])
        if one is None:
            return None
        return [(f"{d}/{p}" if p else d, cls, cfg, own) for d in DIRECTIONS for p, cls, cfg, own in one]
    return None


def fused_keras2(class_name: str, config: Mapping[str, Any], keras_version: str) -> bool:
    """Whether tf_keras 2 runs a GRU/LSTM layer of `config` (with a `dropout` and no `recurrent_dropout`) on its
    fused path, which draws the input mask over the whole input, timesteps included (`_could_use_gpu_kernel`:
    tanh and sigmoid, a bias, not unrolled; GRU `reset_after`; on CPU too)."""
    return (
        keras_version.strip().split(".", 1)[0] == "2"
        and class_name in ("GRU", "LSTM")
        and config.get("activation") == "tanh"
        and config.get("recurrent_activation") == "sigmoid"
        and bool(config.get("use_bias", True))
        and not config.get("unroll", False)
        and (class_name == "LSTM" or bool(config.get("reset_after", True)))
    )


def _cell_sites(layer: LayerSpec, cells: Sequence[LoopCell], keras_version: str) -> tuple[CellSite, ...]:
    found = []
    for part, class_name, config, own_layer in cells:
        rates = (_rate(config, "dropout"), _rate(config, "recurrent_dropout"))
        kernel = layer.weights[f"{part}/kernel" if part else "kernel"]
        shares = None
        if part.startswith("backward") and config.get("seed") is not None:
            shares = f"{layer.name}/forward{part[len('backward') :]}"
        found.append(
            CellSite(
                f"{layer.name}/{part}" if part else layer.name,
                class_name,
                *rates,
                features=int(np.shape(kernel)[0]),
                units=int(config["units"]),
                per_step=own_layer and not rates[1] and fused_keras2(class_name, config, keras_version),
                shares=shares,
            )
        )
    return tuple(found)


def dropout_sites(spec: ModelSpec) -> list[DropoutSite]:
    """The layers of `spec` that apply dropout in training, in layer order; `InvalidInput` when one of them is of a
    kind Monte-Carlo dropout does not support (TimeDistributed(Dropout), a layer running other cells)."""
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
                sites.append(DropoutSite(layer.name, rate, True, None if noise is None else tuple(noise)))
            continue
        if kind.inner(layer.config) is not None and _rate(own, "rate"):
            raise unsupported(layer)  # TimeDistributed(Dropout)
        drops = any(
            _rate(part, "dropout") or _rate(part, "recurrent_dropout") for part in kind.parts(layer.config).values()
        )
        if not drops:
            continue
        cells = loop_cells(layer.class_name, layer.config)
        if cells is None:
            raise unsupported(layer)
        sites.append(DropoutSite(layer.name, cells=_cell_sites(layer, cells, spec.keras_version)))
    return sites


# ---- the graph's mask inputs ------------------------------------------------------------------------------------


class MaskInputs:
    """The mask inputs of one export: declared with the model's inputs (so no generated name takes theirs), the
    shape of a Dropout layer's (and of a per-step input mask) filled in when its input is known."""

    def __init__(self, g: GraphBuilder, sites: Sequence[DropoutSite], batch_dim: str, time_dim: str) -> None:
        self.sites = {s.layer: s for s in sites}
        self.batch_dim = batch_dim
        self.time_dim = time_dim
        self.inputs: dict[str, onnx.ValueInfoProto] = {}
        for site in sites:
            if site.dropout_layer:
                self._declare(g, f"{site.layer}/mask", None)
            for cell in site.cells:
                if cell.input_mask is not None:
                    shape: list[int | str] = [cell.input_masks, batch_dim, cell.features]
                    self._declare(g, cell.input_mask, None if cell.per_step else shape)
                if cell.recurrent_mask is not None:
                    self._declare(g, cell.recurrent_mask, [cell.gates, batch_dim, cell.units])

    def _declare(self, g: GraphBuilder, name: str, shape: list[int | str] | None) -> None:
        g.add_input(name, TensorProto.FLOAT, shape)
        self.inputs[name] = g.inputs[-1]

    def converter(self, layer: LayerSpec, default: Converter) -> Converter:
        """The converter of `layer` in this graph: `default` unless the layer drops something."""
        site = self.sites.get(layer.name)
        if site is None:
            return default
        if site.dropout_layer:
            return lambda g, call: self._dropout_layer(g, call, site)
        return lambda g, call: self._recurrent(g, call, site)

    def _shaped_like(self, name: str, x: Value, owner: str, noise: Sequence[int | None] | None = None) -> None:
        """Declare mask `name` with `x`'s shape: `batch` and `time` symbolic as the data inputs' are, fixed sizes
        where `x` (or the `noise` shape, 1 broadcasting) has them."""
        if noise is not None and len(noise) != len(x.shape):
            raise InvalidInput(
                f"dropout: layer {owner!r} has noise_shape {list(noise)} for an input of {len(x.shape)} dimensions"
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
                raise InvalidInput(f"dropout: the input of layer {owner!r} has an unknown size on axis {k}")

    def _dropout_layer(self, g: GraphBuilder, call: LayerCall, site: DropoutSite) -> LayerResult:
        """`x * mask`, the mask's input declared with `x`'s shape (noise_shape's fixed sizes where it has them)."""
        if len(call.inputs) != 1:
            raise InvalidInput(f"dropout: layer {call.layer.name!r} takes one input, got {len(call.inputs)}")
        x = call.inputs[0]
        name = f"{site.layer}/mask"
        self._shaped_like(name, x, site.layer, site.noise_shape)
        return LayerResult((replace(x, name=g.op("Mul", x.name, name, hint=f"{site.layer}/dropped")),))

    # ---- recurrent layers ---------------------------------------------------------------------------------------

    def _recurrent(self, g: GraphBuilder, call: LayerCall, site: DropoutSite) -> LayerResult:
        layer = call.layer
        if layer.class_name == "Bidirectional":
            from rnnserve.kinds.bidirectional import convert_bidirectional

            inner_class = layer.config["layer"]["class_name"]

            def direction(
                g: GraphBuilder, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str, x: Value,
                native: bool,
            ) -> tuple[Cell, Value]:  # fmt: skip
                return self._loop_cell(g, site, inner_class, config, weights, name, x, native)

            return convert_bidirectional(g, call, direction)
        if layer.class_name == "RNN" and layer.config["stacked"]:
            from rnnserve.kinds.rnn import convert_stacked

            return convert_stacked(g, call, _stacked_builder(site))
        single = cell_layer(layer)
        cell_site = site.cell(layer.name)
        if single is None or cell_site is None:
            raise unsupported(layer)
        x = sequence_input(call)
        check_weights(single, x.shape[-1])
        if not cell_site.recurrent_dropout:  # one input mask the gates share: the layer itself on x * m
            dropped = self._input_dropped(g, cell_site, x)
            return get_converter(layer.class_name)(g, replace(call, inputs=(dropped,)))
        cell = dropped_cell(g, cell_site, single.config, single.weights)
        return convert_recurrent(g, replace(call, layer=single, inputs=(x,)), cell)

    def _loop_cell(
        self,
        g: GraphBuilder,
        site: DropoutSite,
        class_name: str,
        config: Mapping[str, Any],
        weights: Mapping[str, np.ndarray],
        name: str,
        x: Value,
        native: bool,
    ) -> tuple[Cell, Value]:
        """One Bidirectional direction (`name`: `<layer>/<direction>`) of an inner layer of `class_name`: its cell
        with its masks, and the input it reads (`x * m` where the direction's gates share one input mask)."""
        kind = _loop_kind(class_name)
        if class_name == "RNN" and config["stacked"]:
            from rnnserve.kinds.rnn import stack_cells

            return stack_cells(g, config, weights, name, _stacked_builder(site)), x
        cell_site = site.cell(name)
        if cell_site is None:
            return kind.build_cell(g, config, weights, name, native=native), x
        if not cell_site.recurrent_dropout:
            return kind.build_cell(g, config, weights, name, native=native), self._input_dropped(g, cell_site, x)
        cell_config = config["cells"][0]["config"] if class_name == "RNN" else config
        return dropped_cell(g, cell_site, cell_config, weights), x

    def _input_dropped(self, g: GraphBuilder, cell: CellSite, x: Value) -> Value:
        """`x * m`: the one input mask of a cell without `recurrent_dropout`, the same at every timestep, or (the
        fused path of tf_keras 2) a mask of `x`'s shape."""
        mask = cell.input_mask
        assert mask is not None
        if cell.per_step:
            self._shaped_like(mask, x, cell.prefix)
            return replace(x, name=g.op("Mul", x.name, mask, hint=f"{cell.prefix}/x_dropped"))
        m = g.op("Gather", mask, g.constant(0, "int64"), axis=0, hint=f"{cell.prefix}/m")  # (B, F)
        dropped = g.op("Mul", x.name, g.op("Unsqueeze", m, g.ints([x.time_axis])), hint=f"{cell.prefix}/x_dropped")
        return replace(x, name=dropped)


def _loop_kind(class_name: str) -> LoopKind:
    kind = get_kind(class_name)
    assert isinstance(kind, LoopKind)
    return kind


def _stacked_builder(
    site: DropoutSite,
) -> Callable[[GraphBuilder, Mapping[str, Any], Mapping[str, np.ndarray], str], Cell]:
    """The cells of stacked cells (`kinds.rnn._stack`), each with its masks (its name is its prefix)."""

    def build(g: GraphBuilder, entry: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str) -> Cell:
        cell_site = site.cell(name)
        if cell_site is None:
            return _loop_kind(entry["layer"]).build_cell(g, entry["config"], weights, name, native=False)
        return dropped_cell(g, cell_site, entry["config"], weights)

    return build


# ---- cells with masks ---------------------------------------------------------------------------------------------


def _blocks(array: np.ndarray, units: int, gates: int) -> np.ndarray:
    """`(n, gU)` -> `(g, n, U)`: the column block of each gate."""
    return np.stack([array[..., k * units : (k + 1) * units] for k in range(gates)])


def _per_gate(b: GraphBuilder, values: str) -> str:
    """`(g, B, U)` -> `(B, gU)`, gate blocks side by side as the kernels lay them out."""
    return b.op("Reshape", b.op("Transpose", values, perm=[1, 0, 2]), b.ints([0, -1]))


def dropped_cell(g: GraphBuilder, site: CellSite, config: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> Cell:
    """The cell of `site` (a SimpleRNN/GRU/LSTM cell of `config`) with its masks, as `mc_dropout.DroppedCell`
    computes it: `project` applies the input masks to a layer's input (hoisted), `project_step` to a stacked cell's
    (the previous cell's output, in the step); the step applies the recurrent masks."""
    name, units, gates = site.prefix, int(config["units"]), site.gates
    input_mask, recurrent_mask = site.input_mask, site.recurrent_mask
    assert not site.per_step, "a per-step input mask is applied to the layer's input (MaskInputs._input_dropped)"
    if recurrent_mask is None:  # no recurrent_dropout: the cell's own step, one input mask the gates share
        plain = _loop_kind(site.class_name).build_cell(g, config, weights, name, native=False)
        assert input_mask is not None
        m = g.op("Gather", input_mask, g.constant(0, "int64"), axis=0, hint=f"{name}/m")  # (B, F)

        def shared(b: GraphBuilder, x: Value) -> str:
            dropped = b.op("Mul", x.name, b.op("Unsqueeze", m, b.ints([x.time_axis])), hint=f"{name}/x_dropped")
            return b.op("MatMul", dropped, plain.kernel, hint=f"{name}/xk")

        def shared_step(b: GraphBuilder, x_t: str) -> str:
            return b.op("MatMul", b.op("Mul", x_t, m), plain.kernel)

        return replace(plain, native=None, project=shared, project_step=shared_step)

    activation = cell_activation(config, "activation", name)
    gate_activation = activation if gates == 1 else cell_activation(config, "recurrent_activation", name)
    kernel = np.asarray(weights["kernel"])
    recurrent = np.asarray(weights["recurrent_kernel"])
    bias = np.asarray(weights["bias"]) if "bias" in weights else None
    reset_after = site.class_name == "GRU" and bool(config.get("reset_after", True))
    input_bias = None if bias is None else (bias[0] if reset_after else bias)
    project = project_step = None
    if input_mask is None:
        kernel_name = g.initializer(kernel, f"{name}/kernel")
    else:
        kernel_name = g.initializer(_blocks(kernel, units, gates)[:, None], f"{name}/kernel_gates")  # (g, 1, F, U)
        project = _projection(name, kernel_name, units, gates, input_mask)
        project_step = _step_projection(kernel_name, input_mask)

    if site.class_name == "SimpleRNN":
        r0 = g.op("Gather", recurrent_mask, g.constant(0, "int64"), axis=0, hint=f"{name}/r")
        rk = g.initializer(recurrent, f"{name}/recurrent_kernel")

        def simple(b: GraphBuilder, xp_t: str, states: Sequence[str]) -> tuple[str, tuple[str, ...]]:
            h = emit_activation(b, activation, b.op("Add", xp_t, b.op("MatMul", b.op("Mul", states[0], r0), rk)))
            return h, (h,)

        step: StepFn = simple
    elif site.class_name == "LSTM":
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
        project_step=project_step,
    )


def _step_projection(blocks: str, input_mask: str) -> Callable[[GraphBuilder, str], str]:
    """`x_t -> concat_g((x_t * m_g) K_g)` in a step: `(g, B, 1, F)` against the `(g, 1, F, U)` kernel blocks."""

    def project(b: GraphBuilder, x_t: str) -> str:
        dropped = b.op("Mul", b.op("Unsqueeze", x_t, b.ints([0])), input_mask)  # (g, B, F)
        per_gate = b.op("MatMul", b.op("Unsqueeze", dropped, b.ints([2])), blocks)  # (g, B, 1, U)
        return _per_gate(b, b.op("Squeeze", per_gate, b.ints([2])))

    return project


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

    if reset_after:
        stacked = g.initializer(_blocks(recurrent, units, 3), f"{name}/recurrent_kernel_gates")
        recurrent_bias = None if bias is None else g.initializer(bias[1], f"{name}/recurrent_bias")

        def after(b: GraphBuilder, xp_t: str, states: Sequence[str]) -> tuple[str, tuple[str, ...]]:
            h = states[0]
            hp = _per_gate(b, b.op("MatMul", b.op("Mul", b.op("Unsqueeze", h, b.ints([0])), recurrent_mask), stacked))
            if recurrent_bias is not None:
                hp = b.op("Add", hp, recurrent_bias)
            h_new = reset_after_state(b, xp_t, hp, h, split, activation, gate_activation)
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
        h_new = gru_update(b, z, h, candidate)
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
