"""Monte-Carlo dropout on request: Keras' training-time dropout, drawn `samples` times from a seed.

What Keras does in `model(x, training=True)` (keras 3.15 `layers/rnn/*.py`, `dropout_rnn_cell.py`; tf_keras 2.21
`layers/rnn/gru.py`, `lstm.py`, `dropout_rnn_cell_mixin.py`: the same in both but where said):

* a recurrent cell draws its masks once per call, `(batch, features)` for the input and `(batch, units)` for the
  state, and uses them at every timestep (`DropoutRNNCell.get_dropout_mask` caches them until the layer's call
  ends); a mask is `keep / (1 - rate)` with `keep ~ Bernoulli(1 - rate)` (inverted dropout);
* SimpleRNN: `h = act((x * m) K + b + (h * r) R)`: one input mask, one recurrent mask;
* GRU and LSTM: with `recurrent_dropout > 0` the cell switches itself to `implementation = 1` (both versions do,
  whatever the config said) and draws one mask per gate, for the input (3 for GRU z, r, h; 4 for LSTM i, f, c, o)
  and for the state: `x_g = (x * m_g) K_g`, `h_g = (h * r_g) R_g`; GRU's candidate uses `h_h` (reset_before:
  `(r * h_h) R_h`) and the update `z * h + (1 - z) * hh` the undropped `h`; LSTM's carry uses the undropped `c`.
  Otherwise (`implementation = 2`, the default) `get_dropout_mask` returns ONE input mask that every gate shares
  (`inputs = inputs * dp_mask` before the fused kernel; tf_keras draws one per gate and uses the first), and there
  is no recurrent mask. (A Keras 2 file that saved `implementation: 1` with `recurrent_dropout = 0` would draw
  per-gate input masks; the importers drop `implementation`, so rnnserve draws the shared one there);
* tf_keras 2 only: a GRU or LSTM *layer* (not `RNN(cell)`) with a `dropout`, no `recurrent_dropout`, tanh and
  sigmoid, a bias, `unroll=False` (and GRU `reset_after=True`) runs its fused kernel (`_could_use_gpu_kernel`, the
  same path on CPU), which first multiplies the WHOLE input by `get_dropout_mask_for_cell(inputs)[0]`: a mask of
  the input's shape `(batch, time, features)`, a fresh one at every timestep (measured: P(keep at t = keep at t+1)
  = 0.585 at rate 0.3, as for independent draws). Keras 3 draws one mask for the sequence there
  (`get_dropout_mask(sequences[:, 0, :])`, broadcast over time). rnnserve follows the file's Keras version
  (`CellSite.per_step`);
* `Bidirectional`: both versions build each direction as its own copy of the wrapped layer (fresh cells), so each
  direction draws its own masks, of the same shapes, in the same way; `go_backwards` changes only the order the
  steps are read in, never the masks (they are the same at every step; tf_keras' per-step input mask multiplies
  the input before the loop reads it). Measured (4000 rows, keep/drop of each mask element compared between the
  directions): P(equal) 0.58, 0.68, 0.52, 0.82 at rates 0.3, 0.2, 0.4, 0.1, as for independent draws, in Keras 3
  and tf_keras, single layers and stacked cells, `go_backwards` either way. One exception, Keras 3: a wrapped
  layer (or cell) with an explicit `seed` gives both copies that seed, so two seed generators in the same state
  draw identical masks (P(equal) = 1.000, every gate; a `SimpleRNN` layer loses its seed in the copy, as Keras 3
  does not write it in the layer's config, so its directions stay independent): the backward masks then repeat the
  forward ones (`CellSite.shares`). tf_keras cells take no seed;
* `RNN(StackedRNNCells)` (also in a Bidirectional): every cell is a `DropoutRNNCell` of its own, its masks reset
  by the layer at each call; cell k draws its input masks on ITS input, the previous cell's output `(batch,
  units_{k-1})` (Keras 3 computes it at step 0 to size them), and its recurrent masks on its own state `(batch,
  units_k)`, with the per-gate rule above per cell (a GRUCell with recurrent_dropout: 3 + 3 masks; an LSTMCell
  with dropout only: one). Measured draw order: cell 0 input, cell 0 recurrent, cell 1 input, ...; the masks of
  two cells are independent (a product of two 0.5-rate masks keeps 0.2476 of the elements);
* a `Dropout` layer draws an element-wise mask of its input's shape (`noise_shape` broadcasts it): a sequence
  input gets a different mask at every timestep.

rnnserve draws every mask in numpy from `seed` (one generator, consumed in layer order: every recurrent layer's
masks, cell by cell in the order the layer runs them (directions forward then backward, stacked cells in order),
input then recurrent, then every Dropout layer's and per-step input mask as the run reaches it), so a request
gives the same numbers every time. Masks are named `<layer>/dropout`, `<layer>/recurrent_dropout` for a layer's
one cell, `<layer>/<part>/...` for a direction's or a stacked cell's (`LayerKind.parts`' keys: `bi/forward`,
`rnn/gru_cell`, `bi/backward/lstm_cell_1`), `<layer>/mask` for a Dropout layer's. Samples are rows: the request's
batch repeated `samples` times (row `n * B + b` is sample n of row b), each row with its own masks, run in one
call. The server runs them on onnxruntime (`run_samples_ort`): the model's Monte-Carlo dropout graph
(`rnnserve.export.dropout`) takes the masks as inputs, is built the first time a request asks for dropout and runs
on the model's execution provider (CUDA included). `run_samples` runs the same masks through the numpy reference
(`rnnserve.layers.model`), which the graph is tested against. TimeDistributed(Dropout) is refused (not
implemented); `RNN` around one cell is its layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rnnserve.errors import InvalidInput
from rnnserve.export.dropout import CellSite, DropoutSite, dropout_sites, unsupported
from rnnserve.layers.cells import GRUCell, LSTMCell, SimpleRNNCell, StackedCells, States
from rnnserve.layers.model import BidirectionalNode, MaskPreserving, Node, RecurrentNode, ReferenceModel
from rnnserve.layers.recurrent import RecurrentLayer
from rnnserve.runtime.runner import RunResult
from rnnserve.signature import ModelSignature
from rnnserve.spec import LayerSpec

if TYPE_CHECKING:
    from rnnserve.runtime.ort_model import OrtModel

MAX_SAMPLES = 1000
MAX_ROWS = 65_536  # samples x batch
Reduce = Literal["none", "mean_std"]
GATES = {SimpleRNNCell: 1, GRUCell: 3, LSTMCell: 4}


@dataclass(frozen=True)
class DropoutRequest:
    """`{"samples": N, "seed": S, "reduce": "none" | "mean_std"}`."""

    samples: int
    seed: int
    reduce: Reduce = "none"

    @classmethod
    def parse(cls, value: Any) -> DropoutRequest:
        if not isinstance(value, Mapping):
            raise InvalidInput('dropout must be an object {"samples": N, "seed"?: S, "reduce"?: "none"|"mean_std"}')
        unknown = sorted(set(value) - {"samples", "seed", "reduce"})
        if unknown:
            raise InvalidInput(f"dropout: unknown field(s) {unknown}; it takes samples, seed, reduce")
        samples = value.get("samples")
        if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES:
            raise InvalidInput(f"dropout.samples must be an integer in [1, {MAX_SAMPLES}], got {samples!r}")
        seed = value.get("seed")
        if seed is None:
            seed = int(np.random.default_rng().integers(0, 2**31))
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise InvalidInput(f"dropout.seed must be a non-negative integer, got {seed!r}")
        reduce = value.get("reduce", "none")
        if reduce not in ("none", "mean_std"):
            raise InvalidInput(f'dropout.reduce must be "none" or "mean_std", got {reduce!r}')
        return cls(samples, seed, reduce)

    def describe(self) -> dict[str, Any]:
        return {"samples": self.samples, "seed": self.seed, "reduce": self.reduce}


# ---- masks --------------------------------------------------------------------------------------------------------

Masks = dict[str, np.ndarray]
"""Mask name -> array: `<layer>/dropout` `(g, rows, features)` (g = 1 when the gates share it),
`<layer>/recurrent_dropout` `(g, rows, units)`, `<layer>/mask` (a Dropout layer's, its input's shape)."""


def _bernoulli(rng: np.random.Generator, shape: tuple[int, ...], rate: float) -> np.ndarray:
    return (rng.random(shape) >= rate).astype(np.float64) / (1.0 - rate)


class MaskSource:
    """Masks drawn from one seeded generator in the order they are asked for (layer order), or given ones."""

    def __init__(self, seed: int, given: Masks | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.given = given
        self.drawn: Masks = {}

    def get(self, name: str, shape: tuple[int, ...], rate: float, same_as: str | None = None) -> np.ndarray:
        """The mask `name`: the given one, or drawn now, or (`same_as`, drawn before it) a copy of that mask."""
        if self.given is not None:
            if name not in self.given:
                raise InvalidInput(f"mask {name!r} is missing (given: {sorted(self.given)})")
            mask = np.asarray(self.given[name], dtype=np.float64)
            if mask.shape != shape:
                raise InvalidInput(f"mask {name!r} has shape {mask.shape}, expected {shape}")
        elif same_as is not None:
            mask = self.drawn[same_as].copy()
        else:
            mask = _bernoulli(self.rng, shape, rate)
        self.drawn[name] = mask
        return mask


@dataclass(frozen=True)
class DroppedCell:
    """A SimpleRNN, GRU or LSTM cell with its per-call dropout masks (see the module docstring)."""

    cell: SimpleRNNCell | GRUCell | LSTMCell
    inputs: np.ndarray | None  # (1 or gates, rows, features)
    recurrent: np.ndarray | None  # (gates, rows, units)

    @property
    def units(self) -> int:
        return self.cell.units

    @property
    def state_count(self) -> int:
        return self.cell.state_count

    def _projections(self, x_t: np.ndarray, h: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per gate: `(x * m_g) K_g` and `h * r_g` (the recurrent kernel is applied by the caller)."""
        cell, u = self.cell, self.units
        gates = GATES[type(cell)]
        xs = [x_t if self.inputs is None else x_t * self.inputs[min(k, len(self.inputs) - 1)] for k in range(gates)]
        xp = [xs[k] @ cell.kernel[:, k * u : (k + 1) * u] for k in range(gates)]
        hs = [h if self.recurrent is None else h * self.recurrent[k] for k in range(gates)]
        return xp, hs

    def step(self, x_t: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, States]:
        cell, u = self.cell, self.units
        xp, hs = self._projections(x_t, states[0])
        rk = cell.recurrent_kernel
        if isinstance(cell, SimpleRNNCell):
            z = xp[0] + hs[0] @ rk
            h = _act(cell.activation, z if cell.bias is None else z + cell.bias)
            return h, [h]
        if isinstance(cell, LSTMCell):
            zz = [xp[k] + hs[k] @ rk[:, k * u : (k + 1) * u] for k in range(4)]
            if cell.bias is not None:
                zz = [zz[k] + cell.bias[k * u : (k + 1) * u] for k in range(4)]
            i, f, o = (_act(cell.recurrent_activation, zz[k]) for k in (0, 1, 3))
            c_new = f * states[1] + i * _act(cell.activation, zz[2])
            h_new = o * _act(cell.activation, c_new)
            return h_new, [h_new, c_new]
        input_bias, recurrent_bias = cell._biases()
        xb = [xp[k] + _block(input_bias, k, u) for k in range(3)]
        if cell.reset_after:
            hp = [hs[k] @ rk[:, k * u : (k + 1) * u] + _block(recurrent_bias, k, u) for k in range(3)]
            z = _act(cell.recurrent_activation, xb[0] + hp[0])
            r = _act(cell.recurrent_activation, xb[1] + hp[1])
            recurrent_h = r * hp[2]
        else:
            z = _act(cell.recurrent_activation, xb[0] + hs[0] @ rk[:, :u])
            r = _act(cell.recurrent_activation, xb[1] + hs[1] @ rk[:, u : 2 * u])
            recurrent_h = (r * hs[2]) @ rk[:, 2 * u :]
        hh = _act(cell.activation, xb[2] + recurrent_h)
        h_new = z * states[0] + (1.0 - z) * hh
        return h_new, [h_new]


def _block(bias: np.ndarray | float, k: int, units: int) -> np.ndarray | float:
    return bias if isinstance(bias, float) else bias[k * units : (k + 1) * units]


def _act(name: str, x: np.ndarray) -> np.ndarray:
    from rnnserve.layers import activations

    return activations.apply(name, x)


# ---- the plan of a model ------------------------------------------------------------------------------------------

_Site = DropoutSite  # a layer that drops something (`rnnserve.export.dropout.dropout_sites` lists them)


def dropped_nodes(reference: ReferenceModel, sites: Sequence[_Site], masks: MaskSource, rows: int) -> list[Node]:
    """The reference's nodes, each dropping layer given its masks (drawn now, in layer order, a layer's cells in the
    order it runs them; a Dropout layer's, and a per-step input mask, when its input arrives, since only then is its
    shape known)."""
    by_layer = {site.layer: site for site in sites}
    nodes: list[Node] = []
    for layer, node in zip(reference.spec.layers, reference.nodes, strict=True):
        site = by_layer.get(layer.name)
        if site is None:
            nodes.append(node)
        elif site.dropout_layer:
            nodes.append(MaskPreserving(_dropout_layer(site, masks)))
        elif isinstance(node, RecurrentNode):
            nodes.append(RecurrentNode(_dropped_layer(node.layer, site.cells, masks, rows, layer)))
        elif isinstance(node, BidirectionalNode):
            bi = node.layer
            half = len(site.cells) // 2
            forward = _dropped_layer(bi.forward, site.cells[:half], masks, rows, layer)
            backward = _dropped_layer(bi.backward, site.cells[half:], masks, rows, layer)
            nodes.append(BidirectionalNode(replace(bi, forward=forward, backward=backward)))
        else:
            raise unsupported(layer)
    return nodes


def _dropped_layer(
    layer: RecurrentLayer, cells: Sequence[CellSite], masks: MaskSource, rows: int, spec: LayerSpec
) -> RecurrentLayer:
    """A recurrent layer (or a Bidirectional direction) whose cells (`cells`, in its cells' order) drop."""
    cell = layer.cell
    own = cell.cells if isinstance(cell, StackedCells) else (cell,)
    if len(own) != len(cells):
        raise unsupported(spec)
    dropped: list[Any] = []  # a Cell to the loop, like the layer's own
    for one, site in zip(own, cells, strict=True):
        if not (site.dropout or site.recurrent_dropout):
            dropped.append(one)
        elif site.per_step:
            return _input_dropped(layer, site, masks)
        elif isinstance(one, (SimpleRNNCell, GRUCell, LSTMCell)):
            dropped.append(DroppedCell(one, *_recurrent_masks(site, masks, rows)))
        else:
            raise unsupported(spec)
    return replace(layer, cell=StackedCells(tuple(dropped)) if isinstance(cell, StackedCells) else dropped[0])


@dataclass(frozen=True)
class _InputDropped(RecurrentLayer):
    """A recurrent layer run on its input times a mask of the input's shape (tf_keras 2's fused GRU/LSTM path)."""

    drop: Callable[[np.ndarray], np.ndarray] | None = None

    def __call__(
        self,
        x: np.ndarray,
        mask: np.ndarray | None = None,
        initial_states: Sequence[np.ndarray | None] | None = None,
    ) -> tuple[np.ndarray, States]:
        assert self.drop is not None
        return super().__call__(self.drop(np.asarray(x, dtype=np.float64)), mask, initial_states)


def _input_dropped(layer: RecurrentLayer, site: CellSite, masks: MaskSource) -> RecurrentLayer:
    name = site.input_mask
    assert name is not None

    def drop(x: np.ndarray) -> np.ndarray:
        return np.asarray(x * masks.get(name, x.shape, site.dropout, _shared(site, name)))

    return _InputDropped(**{f.name: getattr(layer, f.name) for f in fields(layer)}, drop=drop)


def _shared(site: CellSite, name: str) -> str | None:
    """The mask that `name` repeats (a seeded Bidirectional's backward copy: Keras 3 draws both alike)."""
    return None if site.shares is None else site.shares + name[len(site.prefix) :]


def _recurrent_masks(site: CellSite, masks: MaskSource, rows: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A cell's input masks `(1 or gates, rows, features)` (one per gate with a recurrent_dropout: Keras'
    implementation 1 vs 2, see the module docstring), then its recurrent masks `(gates, rows, units)`."""
    inputs, recurrent = site.input_mask, site.recurrent_mask
    return (
        None
        if inputs is None
        else masks.get(inputs, (site.input_masks, rows, site.features), site.dropout, _shared(site, inputs)),
        None
        if recurrent is None
        else masks.get(recurrent, (site.gates, rows, site.units), site.recurrent_dropout, _shared(site, recurrent)),
    )


def draw_masks(sites: Sequence[_Site], masks: MaskSource, rows: int, shapes: Mapping[str, tuple[int, ...]]) -> Masks:
    """Every mask of `sites` in the order the reference draws them (`dropped_nodes`, then the Dropout layers' and
    the per-step input masks as their inputs arrive); `shapes`: those masks' (the graph's inputs say them)."""
    for site in sites:
        for cell in site.cells:
            if not cell.per_step:
                _recurrent_masks(cell, masks, rows)
    for site in sites:
        if site.dropout_layer:
            name = f"{site.layer}/mask"
            masks.get(name, shapes[name], site.rate)
        for cell in site.cells:
            if cell.per_step and cell.input_mask is not None:
                masks.get(cell.input_mask, shapes[cell.input_mask], cell.dropout, _shared(cell, cell.input_mask))
    return masks.drawn


def _dropout_layer(site: _Site, masks: MaskSource) -> Any:
    def apply(x: np.ndarray) -> np.ndarray:
        shape = x.shape
        if site.noise_shape is not None:
            shape = tuple(x.shape[k] if n is None else int(n) for k, n in enumerate(site.noise_shape))
        return np.asarray(x * masks.get(f"{site.layer}/mask", shape, site.rate))

    return apply


# ---- running ------------------------------------------------------------------------------------------------------


def _repeat(array: np.ndarray, samples: int, axis: int) -> np.ndarray:
    return np.concatenate([array] * samples, axis=axis) if samples > 1 else array


def _split(array: np.ndarray, samples: int, axis: int) -> np.ndarray:
    """`(rows, ...)` with rows = samples x batch along `axis` -> `(samples, ...)` with the batch at `axis`."""
    parts = np.split(np.asarray(array), samples, axis=axis)
    return np.stack(parts)


@dataclass(frozen=True)
class Samples:
    """Per-sample outputs `(samples, *output shape)` by name, and per-sample final states."""

    outputs: dict[str, np.ndarray]
    states: list[np.ndarray]
    masks: Masks


@dataclass(frozen=True)
class _Rows:
    """A request's feeds repeated `samples` times along the batch (row `n * B + b` is sample n of row b)."""

    feeds: dict[str, np.ndarray]
    states: list[np.ndarray] | None
    mask: np.ndarray | None
    rows: int
    time_steps: int


def _first(sig: ModelSignature, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """The model's first data input (it gives the batch and the time length)."""
    name = sig.inputs[0].name if sig.inputs else ""
    return np.asarray(feeds[name] if name in feeds else next(iter(feeds.values())))


def _check_rows(batch: int, samples: int) -> int:
    rows = batch * samples
    if rows > MAX_ROWS:
        raise InvalidInput(f"dropout: samples x batch = {rows} is over the limit of {MAX_ROWS}")
    return rows


def _rows(
    sig: ModelSignature,
    feeds: Mapping[str, np.ndarray],
    states: Sequence[np.ndarray] | None,
    mask: np.ndarray | None,
    samples: int,
) -> _Rows:
    batch_axis = 1 if sig.time_major else 0
    first = _first(sig, feeds)
    rows = _check_rows(int(first.shape[batch_axis]), samples)
    data_inputs = {t.name for t in sig.inputs}
    repeated = {
        name: _repeat(np.asarray(v), samples, batch_axis if name in data_inputs else 0) for name, v in feeds.items()
    }
    return _Rows(
        repeated,
        None if states is None else [_repeat(np.asarray(s), samples, 0) for s in states],
        None if mask is None else _repeat(np.asarray(mask), samples, 0),
        rows,
        int(first.shape[1 - batch_axis]) if first.ndim >= 2 else 1,
    )


def _samples(sig: ModelSignature, result: RunResult, samples: int, masks: Masks) -> Samples:
    """The run's rows split into `(samples, ...)` arrays."""
    batch_axis = 1 if sig.time_major else 0
    outputs = {}
    for info in sig.outputs:
        value = result.outputs[info.name]
        axis = batch_axis if value.ndim >= 3 else 0
        outputs[info.name] = _split(value, samples, axis)
    return Samples(outputs, [_split(s, samples, 0) for s in result.states], masks)


def run_samples(
    reference: ReferenceModel,
    feeds: Mapping[str, np.ndarray],
    states: Sequence[np.ndarray] | None,
    mask: np.ndarray | None,
    request: DropoutRequest,
    *,
    masks: Masks | None = None,
) -> Samples:
    """`request.samples` calls of `model(x, training=True)` with seeded masks (or the `masks` given), on the numpy
    reference."""
    sig = reference.signature
    rows = _rows(sig, feeds, states, mask, request.samples)
    source = MaskSource(request.seed, masks)
    nodes = dropped_nodes(reference, dropout_sites(reference.spec), source, rows.rows)
    result: RunResult = reference.run_layers(rows.feeds, rows.states, rows.mask, nodes=nodes)[0]
    return _samples(sig, result, request.samples, source.drawn)


def run_samples_ort(
    model: OrtModel,
    feeds: Mapping[str, np.ndarray],
    states: Sequence[np.ndarray] | None,
    mask: np.ndarray | None,
    request: DropoutRequest,
    *,
    masks: Masks | None = None,
) -> Samples:
    """As `run_samples`, on onnxruntime: the same masks from the same seed (or the `masks` given), every sample in
    one call of the model's Monte-Carlo dropout graph (`OrtModel.run_with_masks`). A model that drops nothing runs
    its own graph once, and every sample is that output."""
    sig = model.signature
    sites = dropout_sites(model.spec)
    if not sites:
        _check_rows(int(_first(sig, feeds).shape[1 if sig.time_major else 0]), request.samples)
        result = model.run(feeds, states, mask)
        n = request.samples
        return Samples(
            {k: np.stack([v] * n) for k, v in result.outputs.items()}, [np.stack([s] * n) for s in result.states], {}
        )
    rows = _rows(sig, feeds, states, mask, request.samples)
    source = MaskSource(request.seed, masks)
    drawn = draw_masks(sites, source, rows.rows, model.dropout_mask_shapes(rows.time_steps, rows.rows))
    result = model.run_with_masks(rows.feeds, rows.states, rows.mask, drawn)
    return _samples(sig, result, request.samples, drawn)


def reduce_samples(values: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Mean and (population) standard deviation over the sample axis."""
    mean = {k: np.asarray(v.mean(axis=0), dtype=np.float32) for k, v in values.items()}
    std = {k: np.asarray(v.std(axis=0), dtype=np.float32) for k, v in values.items()}
    return mean, std


def answer(
    samples: Samples, request: DropoutRequest, swap: bool, return_state: bool
) -> tuple[dict[str, np.ndarray], list[np.ndarray] | None, dict[str, Any]]:
    """What a reply holds: the per-sample outputs `(samples, ...)` (and states), or with `reduce: "mean_std"` their
    means, the standard deviations going to the returned `dropout` object; `swap`: the request's time axis comes
    first while the model's does not (or the other way round)."""

    def layout(value: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(value.swapaxes(1, 2)) if swap and value.ndim >= 4 else value

    outputs = {k: layout(v) for k, v in samples.outputs.items()}
    states = {str(k): v for k, v in enumerate(samples.states)}
    info = request.describe()
    if request.reduce == "none":
        out = {k: np.asarray(v, dtype=np.float32) for k, v in outputs.items()}
        return out, ([np.asarray(v, dtype=np.float32) for v in states.values()] if return_state else None), info
    mean, std = reduce_samples(outputs)
    info["outputs_std"] = std
    state_mean = None
    if return_state:
        state_mean_by, state_std = reduce_samples(states)
        state_mean = list(state_mean_by.values())
        info["states_std"] = list(state_std.values())
    return mean, state_mean, info
