"""Bidirectional(SimpleRNN|GRU|LSTM|CuDNNGRU|CuDNNLSTM|RNN(cell)) (SEMANTICS §3-4).

The forward pass runs as the inner layer says; the backward pass reads the sequence the other way
(`go_backwards` negated, as Keras builds `backward_layer`). With `return_sequences` the backward outputs are
flipped back into input time order, and Keras forces `zero_output_for_mask = return_sequences` on both passes.
States: forward then backward (LSTM `h, c` each; stacked cells every cell's, `forward/gru_cell/h`, ...).
The inner layer is any `LoopKind` (`kinds/recurrent.py`): its own reference, ONNX cell, loop arguments and state
widths are what both passes use, so `RNN(cell)` and `RNN(StackedRNNCells)` are wrapped with their own converters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rnnserve.errors import ModelFileError, UnsupportedLayer
from rnnserve.export.builder import GraphBuilder
from rnnserve.export.context import LayerCall, LayerResult, Value
from rnnserve.export.converters.recurrent import (
    Cell,
    Direction,
    output_value,
    run_direction,
    sequence_input,
    wants_unroll,
)
from rnnserve.export.weights import check_weights, sub_weights
from rnnserve.importers.jsonish import short
from rnnserve.importers.keras_layers import describe
from rnnserve.kinds.base import (
    KEEP_MASK,
    NO_MASK,
    LayerKind,
    MaskRule,
    Shape,
    find_kind,
    get_kind,
    match_in_order,
    register_kind,
    registered_kinds,
)
from rnnserve.kinds.config import inner_layer, wrapper_keys
from rnnserve.kinds.recurrent import LoopKind, cell_vars_path
from rnnserve.spec import LayerSpec, StateSpec

if TYPE_CHECKING:
    import numpy as np

    from rnnserve.layers.model import Node

MERGE_MODES = ("concat", "sum", "mul", "ave", None)
DIRECTIONS = ("forward", "backward")
MERGE_OPS = {"concat": "Concat", "sum": "Add", "mul": "Mul", "ave": "Add"}


def _merge(g: GraphBuilder, mode: str | None, forward: Value, backward: Value, units: int) -> list[Value]:
    if mode is None:
        return [forward, backward]
    if mode not in MERGE_OPS:
        raise UnsupportedLayer(f"Bidirectional merge_mode={mode!r}; expected one of {sorted(MERGE_OPS)} or None")
    if mode == "concat":
        merged = g.op("Concat", forward.name, backward.name, axis=-1, hint="bidirectional")
        return [Value(merged, (*forward.shape[:-1], 2 * units), mask=forward.mask, time_major=forward.time_major)]
    merged = g.op(MERGE_OPS[mode], forward.name, backward.name, hint="bidirectional")
    if mode == "ave":
        merged = g.op("Div", merged, g.scalar(2.0))
    return [Value(merged, forward.shape, mask=forward.mask, time_major=forward.time_major)]


DirectionCell = Callable[
    [GraphBuilder, Mapping[str, Any], Mapping[str, "np.ndarray"], str, Value, bool], tuple[Cell, Value]
]
"""(builder, the inner layer's config, one direction's weights, its name `<layer>/<direction>`, the layer's input,
native) -> that direction's ONNX cell and the input it reads (Monte-Carlo dropout's: masks applied)."""


def convert_bidirectional(g: GraphBuilder, call: LayerCall, direction_cell: DirectionCell | None = None) -> LayerResult:
    """Both passes with the inner kind's own cell, or with `direction_cell`'s (`rnnserve.export.dropout`)."""
    layer = call.layer
    inner = layer.config["layer"]
    inner_class, inner_config = inner["class_name"], inner["config"]
    inner_kind = find_kind(inner_class)
    if not isinstance(inner_kind, LoopKind):
        raise UnsupportedLayer(f"layer {layer.name!r}: Bidirectional({inner_class}) is not supported", layer=layer.name)
    if layer.config.get("backward_layer"):
        raise UnsupportedLayer(f"layer {layer.name!r}: a custom Bidirectional backward_layer is not supported")
    x = sequence_input(call)
    check_weights(layer, x.shape[-1])
    build = inner_kind.build_cell
    units = _units(inner_kind, inner_config)
    widths = inner_kind.state_widths(inner_config)
    sequences = bool(inner_config.get("return_sequences", False))
    go_backwards = bool(inner_config.get("go_backwards", False))
    unroll = wants_unroll(layer, call.unroll)
    forced = {"return_sequences": sequences, "zero_output_for_mask": sequences, "unroll": unroll}
    passes = {
        "forward": Direction(go_backwards=go_backwards, **forced),
        "backward": Direction(go_backwards=not go_backwards, reverse_output=sequences, **forced),
    }
    n_states = len(widths)
    outputs: list[Value] = []
    finals: list[str] = []
    for k, (direction_name, direction) in enumerate(passes.items()):
        name = f"{layer.name}/{direction_name}"
        weights = sub_weights(layer.weights, direction_name)
        if direction_cell is None:
            cell, x_read = build(g, inner_config, weights, name, native=not unroll), x
        else:
            cell, x_read = direction_cell(g, inner_config, weights, name, x, not unroll)
        initial = call.initial_state[k * n_states : (k + 1) * n_states]
        y, states = run_direction(g, cell, x_read, initial, direction, hint=name)
        outputs.append(output_value(y, x, units, sequences))
        finals.extend(states)
    merged = _merge(g, layer.config.get("merge_mode", "concat"), outputs[0], outputs[1], units)
    if inner_config.get("return_state", False):
        batch = x.shape[1] if x.time_major else x.shape[0]
        merged += [Value(s, (batch, w)) for s, w in zip(finals, [*widths, *widths], strict=True)]
    return LayerResult(tuple(merged), tuple(finals))


def _units(kind: LoopKind, config: Mapping[str, Any]) -> int:
    """The width of one direction's output (stacked cells: the last cell's units)."""
    loop = kind.recurrent_config(config)
    assert loop is not None
    return int(loop["units"])


# Bidirectional: the backward layer must equal the forward one but for these keys (and initializers,
# regularizers, constraints), at any depth (stacked cells' configs too).
_NOT_COMPARED = frozenset({"name", "go_backwards", "dropout", "recurrent_dropout", "seed", "zero_output_for_mask"})


def _compared(key: str) -> bool:
    return key not in _NOT_COMPARED and not key.endswith(("_initializer", "_regularizer", "_constraint"))


def _comparable(value: Any) -> Any:
    """A normalised config without the keys the two directions may differ in, nested configs included."""
    if isinstance(value, Mapping):
        return {k: _comparable(v) for k, v in value.items() if _compared(k)}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


class Bidirectional(LayerKind):
    """Config: `name, merge_mode` ("concat" | "sum" | "mul" | "ave" | None: two outputs, forward then backward)
    and `layer = {"class_name", "config"}` with the normalised forward RNN config, whose `zero_output_for_mask`
    is set to its `return_sequences` (Keras forces that on both directions). The backward RNN is that config with
    `go_backwards` flipped. Weights: the inner layer's, prefixed `forward/` and `backward/`; states forward then
    backward. Its backward half reads the sequence from the end, so sessions may not stream it."""

    class_name = "Bidirectional"
    call_params = ("sequences", "initial_state", "mask", "training")
    takes_initial_state = True
    uses_mask = True
    streamable = False
    stream_refusal = (
        "has a Bidirectional layer: its backward half reads the sequence from the end, "
        "so it cannot be streamed chunk by chunk"
    )
    weight_directions: ClassVar[tuple[str, ...]] = DIRECTIONS

    def normalise(self, config: Mapping[str, Any], name: str, keras_version: str) -> dict[str, Any]:
        where = describe(name, self.class_name)
        wrapper_keys(config, frozenset({"merge_mode", "layer", "backward_layer"}), where)
        merge_mode = config.get("merge_mode", "concat")
        if merge_mode not in MERGE_MODES:
            raise UnsupportedLayer(
                f"{where}: merge_mode={short(merge_mode)} is not supported (supported: {MERGE_MODES})"
            )
        class_name, raw, inner_name = inner_layer(config, "layer", where)
        kind = find_kind(class_name)
        if not isinstance(kind, LoopKind):
            recurrent = sorted(n for n, k in registered_kinds().items() if isinstance(k, LoopKind))
            raise UnsupportedLayer(f"{where}: wraps a {class_name!r}; rnnserve supports {', '.join(recurrent)}")
        forward = kind.normalise(raw, inner_name, keras_version)
        if config.get("backward_layer") is not None:
            _check_backward(config, kind, forward, where, keras_version)
        forward = kind.loop_config(forward, zero_output_for_mask=forward["return_sequences"])
        return {"name": name, "merge_mode": merge_mode, "layer": {"class_name": class_name, "config": forward}}

    def _inner_kind(self, config: Mapping[str, Any]) -> LoopKind:
        kind = get_kind(config["layer"]["class_name"])
        assert isinstance(kind, LoopKind)
        return kind

    def weight_shapes(self, config: Mapping[str, Any], in_features: int | None) -> dict[str, Shape]:
        inner = config["layer"]
        one_way = self._inner_kind(config).weight_shapes(inner["config"], in_features)
        return {f"{d}/{k}": s for d in DIRECTIONS for k, s in one_way.items()}

    def output_features(self, config: Mapping[str, Any], in_features: int | None) -> list[int | None]:
        inner = config["layer"]
        units = _units(self._inner_kind(config), inner["config"])
        state_sizes = self._inner_kind(config).output_features(inner["config"], in_features)[1:]
        merge_mode = config["merge_mode"]
        merged = 2 * units if merge_mode == "concat" else units
        ys: list[int | None] = [units, units] if merge_mode is None else [merged]
        return [*ys, *state_sizes, *state_sizes]

    def vars_path(self, prefix: str) -> str:
        """`forward_layer/cell/vars`; a stacked cell's `forward_layer/cell/cells/gru_cell/vars` (prefix
        `forward/gru_cell`)."""
        direction, _, cell_key = prefix.partition("/")
        return f"{direction}_layer/{cell_vars_path(cell_key)}"

    def stored_weight_names(self, paths: Sequence[str], names: Sequence[str]) -> list[str] | None:
        """Stacked cells in a legacy `.h5` (`bi/forward_rnn/stacked_rnn_cells/gru_cell/kernel`): each direction's
        weights in creation order, as `RNN` reads them; otherwise matched by direction and name."""
        if not any("/" in n.partition("/")[2] for n in names):
            return None
        directions = [_direction_of(p) for p in paths]
        if None in directions:
            path = paths[directions.index(None)]
            raise ModelFileError(f"cannot tell the direction of Bidirectional weight {path!r}")
        by_path: dict[str, str] = {}
        for direction in DIRECTIONS:
            mine = [p for p, d in zip(paths, directions, strict=True) if d == direction]
            wanted = [n for n in names if n.startswith(f"{direction}/")]
            by_path.update(zip(mine, match_in_order(mine, wanted, f"the {direction} stacked cells'"), strict=True))
        return [by_path[p] for p in paths]

    def output_count(self, config: Mapping[str, Any]) -> int:
        outputs = 2 if config.get("merge_mode") is None else 1  # merge_mode=None: [forward_y, backward_y]
        if config["layer"]["config"].get("return_state"):
            outputs += 2 * len(self.cell_state_names(config))
        return outputs

    def cell_state_names(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        inner = config["layer"]
        return self._inner_kind(config).state_names(inner["config"])

    def recurrent_config(self, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return self._inner_kind(config).recurrent_config(config["layer"]["config"])

    def inner(self, config: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
        return config["layer"]["class_name"], config["layer"]["config"]

    def own_config(self, config: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._inner_kind(config).own_config(config["layer"]["config"])

    def parts(self, config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        inner = self._inner_kind(config).parts(config["layer"]["config"])
        return {f"{d}/{p}" if p else d: c for d in DIRECTIONS for p, c in inner.items()}

    def state_names(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(f"{d}/{s}" for d in DIRECTIONS for s in self.cell_state_names(config))

    def states(self, layer: LayerSpec) -> list[StateSpec]:
        widths = self._inner_kind(layer.config).state_widths(layer.config["layer"]["config"])
        names = self.state_names(layer.config)
        return [StateSpec(f"{layer.name}/{s}", layer.name, w) for s, w in zip(names, [*widths, *widths], strict=True)]

    def output_mask(self, config: Mapping[str, Any], index: int) -> MaskRule:
        sequences = 2 if config["merge_mode"] is None else 1
        return KEEP_MASK if index < sequences and config["layer"]["config"]["return_sequences"] else NO_MASK

    def reads_backwards(self, config: Mapping[str, Any]) -> bool:
        return True

    def reference(self, layer: LayerSpec) -> Node:
        from rnnserve.layers.model import BidirectionalNode
        from rnnserve.layers.wrappers import Bidirectional as BidirectionalReference

        return BidirectionalNode(BidirectionalReference.from_config(layer.config, layer.weights, layer.name))

    def convert(self, g: GraphBuilder, call: LayerCall) -> LayerResult:
        return convert_bidirectional(g, call)


def _direction_of(path: str) -> str | None:
    """The direction a legacy `.h5` weight path names (`bi/forward_rnn/...`), None when none or two."""
    found = {p.split("_", 1)[0] for p in path.split("/")[1:-1] if p.startswith(("forward_", "backward_"))}
    return found.pop() if len(found) == 1 else None


def _check_backward(
    config: Mapping[str, Any], kind: LayerKind, forward: Mapping[str, Any], where: str, keras_version: str
) -> None:
    """Keras 3 always stores `backward_layer`; accept it when it is the copy Keras derives from `layer`."""
    back_class, raw, back_name = inner_layer(config, "backward_layer", where)
    backward = kind.normalise(raw, back_name, keras_version) if back_class == kind.class_name else None
    same = (
        backward is not None
        and backward["go_backwards"] != forward["go_backwards"]
        and _comparable(backward) == _comparable(forward)
    )
    if not same:
        raise UnsupportedLayer(
            f"{where}: argument 'backward_layer' is not supported when it differs from the forward layer "
            "(rnnserve needs the backward RNN to be the forward one with go_backwards flipped)"
        )


register_kind(Bidirectional())
