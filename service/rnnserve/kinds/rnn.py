"""RNN(cell): Keras' generic recurrent layer around a built-in cell, or a stack of them (`StackedRNNCells`).

`RNN(SimpleRNNCell | GRUCell | LSTMCell)` computes exactly what the matching layer (`SimpleRNN`, `GRU`, `LSTM`)
computes with the same cell arguments and the same loop arguments: the reference and the converter are that
layer's. `RNN(StackedRNNCells([c0, c1, ...]))` (also what `RNN([c0, c1, ...])` stores) runs the cells one after
the other at each timestep, cell k reading cell k-1's output; a masked step keeps every cell's states.

Normalised config: the loop arguments (`return_sequences, return_state, go_backwards, stateful, unroll,
zero_output_for_mask, time_major`), `stacked` (the cell was a StackedRNNCells) and `cells`, a list of
`{"class_name": "GRUCell", "layer": "GRU", "key": "gru_cell", "config": <normalised GRU layer config>}`: each cell's
config normalised as the matching layer's, the loop arguments included, so that a single cell is that layer.

Weights: a single cell's are the layer's (`kernel`, `recurrent_kernel`, `bias`). Stacked cells prefix them with
the cell's `key`, Keras' saving name of the cell (`gru_cell/kernel`, `lstm_cell/kernel`, `gru_cell_1/kernel`):
a `.keras` archive keeps them under `cell/cells/<key>/vars` (a single cell under `cell/vars`); a legacy `.h5`
lists them in creation order, cell after cell. States: the layer's (`h`, LSTM `h, c`), or for stacked cells every
cell's in cell order, prefixed with its key (`gru_cell/h`, `lstm_cell/h`, `lstm_cell/c`); with `return_state` the
outputs are `[y, *states]` in that order, as Keras returns them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rnnserve.errors import ModelFileError, UnsupportedLayer
from rnnserve.export.builder import GraphBuilder
from rnnserve.export.context import LayerCall, LayerResult, Value
from rnnserve.export.converters.recurrent import Cell, Direction, output_value, run_direction, sequence_input
from rnnserve.export.converters.recurrent import wants_unroll as _wants_unroll
from rnnserve.export.weights import check_weights, sub_weights
from rnnserve.importers.jsonish import array, short
from rnnserve.importers.keras_layers import describe
from rnnserve.kinds.base import Shape, get_kind, match_in_order, register_kind
from rnnserve.kinds.config import inner_layer, plain, wrapper_keys
from rnnserve.kinds.recurrent import LoopKind, RecurrentKind, cell_vars_path
from rnnserve.spec import LayerSpec, StateSpec

if TYPE_CHECKING:
    import numpy as np

    from rnnserve.layers.recurrent import RecurrentLayer

# The built-in cells and the layer each one is the cell of.
CELL_LAYERS: Mapping[str, str] = {"SimpleRNNCell": "SimpleRNN", "GRUCell": "GRU", "LSTMCell": "LSTM"}
STACKED = "StackedRNNCells"
LOOP_DEFAULTS: Mapping[str, Any] = {
    "return_sequences": False,
    "return_state": False,
    "go_backwards": False,
    "stateful": False,
    "unroll": False,
    "zero_output_for_mask": False,
    "time_major": False,
}
_LAYER_ONLY_KEYS = frozenset(LOOP_DEFAULTS)  # a cell's config never holds the loop arguments


def _snake_case(class_name: str) -> str:
    """Keras' saving name of a class (`GRUCell` -> `gru_cell`, `SimpleRNNCell` -> `simple_rnn_cell`)."""
    import re

    intermediate = re.sub("(.)([A-Z][a-z0-9]+)", r"\1_\2", class_name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", intermediate).lower()


def _cell_kind(cell: Mapping[str, Any]) -> RecurrentKind:
    kind = get_kind(cell["layer"])
    assert isinstance(kind, RecurrentKind)
    return kind


class RNN(LoopKind):
    class_name = "RNN"
    defaults: ClassVar[Mapping[str, Any]] = LOOP_DEFAULTS

    # ---- config ---------------------------------------------------------------------------------------------------

    def normalise(self, config: Mapping[str, Any], name: str, keras_version: str) -> dict[str, Any]:
        where = describe(name, self.class_name)
        wrapper_keys(config, frozenset({*LOOP_DEFAULTS, "cell"}), where)
        loop = plain(self, {k: v for k, v in config.items() if k != "cell"}, name, keras_version)
        class_name, raw, cell_name = inner_layer(config, "cell", where)
        stacked = class_name == STACKED
        if stacked:
            cell_where = f"{where} cell {cell_name!r} (StackedRNNCells)"
            wrapper_keys(raw, frozenset({"cells", "reverse_state_order"}), cell_where)
            if raw.get("reverse_state_order"):
                raise UnsupportedLayer(f"{cell_where}: reverse_state_order=True is not supported")
            entries = array(raw.get("cells"), f"{cell_where}: its cells")
            if not entries:
                raise ModelFileError(f"{cell_where} holds no cells")
            serialized = [inner_layer({"cell": entry}, "cell", cell_where) for entry in entries]
        else:
            serialized = [(class_name, raw, cell_name)]
        cells = []
        used: dict[str, int] = {}
        flags = {k: v for k, v in loop.items() if k != "name"}
        for cell_class, cell_config, inner_name in serialized:
            layer_class = CELL_LAYERS.get(cell_class)
            if layer_class is None:
                raise UnsupportedLayer(
                    f"{where}: its cell has class {short(cell_class)}; rnnserve supports RNN around "
                    f"{', '.join(CELL_LAYERS)} or a StackedRNNCells of them"
                )
            bad = sorted(k for k in cell_config if k in _LAYER_ONLY_KEYS)
            if bad:
                raise UnsupportedLayer(f"{where}: cell {inner_name!r} has argument {bad[0]!r}, which cells do not take")
            layer_kind = get_kind(layer_class)
            normalised = plain(layer_kind, {**cell_config, **flags}, inner_name, keras_version)
            base = _snake_case(cell_class)
            count = used.get(base, 0)
            used[base] = count + 1
            key = base if count == 0 else f"{base}_{count}"
            cells.append({"class_name": cell_class, "layer": layer_class, "key": key, "config": normalised})
        return {**loop, "stacked": stacked, "cells": cells}

    # ---- what the single cell's layer or the stack says -------------------------------------------------------------

    def _single(self, layer: LayerSpec) -> LayerSpec | None:
        """The equivalent SimpleRNN/GRU/LSTM layer of an RNN around one cell, None for stacked cells."""
        if layer.config["stacked"]:
            return None
        cell = layer.config["cells"][0]
        return LayerSpec(cell["layer"], layer.name, cell["config"], layer.weights, layer.inputs, layer.initial_state)

    def own_config(self, config: Mapping[str, Any]) -> Mapping[str, Any]:
        """A single cell's arguments are its layer's (regularizers, constraints, dropout rates: what penalties and
        Monte-Carlo dropout read); stacked cells keep theirs per cell, under `cells` (see `parts`)."""
        return config if config["stacked"] else config["cells"][0]["config"]

    def parts(self, config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        """Stacked cells: each cell's key (its weights' prefix) -> its config, which holds its regularizers,
        constraints and dropout rates."""
        if not config["stacked"]:
            return {"": config["cells"][0]["config"]}
        return {c["key"]: c["config"] for c in config["cells"]}

    def loop_config(self, config: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
        """The loop arguments are also in every cell's config (a single cell is its layer): both change."""
        cells = [{**c, "config": {**c["config"], **changes}} for c in config["cells"]]
        return {**config, **changes, "cells": cells}

    def state_widths(self, config: Mapping[str, Any]) -> list[int]:
        return [int(c["config"]["units"]) for c in config["cells"] for _ in _cell_kind(c).cell_states]

    def weight_shapes(self, config: Mapping[str, Any], in_features: int | None) -> dict[str, Shape]:
        cells = config["cells"]
        if not config["stacked"]:
            return _cell_kind(cells[0]).weight_shapes(cells[0]["config"], in_features)
        shapes: dict[str, Shape] = {}
        features = in_features
        for cell in cells:
            own = _cell_kind(cell).weight_shapes(cell["config"], features)
            shapes.update({f"{cell['key']}/{k}": s for k, s in own.items()})
            features = int(cell["config"]["units"])
        return shapes

    def vars_path(self, prefix: str) -> str:
        return cell_vars_path(prefix)

    def stored_weight_names(self, paths: Sequence[str], names: Sequence[str]) -> list[str] | None:
        """Stacked cells in a legacy `.h5`: the cells' weights are listed in creation order (cell after cell),
        each ending in its Keras name; a single cell's are matched by name as a layer's are."""
        if not any("/" in n for n in names):
            return None
        return match_in_order(paths, names, "the stacked cells'")

    def output_features(self, config: Mapping[str, Any], in_features: int | None) -> list[int | None]:
        widths: list[int | None] = list(self.state_widths(config)) if config["return_state"] else []
        return [int(config["cells"][-1]["config"]["units"]), *widths]

    def output_count(self, config: Mapping[str, Any]) -> int:
        return 1 + (len(self.state_widths(config)) if config.get("return_state") else 0)

    def recurrent_config(self, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return {**{k: config[k] for k in LOOP_DEFAULTS}, "units": int(config["cells"][-1]["config"]["units"])}

    def state_names(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        cells = config["cells"]
        if not config["stacked"]:
            return _cell_kind(cells[0]).cell_states
        return tuple(f"{c['key']}/{s}" for c in cells for s in _cell_kind(c).cell_states)

    def states(self, layer: LayerSpec) -> list[StateSpec]:
        names = self.state_names(layer.config)
        widths = self.state_widths(layer.config)
        return [StateSpec(f"{layer.name}/{s}", layer.name, w) for s, w in zip(names, widths, strict=True)]

    # ---- numpy reference and ONNX -----------------------------------------------------------------------------------

    def recurrent_layer(
        self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str = ""
    ) -> RecurrentLayer:
        """A single cell's layer, or the loop around `StackedCells` of the cells' numpy references."""
        if not config["stacked"]:
            cell = config["cells"][0]
            return _cell_kind(cell).recurrent_layer(cell["config"], weights, name)
        from rnnserve.layers.cells import StackedCells
        from rnnserve.layers.recurrent import RecurrentLayer

        cells = tuple(
            _cell_kind(c).make_cell(c["config"], sub_weights(weights, c["key"]), f"{name}/{c['key']}")
            for c in config["cells"]
        )
        return RecurrentLayer(
            cell=StackedCells(cells),
            return_sequences=bool(config["return_sequences"]),
            return_state=bool(config["return_state"]),
            go_backwards=bool(config["go_backwards"]),
            zero_output_for_mask=bool(config["zero_output_for_mask"]),
            time_major=bool(config["time_major"]),
        )

    def build_cell(
        self, g: GraphBuilder, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str, *, native: bool
    ) -> Cell:
        """A single cell's (with its fused op when `native`), or one cell running the stacked cells in turn."""
        if not config["stacked"]:
            cell = config["cells"][0]
            return _cell_kind(cell).build_cell(g, cell["config"], weights, name, native=native)
        return _stack(g, config, weights, name)

    def convert(self, g: GraphBuilder, call: LayerCall) -> LayerResult:
        single = self._single(call.layer)
        if single is not None:
            kind = _cell_kind(call.layer.config["cells"][0])
            return kind.convert(g, LayerCall(single, call.inputs, call.initial_state, call.unroll))
        return _convert_stacked(g, call, self.state_widths(call.layer.config))


CellBuilder = Callable[[GraphBuilder, Mapping[str, Any], Mapping[str, "np.ndarray"], str], Cell]
"""(builder, cell entry of the config, the cell's weights, its name) -> the ONNX cell of one stacked cell."""


def _plain_cell(g: GraphBuilder, entry: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str) -> Cell:
    return _cell_kind(entry).build_cell(g, entry["config"], weights, name, native=False)


def _stack(
    g: GraphBuilder,
    config: Mapping[str, Any],
    weights: Mapping[str, np.ndarray],
    name: str,
    build: CellBuilder | None = None,
) -> Cell:
    """One ONNX cell running the stacked cells in turn: the first one's input projection is hoisted out of the loop
    (as for any cell), the others project the previous cell's output inside the step. `build` makes each cell
    (named `<name>/<key>`) in place of its kind's own: Monte-Carlo dropout's cells with their masks
    (`rnnserve.export.dropout`), whose projections (`Cell.project`, `Cell.project_step`) apply the input masks."""
    parts: list[tuple[Cell, int]] = []
    widths: list[int] = []
    for c in config["cells"]:
        kind = _cell_kind(c)
        cell = (build or _plain_cell)(g, c, sub_weights(weights, c["key"]), f"{name}/{c['key']}")
        parts.append((cell, len(kind.cell_states)))
        widths += [int(c["config"]["units"])] * len(kind.cell_states)

    def step(b: GraphBuilder, xp_t: str, states: Sequence[str]) -> tuple[str, tuple[str, ...]]:
        new_states: list[str] = []
        offset = 0
        output = ""
        for k, (cell, count) in enumerate(parts):
            if k > 0:
                project = cell.project_step
                xp_t = b.op("MatMul", output, cell.kernel) if project is None else project(b, output)
                if cell.bias is not None:
                    xp_t = b.op("Add", xp_t, cell.bias)
            output, own = cell.step(b, xp_t, states[offset : offset + count])
            offset += count
            new_states += own
        return output, tuple(new_states)

    first = parts[0][0]
    return Cell(parts[-1][0].units, first.kernel, first.bias, step, None, tuple(widths), project=first.project)


def _convert_stacked(
    g: GraphBuilder, call: LayerCall, widths: Sequence[int], build: CellBuilder | None = None
) -> LayerResult:
    layer = call.layer
    config = layer.config
    x = sequence_input(call)
    check_weights(layer, x.shape[-1])
    cell = _stack(g, config, layer.weights, layer.name, build)
    direction = Direction(
        go_backwards=bool(config["go_backwards"]),
        return_sequences=bool(config["return_sequences"]),
        zero_output_for_mask=bool(config["zero_output_for_mask"]),
        unroll=_wants_unroll(layer, call.unroll),
    )
    y, finals = run_direction(g, cell, x, call.initial_state, direction, hint=layer.name)
    outputs = [output_value(y, x, cell.units, direction.return_sequences)]
    if config["return_state"]:
        batch = x.shape[1] if x.time_major else x.shape[0]
        outputs += [Value(s, (batch, w)) for s, w in zip(finals, widths, strict=True)]
    return LayerResult(tuple(outputs), finals)


def convert_stacked(g: GraphBuilder, call: LayerCall, build: CellBuilder) -> LayerResult:
    """An `RNN(StackedRNNCells)` layer with its cells made by `build` (Monte-Carlo dropout's, with their masks)."""
    return _convert_stacked(g, call, RNN().state_widths(call.layer.config), build)


def stack_cells(
    g: GraphBuilder, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], name: str, build: CellBuilder
) -> Cell:
    """The one ONNX cell of stacked cells (`config`: an RNN's, stacked), each made by `build` (a Bidirectional
    direction of Monte-Carlo dropout's graph)."""
    return _stack(g, config, weights, name, build)


register_kind(RNN())
