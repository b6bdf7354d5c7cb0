"""Write the Keras fixtures of the training-time API made observable (issue 16 items 1, 4, 5): per-layer
`reset_states()`, weight and activity penalties with constraints, and Monte-Carlo dropout statistics.

Regenerate (real Keras lives only in the Keras venv; the tests never import it):

    cd /work/main && KERAS_BACKEND=torch /work/keras-venv/bin/python tests/parity/make_fixtures_training.py

(`... make_fixtures_training.py wrappers` writes just the Bidirectional and stacked-cells dropout cases.)

Keras 3 cases use keras 3.15.1 on the torch backend; Keras 2 cases use tf_keras 2.21. Weights are random (scale
0.5, fixed seeds). The script writes into `tests/parity/fixtures/training/` (apart from `make_fixtures.py`'s
folder, which that script cleans) `training.json` plus, per case, its model file and an `.npz` (no pickles):

* `reset` cases, a stateful stack run batch after batch by `predict`, with `model.get_layer(name).reset_states()`
  (zeros) or the layer's states set (Keras 3: `Variable.assign`; Keras 2: `reset_states(states=...)`) on one layer
  between batches: `b<j>_in_x`, `b<j>_out_0`, `b<j>_state_<i>` (every state after batch j, signature order) and
  `b<j>_reset_<i>` (the values set before batch j, for the reset layer's states);
* `penalties` cases, a model with weight regularizers, activity regularizers and constraints (`*_cells`: stacked
  cells with their own, as `RNN(StackedRNNCells)` and inside a Bidirectional; their weights named as rnnserve names
  them, `gru_cell/kernel`, `forward/gru_cell_1/recurrent_kernel`): `in_x`, `out_<k>`;
  the entry holds `model.losses` summed before any call (`weights_total`) and per layer, then after `model(x)`
  (`total`, per layer), and for each constrained weight whether Keras' own constraint leaves it unchanged
  (`max |c(w) - w| <= 1e-6`);
* `dropout` cases, `model(x, training=True)` drawn `samples` times (one call on x repeated `samples` times along
  the batch: Keras draws masks per row): per output element the mean, variance and 4th central moment over the
  draws (`mean_<k>`, `var_<k>`, `m4_<k>`), the inference output (`out_<k>`) and `in_x`. Keras 3 only for single
  layers; Keras 3 and tf_keras 2 for Bidirectional (one seeded in Keras 3; tf_keras' fused LSTM path) and stacked
  cells (`*_mc_dropout_bidi`, `*_mc_dropout_cells`).
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tf_keras  # noqa: E402

OUT = Path(__file__).resolve().parent / "fixtures" / "training"
WEIGHT_SCALE = 0.5
DROPOUT_SAMPLES = int(os.environ.get("DROPOUT_SAMPLES", "4000"))

L3 = keras.layers
L2 = tf_keras.layers
R3 = keras.regularizers
R2 = tf_keras.regularizers
C3 = keras.constraints
C2 = tf_keras.constraints


def to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("tensorflow"):
        return np.asarray(value.numpy())
    return np.asarray(keras.ops.convert_to_numpy(value))


def as_list(outputs: Any) -> list[np.ndarray]:
    values = outputs if isinstance(outputs, list | tuple) else [outputs]
    return [to_numpy(v) for v in values]


def randomize(model: Any, rng: np.random.Generator) -> None:
    for variable in model.trainable_weights:
        shape = tuple(int(d) for d in variable.shape)
        variable.assign(rng.normal(scale=WEIGHT_SCALE, size=shape).astype(np.float32))


def seed_everything(case_id: str, keras2: bool) -> np.random.Generator:
    seed = zlib.crc32(case_id.encode())
    (tf_keras.utils.set_random_seed if keras2 else keras.utils.set_random_seed)(seed)
    return np.random.default_rng(seed)


def save(model: Any, case_id: str, keras2: bool) -> str:
    name = f"{case_id}.k2.h5" if keras2 else f"{case_id}.keras"
    model.save(OUT / name)
    return name


def save_npz(case_id: str, arrays: dict[str, np.ndarray]) -> str:
    np.savez_compressed(OUT / f"{case_id}.npz", **arrays)  # type: ignore[arg-type]
    return f"{case_id}.npz"


# ------------------------------------------------------------------------------------------------ per-layer reset


def stateful_layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if getattr(layer, "stateful", False)]


def state_names(model: Any) -> list[str]:
    names = []
    for layer in stateful_layers(model):
        names += [f"{layer.name}/{k}" for k in (("h", "c") if type(layer).__name__ == "LSTM" else ("h",))]
    return names


def read_states(model: Any) -> list[np.ndarray]:
    return [to_numpy(s) for layer in stateful_layers(model) for s in layer.states]


Reset = tuple[str, str]  # (layer name, "zeros" | "values"), or ("", "none")


def reset_layer(model: Any, reset: Reset, keras2: bool, rng: np.random.Generator) -> list[np.ndarray]:
    name, kind = reset
    if kind == "none":
        return []
    layer = model.get_layer(name)
    if kind == "zeros":
        layer.reset_states()  # Keras 3: an alias of reset_state(); Keras 2: the layer's own
        return []
    values = [rng.normal(scale=0.5, size=tuple(int(d) for d in s.shape)).astype(np.float32) for s in layer.states]
    if keras2:
        layer.reset_states(states=values if len(values) > 1 else values[0])
    else:
        for variable, value in zip(layer.states, values, strict=True):
            variable.assign(value)
    return values


def reset_case(case_id: str, build: Callable[[], Any], resets: list[Reset], keras2: bool, shape: tuple[int, ...]):
    rng = seed_everything(case_id, keras2)
    model = build()
    randomize(model, rng)
    for layer in stateful_layers(model):
        layer.reset_states()
    file = save(model, case_id, keras2)
    arrays: dict[str, np.ndarray] = {}
    batches = []
    for j, reset in enumerate(resets):
        values = reset_layer(model, reset, keras2, rng)
        x = rng.normal(size=shape).astype(np.float32)
        outputs = as_list(model.predict(x, verbose=0))
        arrays[f"b{j}_in_x"] = x
        arrays |= {f"b{j}_out_{k}": v for k, v in enumerate(outputs)}
        arrays |= {f"b{j}_state_{i}": v for i, v in enumerate(read_states(model))}
        arrays |= {f"b{j}_reset_{i}": v for i, v in enumerate(values)}
        batches.append({"layer": reset[0] or None, "reset": reset[1]})
    return {
        "id": case_id,
        "kind": "reset",
        "file": file,
        "data": save_npz(case_id, arrays),
        "keras_version": tf_keras.__version__ if keras2 else keras.__version__,
        "states": state_names(model),
        "batches": batches,
        "notes": "stateful stack; per batch, model.get_layer(layer).reset_states() or its states set",
    }


def reset_cases() -> list[dict[str, Any]]:
    def k3() -> Any:
        return keras.Sequential(
            [
                keras.Input(batch_shape=(2, 5, 3), name="x"),
                L3.GRU(4, stateful=True, return_sequences=True, name="gru"),
                L3.LSTM(3, stateful=True, return_sequences=True, name="lstm"),
                L3.SimpleRNN(2, stateful=True, name="rnn"),
            ],
            name="model",
        )

    def k2() -> Any:
        return tf_keras.Sequential(
            [
                tf_keras.Input(batch_shape=(2, 5, 3), name="x"),
                L2.LSTM(4, stateful=True, return_sequences=True, name="lstm"),
                L2.SimpleRNN(3, stateful=True, return_sequences=True, name="rnn"),
                L2.GRU(2, stateful=True, name="gru"),
            ],
            name="model",
        )

    none: Reset = ("", "none")
    resets3 = [none, none, ("lstm", "zeros"), none, ("gru", "values"), none, ("rnn", "zeros"), ("lstm", "values")]
    resets2 = [none, none, ("rnn", "zeros"), none, ("lstm", "values"), none, ("gru", "zeros"), ("rnn", "values")]
    return [
        reset_case("k3_layer_reset_stack", k3, resets3, False, (2, 5, 3)),
        reset_case("k2_layer_reset_stack", k2, resets2, True, (2, 5, 3)),
    ]


# ------------------------------------------------------------------------------------------ penalties, constraints


def loss_sum(losses: Any) -> float:
    """The sum of eager losses (tf_keras keeps the symbolic activity losses of a model's construction until its
    first eager call: those are not numbers, and not this call's)."""
    return float(sum(float(to_numpy(v)) for v in losses if type(v).__name__ != "SymbolicTensor"))


def constraint_fixed(constraint: Any, weight: Any) -> bool:
    """Whether Keras' constraint leaves the weight unchanged (what 'satisfied' means to Keras)."""
    w = to_numpy(weight)
    projected = to_numpy(constraint(weight))
    return bool(np.max(np.abs(projected - w)) <= 1e-6)


def _cell_key(class_name: str, used: dict[str, int]) -> str:
    """Keras' saving name of a cell among stacked cells (`gru_cell`, `gru_cell_1`), as rnnserve names their weights."""
    base = re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z0-9]+)", r"\1_\2", class_name)).lower()
    count = used.get(base, 0)
    used[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def _cells(sub: Any, prefix: str) -> list[tuple[str, Any]]:
    """(weight prefix, cell) of a layer: its cell, or each of its stacked cells (`RNN(StackedRNNCells)`)."""
    cell = getattr(sub, "cell", sub)
    stacked = getattr(cell, "cells", None)
    if stacked is None:
        return [(prefix, cell)]
    used: dict[str, int] = {}
    return [(f"{prefix}{_cell_key(type(c).__name__, used)}/", c) for c in stacked]


def constrained_weights(model: Any, keras2: bool) -> list[tuple[Any, str, Any, Any]]:
    """(layer, weight name, variable, constraint) for every constrained weight of the top-level layers."""
    found = []
    for layer in model.layers:
        inner = getattr(layer, "layer", None) or layer
        cells = [getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None)]
        parts = [("forward/", c) for c in cells[:1] if c is not None] + [("backward/", c) for c in cells[1:] if c]
        if not parts:
            parts = [("", inner)]
        for prefix, cell in [found_cell for sub_prefix, sub in parts for found_cell in _cells(sub, sub_prefix)]:
            for attr, weight_name in (
                ("kernel", "kernel"),
                ("recurrent_kernel", "recurrent_kernel"),
                ("bias", "bias"),
                ("embeddings", "embeddings"),
            ):
                variable = getattr(cell, attr, None)
                key = "recurrent_constraint" if attr == "recurrent_kernel" else f"{attr}_constraint"
                constraint = getattr(cell, key, None)
                if variable is not None and constraint is not None:
                    found.append((layer, prefix + weight_name, variable, constraint))
    return found


def penalty_case(case_id: str, build: Callable[[], Any], keras2: bool, shape: tuple[int, ...], project: set[str]):
    rng = seed_everything(case_id, keras2)
    model = build()
    randomize(model, rng)
    constrained = constrained_weights(model, keras2)
    for layer, weight, variable, constraint in constrained:
        if f"{layer.name}/{weight}" in project:  # make it satisfy: Keras' own projection
            variable.assign(to_numpy(constraint(variable)))
    file = save(model, case_id, keras2)
    weights_total = loss_sum(model.losses)
    weights_by_layer = {layer.name: loss_sum(layer.losses) for layer in model.layers if layer.losses}
    x = rng.normal(size=shape).astype(np.float32) if len(shape) == 3 else rng.integers(0, 12, size=shape)
    outputs = as_list(model(x))
    total = loss_sum(model.losses)
    by_layer = {layer.name: loss_sum(layer.losses) for layer in model.layers if layer.losses}
    constraints = [
        {"layer": layer.name, "weight": weight, "keras_satisfied": constraint_fixed(constraint, variable)}
        for layer, weight, variable, constraint in constrained
    ]
    arrays = {"in_x": x} | {f"out_{k}": v for k, v in enumerate(outputs)}
    return {
        "id": case_id,
        "kind": "penalties",
        "file": file,
        "data": save_npz(case_id, arrays),
        "keras_version": tf_keras.__version__ if keras2 else keras.__version__,
        "weights_total": weights_total,
        "weights_by_layer": weights_by_layer,
        "total": total,
        "by_layer": by_layer,
        "constraints": constraints,
        "notes": "sum(model.losses) before any call (weights) and after model(x) (weights + activity), per layer",
    }


def penalty_cases() -> list[dict[str, Any]]:
    def k3() -> Any:
        x = keras.Input((6, 3), name="x")
        h = L3.SimpleRNN(
            4,
            return_sequences=True,
            kernel_regularizer=R3.L2(0.01),
            recurrent_regularizer=R3.OrthogonalRegularizer(0.05),
            bias_regularizer=R3.L1(0.02),
            kernel_constraint=C3.MaxNorm(1.0),
            bias_constraint=C3.NonNeg(),
            name="rnn",
        )(x)
        y, state = L3.GRU(
            3,
            return_sequences=True,
            return_state=True,
            kernel_regularizer=R3.L1L2(0.01, 0.02),
            recurrent_regularizer=R3.L2(0.03),
            activity_regularizer=R3.L2(0.05),
            recurrent_constraint=C3.UnitNorm(axis=0),
            kernel_constraint=C3.MinMaxNorm(0.5, 1.5, rate=1.0, axis=0),
            name="gru",
        )(h)
        z = L3.LSTM(
            2,
            kernel_regularizer=R3.OrthogonalRegularizer(0.1, mode="columns"),
            bias_regularizer=R3.L2(0.01),
            activity_regularizer=R3.L1(0.02),
            recurrent_constraint=C3.MaxNorm(0.8, axis=1),
            name="lstm",
        )(y)
        out = L3.Dense(
            2,
            kernel_regularizer=R3.L1(0.03),
            bias_regularizer=R3.L1L2(0.01, 0.01),
            activity_regularizer=R3.L1L2(0.01, 0.02),
            kernel_constraint=C3.NonNeg(),
            name="dense",
        )(z)
        return keras.Model(x, [out, state], name="model")

    def k3_wrappers() -> Any:
        x = keras.Input((7,), dtype="int32", name="x")
        e = L3.Embedding(
            12, 3, mask_zero=True, embeddings_regularizer=R3.L2(0.02), embeddings_constraint=C3.UnitNorm(axis=1),
            name="emb",
        )(x)  # fmt: skip
        b = L3.Bidirectional(
            L3.GRU(3, return_sequences=True, kernel_regularizer=R3.L1(0.01), recurrent_constraint=C3.MaxNorm(1.0)),
            name="bi",
        )(e)
        t = L3.TimeDistributed(L3.Dense(2, kernel_regularizer=R3.L2(0.04)), name="td")(b)
        return keras.Model(x, t, name="model")

    def k2() -> Any:
        return tf_keras.Sequential(
            [
                tf_keras.Input((6, 3), name="x"),
                L2.LSTM(
                    4,
                    return_sequences=True,
                    kernel_regularizer=R2.L2(0.01),
                    recurrent_regularizer=R2.L1L2(0.01, 0.02),
                    bias_regularizer=R2.L1(0.03),
                    activity_regularizer=R2.L2(0.05),
                    kernel_constraint=C2.MaxNorm(1.0),
                    recurrent_constraint=C2.UnitNorm(axis=0),
                    name="lstm",
                ),
                L2.GRU(
                    3,
                    kernel_regularizer=R2.OrthogonalRegularizer(0.05),
                    recurrent_regularizer=R2.L2(0.02),
                    bias_constraint=C2.NonNeg(),
                    activity_regularizer=R2.L1(0.01),
                    name="gru",
                ),
                L2.Dense(
                    2,
                    kernel_regularizer=R2.L1L2(0.02, 0.01),
                    kernel_constraint=C2.MinMaxNorm(0.2, 0.9, rate=1.0, axis=0),
                    name="dense",
                ),
            ],
            name="model",
        )

    return [
        penalty_case("k3_penalties", k3, False, (3, 6, 3), {"rnn/kernel", "gru/recurrent_kernel", "dense/kernel"}),
        penalty_case("k3_penalties_wrappers", k3_wrappers, False, (3, 7), {"emb/embeddings"}),
        penalty_case("k2_penalties", k2, True, (3, 6, 3), {"lstm/recurrent_kernel", "gru/bias"}),
        penalty_case("k3_penalties_cells", k3_cells, False, (3, 6, 3), K3_CELLS_PROJECTED),
        penalty_case("k2_penalties_cells", k2_cells, True, (3, 6, 3), K2_CELLS_PROJECTED),
    ]


K3_CELLS_PROJECTED = {
    "rnn/gru_cell/recurrent_kernel",
    "bi/forward/simple_rnn_cell/bias",
    "bi/backward/simple_rnn_cell/bias",
}
K2_CELLS_PROJECTED = {"rnn/lstm_cell/kernel", "bi/backward/gru_cell_1/recurrent_kernel"}


def k3_cells() -> Any:
    """Stacked cells with regularizers, constraints and dropout rates of their own, plain and in a Bidirectional."""
    x = keras.Input((6, 3), name="x")
    h = L3.RNN(
        [
            L3.GRUCell(4, kernel_regularizer=R3.L2(0.01), recurrent_constraint=C3.UnitNorm(axis=0), dropout=0.2),
            L3.LSTMCell(3, bias_regularizer=R3.L1(0.02), kernel_constraint=C3.MaxNorm(0.9), recurrent_dropout=0.1),
        ],
        return_sequences=True,
        name="rnn",
    )(x)
    cells = [
        L3.SimpleRNNCell(2, recurrent_regularizer=R3.OrthogonalRegularizer(0.05), bias_constraint=C3.NonNeg()),
        L3.GRUCell(3, kernel_regularizer=R3.L1L2(0.01, 0.02), kernel_constraint=C3.MinMaxNorm(0.5, 1.5, axis=0)),
    ]
    y = L3.Bidirectional(L3.RNN(L3.StackedRNNCells(cells)), name="bi")(h)
    return keras.Model(x, L3.Dense(2, kernel_regularizer=R3.L2(0.03), name="dense")(y), name="model")


def k2_cells() -> Any:
    return tf_keras.Sequential(
        [
            tf_keras.Input((6, 3), name="x"),
            L2.RNN(
                [
                    L2.LSTMCell(4, kernel_regularizer=R2.L1(0.01), kernel_constraint=C2.MaxNorm(1.0), dropout=0.3),
                    L2.SimpleRNNCell(3, recurrent_regularizer=R2.L2(0.02), recurrent_dropout=0.2),
                ],
                return_sequences=True,
                name="rnn",
            ),
            L2.Bidirectional(
                L2.RNN(
                    [
                        L2.GRUCell(3, bias_regularizer=R2.L1L2(0.01, 0.01), bias_constraint=C2.NonNeg()),
                        L2.GRUCell(
                            2,
                            kernel_regularizer=R2.OrthogonalRegularizer(0.1, mode="columns"),
                            recurrent_constraint=C2.UnitNorm(axis=0),
                        ),
                    ]
                ),
                merge_mode="sum",
                name="bi",
            ),
        ],
        name="model",
    )


# ----------------------------------------------------------------------------------------------------- MC dropout


def dropout_case(
    case_id: str, build: Callable[[], Any], shape: tuple[int, ...], samples: int, keras2: bool = False
) -> dict[str, Any]:
    rng = seed_everything(case_id, keras2)
    model = build()
    randomize(model, rng)
    file = save(model, case_id, keras2)
    x = rng.normal(size=shape).astype(np.float32)
    inference = as_list(model(x, training=False))
    # One training call on the batch repeated `samples` times: Keras draws its masks per row, so row n*B + b is an
    # independent draw for row b (the same as `samples` separate calls, and thousands of times faster).
    draws = as_list(model(np.concatenate([x] * samples, axis=0), training=True))
    arrays: dict[str, np.ndarray] = {"in_x": x}
    for k in range(len(inference)):
        stack = draws[k].reshape(samples, *inference[k].shape).astype(np.float64)
        arrays[f"out_{k}"] = inference[k]
        arrays[f"mean_{k}"] = stack.mean(axis=0)
        arrays[f"var_{k}"] = stack.var(axis=0)
        arrays[f"m4_{k}"] = ((stack - stack.mean(axis=0)) ** 4).mean(axis=0)  # for the variance's standard error
    return {
        "id": case_id,
        "kind": "dropout",
        "file": file,
        "data": save_npz(case_id, arrays),
        "keras_version": tf_keras.__version__ if keras2 else keras.__version__,
        "samples": samples,
        "notes": "model(x, training=True) drawn `samples` times: per-element mean, variance, 4th central moment",
    }


def dropout_cases() -> list[dict[str, Any]]:
    def stack() -> Any:
        return keras.Sequential(
            [
                keras.Input((5, 3), name="x"),
                L3.GRU(4, dropout=0.3, recurrent_dropout=0.2, return_sequences=True, name="gru"),
                L3.Dropout(0.25, name="drop"),
                L3.LSTM(3, dropout=0.2, return_sequences=True, name="lstm"),
                L3.SimpleRNN(2, dropout=0.1, recurrent_dropout=0.3, name="rnn"),
            ],
            name="model",
        )

    def gru_input_only() -> Any:
        return keras.Sequential(
            [
                keras.Input((6, 2), name="x"),
                L3.GRU(3, dropout=0.4, reset_after=False, return_sequences=True, name="gru"),
                L3.LSTM(2, recurrent_dropout=0.35, name="lstm"),
            ],
            name="model",
        )

    return [
        dropout_case("k3_mc_dropout_stack", stack, (2, 5, 3), DROPOUT_SAMPLES),
        dropout_case("k3_mc_dropout_gates", gru_input_only, (2, 6, 2), DROPOUT_SAMPLES),
        *dropout_wrapper_cases(),
    ]


def dropout_wrapper_cases() -> list[dict[str, Any]]:
    """Bidirectional and stacked cells with dropout rates: each direction and each cell with masks of its own. Two
    outputs each (the wrapper's and the layer before it), and merge modes that add the directions, so that a wrong
    rule (directions sharing masks or not, a cell's input masks, per-step masks) moves some element's mean or
    variance past the bound."""

    def k3_bidi() -> Any:
        # `bi` unseeded (directions drawn apart); `bi_seeded`: Keras 3 gives both copies the seed, so they draw the
        # same masks (visible in the variance of their sum)
        x = keras.Input((5, 3), name="x")
        h = L3.Bidirectional(
            L3.GRU(3, dropout=0.3, recurrent_dropout=0.25, return_sequences=True), merge_mode="ave", name="bi"
        )(x)
        y = L3.Bidirectional(
            L3.LSTM(2, dropout=0.4, recurrent_dropout=0.3, seed=11, return_sequences=True),
            merge_mode="sum",
            name="bi_seeded",
        )(h)
        return keras.Model(x, [y, h], name="model")

    def k2_bidi() -> Any:
        # `bi_fused`'s LSTM (dropout only) runs tf_keras' fused path: its input mask is drawn for every timestep
        x = tf_keras.Input((5, 3), name="x")
        h = L2.Bidirectional(
            L2.GRU(3, dropout=0.3, recurrent_dropout=0.25, return_sequences=True), merge_mode="sum", name="bi"
        )(x)
        y = L2.Bidirectional(L2.LSTM(2, dropout=0.45, return_sequences=True), merge_mode="ave", name="bi_fused")(h)
        return tf_keras.Model(x, [y, h], name="model")

    def k3_cells() -> Any:
        x = keras.Input((5, 3), name="x")
        cells = [
            L3.GRUCell(4, dropout=0.3, recurrent_dropout=0.2),
            L3.SimpleRNNCell(3, recurrent_dropout=0.35),
            L3.LSTMCell(2, dropout=0.5),
        ]
        h = L3.RNN(cells, return_sequences=True, name="rnn")(x)
        inner = [L3.GRUCell(3, dropout=0.45, recurrent_dropout=0.3), L3.LSTMCell(2, recurrent_dropout=0.25)]
        y = L3.Bidirectional(L3.RNN(L3.StackedRNNCells(inner), return_sequences=True), merge_mode="sum", name="bi")(h)
        return keras.Model(x, [y, h], name="model")

    def k2_cells() -> Any:
        x = tf_keras.Input((5, 3), name="x")
        cells = [
            L2.LSTMCell(4, dropout=0.3, recurrent_dropout=0.2),
            L2.SimpleRNNCell(3, recurrent_dropout=0.35),
            L2.GRUCell(2, dropout=0.5),
        ]
        h = L2.RNN(cells, return_sequences=True, name="rnn")(x)
        inner = [L2.SimpleRNNCell(3, dropout=0.45), L2.GRUCell(2, dropout=0.2, recurrent_dropout=0.3)]
        y = L2.Bidirectional(L2.RNN(inner, return_sequences=True), merge_mode="ave", name="bi")(h)
        return tf_keras.Model(x, [y, h], name="model")

    return [
        dropout_case("k3_mc_dropout_bidi", k3_bidi, (2, 5, 3), DROPOUT_SAMPLES),
        dropout_case("k2_mc_dropout_bidi", k2_bidi, (2, 5, 3), DROPOUT_SAMPLES, keras2=True),
        dropout_case("k3_mc_dropout_cells", k3_cells, (2, 5, 3), DROPOUT_SAMPLES),
        dropout_case("k2_mc_dropout_cells", k2_cells, (2, 5, 3), DROPOUT_SAMPLES, keras2=True),
    ]


def main(only: list[str]) -> None:
    """Every case (the folder cleaned first), or with `only` (group names: `wrappers` = the Bidirectional and
    stacked-cells dropout cases) just those, their entries replaced or added in `training.json`, the other files
    left as they are (a model file holds its save date, so regenerating it changes its bytes)."""
    OUT.mkdir(parents=True, exist_ok=True)
    groups: dict[str, Callable[[], list[dict[str, Any]]]] = {"wrappers": dropout_wrapper_cases}
    if only:
        unknown = sorted(set(only) - set(groups))
        if unknown:
            raise SystemExit(f"unknown group(s) {unknown}; known: {sorted(groups)}")
        index = json.loads((OUT / "training.json").read_text())
        fresh = [case for name in only for case in groups[name]()]
        ids = {case["id"] for case in fresh}
        index["cases"] = [c for c in index["cases"] if c["id"] not in ids] + fresh
        (OUT / "training.json").write_text(json.dumps(index, indent=1) + "\n")
        print(f"{len(fresh)} cases written, {len(index['cases'])} in {OUT / 'training.json'}")
        return
    for path in OUT.iterdir():
        path.unlink()
    cases = reset_cases() + penalty_cases() + dropout_cases()
    index = {"generator": "tests/parity/make_fixtures_training.py", "cases": cases}
    (OUT / "training.json").write_text(json.dumps(index, indent=1) + "\n")
    size = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(cases)} cases, {size / 1e3:.0f} kB in {OUT}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
