"""Write the parity fixtures of `RNN(cell)`, `RNN(StackedRNNCells)`, `Bidirectional` around both, and the legacy
`CuDNNGRU` / `CuDNNLSTM` layers (issue 16, items 2 and 3) into `tests/parity/fixtures/cells/` (its own `cases.json`;
`make_fixtures.py` owns the files directly in `fixtures/`, and `parity_harness.load_cases` reads both).

Regenerate (real Keras lives only in the Keras venv; the tests never import it):

    cd /work/main && KERAS_BACKEND=torch /work/keras-venv/bin/python tests/parity/make_fixtures_cells.py

Cells: every case is built, given random weights and run by real Keras exactly as `make_fixtures.py` does it (its
`build_case`, reused here with the output folder and the state naming of cells): Keras 3.15.1 on torch for
`k3c_*` (`.keras` and, where listed, Keras 3 legacy `.h5`), tf_keras 2.21 for `k2c_*` (`.k2.h5`). The
Bidirectional cases (`k3c_bidi_*`, `k2c_bidi_*`) are built the same way (state names `bi/forward/<cell>/h`, ...).

Every case is seeded from its id alone, so adding a case changes no other case's numbers. The torch (Keras 3)
numbers come out bit for bit the same on every run; TensorFlow's CPU kernels (tf_keras) may differ in the last
float32 bit between machines (seen: up to 1.2e-7 against the committed files), far inside the tests' tolerance:
keep the committed files of the cases you did not change.

cuDNN (`k2_cudnn_*`): made with tf_keras 2.21, which still has `CuDNNGRU` / `CuDNNLSTM`
(`tf_keras.src.layers.rnn.cudnn_gru` / `cudnn_lstm`; they are not exported as `tf_keras.layers` any more and run
only on a GPU, but build and save on a CPU). For each case:

1. the model is built with the cuDNN layer, every weight set to normal(0, 0.5) draws, and saved with
   `model.save("<id>.k2.h5")`: a real Keras 2 file whose `model_config` names `CuDNNGRU` / `CuDNNLSTM` and whose
   weights are in cuDNN's layout (`kernel (F, 3U | 4U)`, `recurrent_kernel (U, 3U | 4U)`, `bias (6U | 8U)`: separate
   input and recurrent biases, per-gate kernels in cuDNN's memory order);
2. a twin model is built with the same layer names and the plain layers Keras converts cuDNN weights into
   (`GRU(reset_after=True, recurrent_activation="sigmoid")`, `LSTM(recurrent_activation="sigmoid")`), and
   `twin.load_weights("<id>.k2.h5")` loads the cuDNN file into it: tf_keras' legacy HDF5 loader
   (`hdf5_format.load_weights_from_hdf5_group` -> `preprocess_weights_for_loading` -> `_convert_rnn_weights`)
   converts the weights (kernels transposed per gate between Fortran and C order, recurrent kernels transposed
   per gate, GRU biases reshaped to (2, 3U), LSTM input and recurrent biases summed). The script checks that the
   twin's weights really differ from the stored ones (the conversion ran);
3. the twin is run with `predict` on the case's inputs: those outputs are the recorded Keras numbers.

The `.npz` and `cases.json` formats are `make_fixtures.py`'s.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import make_fixtures as base  # noqa: E402
import numpy as np  # noqa: E402
import tf_keras  # noqa: E402
from make_fixtures import Case, floats, masked_floats, step_mask, time_major_floats, with_states  # noqa: E402
from tf_keras.src.layers.rnn.cudnn_gru import CuDNNGRU  # noqa: E402
from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM  # noqa: E402

CELLS = base.FIXTURES / "cells"
L3 = keras.layers
L2 = tf_keras.layers
CASES: list[Case] = []


def case(case_id: str, build: Callable[[], Any], feeds: base.FeedMaker, **options: Any) -> None:
    if any(c.id == case_id for c in CASES):
        raise ValueError(f"duplicate case id {case_id!r}")
    CASES.append(Case(case_id, build, feeds, **options))


# ------------------------------------------------------------------------------------ state names and values of cells


def _snake(class_name: str) -> str:
    return keras.src.utils.naming.to_snake_case(class_name)


def _own_state_names(layer: Any) -> list[str]:
    """A recurrent layer's states relative to its name (`h`; stacked cells `gru_cell/h`, `lstm_cell/c`)."""
    cell = getattr(layer, "cell", None)
    cells = getattr(cell, "cells", None)
    if cells is None:
        kind = type(cell if cell is not None else layer).__name__
        return list(("h", "c") if "LSTM" in kind else ("h",))
    names = []
    used: dict[str, int] = {}
    for c in cells:
        key = _snake(type(c).__name__)
        used[key] = used.get(key, 0) + 1
        key = key if used[key] == 1 else f"{key}_{used[key] - 1}"
        names += [f"{key}/{s}" for s in (("h", "c") if "LSTM" in type(c).__name__ else ("h",))]
    return names


def state_names(model: Any) -> list[str]:
    """Names of the stateful states, as rnnserve's RNN kind names them (`rnn/h`; stacked `rnn/gru_cell/h`;
    Bidirectional `bi/forward/h`, ..., `bi/backward/h`, ...)."""
    names = []
    for layer in base.recurrent_layers(model):
        if type(layer).__name__ == "Bidirectional":
            own = _own_state_names(layer.forward_layer)
            names += [f"{layer.name}/{d}/{s}" for d in ("forward", "backward") for s in own]
        else:
            names += [f"{layer.name}/{s}" for s in _own_state_names(layer)]
    return names


def _flat(values: Any) -> list[Any]:
    if isinstance(values, list | tuple) or type(values).__name__ == "ListWrapper":
        return [v for item in values for v in _flat(item)]
    return [values]


def read_states(model: Any) -> list[np.ndarray]:
    return [base.to_numpy(s) for layer in base.recurrent_layers(model) for s in _flat(layer.states)]


_run_keras = base.run_keras


def run_keras(model: Any, feeds: base.Feeds, mask: np.ndarray | None) -> list[np.ndarray]:
    """`make_fixtures.run_keras`, with an explicit mask as a backend tensor: Keras 3's generic RNN loop on torch
    fails on a numpy mask ('numpy.ndarray' object has no attribute 'type'), which the built-in layers accept."""
    if mask is not None and type(model).__module__.startswith("keras"):
        mask = keras.ops.convert_to_tensor(mask)
    return _run_keras(model, feeds, mask)


def model_output_names(model: Any) -> list[str]:
    """`make_fixtures.model_output_names` of the flattened outputs (Keras nests stacked LSTM cells' [h, c])."""
    config = model.get_config()
    if "output_layers" not in config:
        last = model.layers[-1].name
        return [last if k == 0 else f"{last}:{k}" for k in range(len(_flat(model.outputs)))]
    refs = config["output_layers"]
    refs = [refs] if refs and isinstance(refs[0], str) else refs
    flat: list[list[Any]] = []
    for ref in refs:
        flat += ref if ref and isinstance(ref[0], list) else [ref]
    return [name if index == 0 else f"{name}:{index}" for name, _, index in flat]


def as_list(outputs: Any) -> list[np.ndarray]:
    return [base.to_numpy(v) for v in _flat(outputs)]


def _reset_nested_state(self: Any) -> None:
    """Keras 3.15.1's `RNN.reset_state()` assigns zeros to each entry of `layer.states`, which for stacked cells are
    lists (one per cell): it fails with "'list' object has no attribute 'assign'". This does what it means to."""
    for variable in _flat(self.states or []):
        variable.assign(keras.ops.zeros_like(variable.value))


keras.layers.RNN.reset_state = _reset_nested_state
base.FIXTURES = CELLS
base.model_output_names = model_output_names
base.as_list = as_list
base.state_names = state_names
base.read_states = read_states
base.run_keras = run_keras


# ------------------------------------------------------------------------------------------------- Keras 3 cells


def rnn3(cell: Any, steps: int = 6, features: int = 3, masking: bool = False, **options: Any) -> Any:
    """Sequential Input((steps, features)) [-> Masking(0.5)] -> RNN(cell, **options)."""
    layers = [L3.Masking(0.5, name="masking")] if masking else []
    return base.seq3(keras.Input((steps, features), name="x"), *layers, L3.RNN(cell, name="rnn", **options))


def func_rnn3(cell: Any, steps: int = 6, features: int = 3, **options: Any) -> Any:
    x = keras.Input((steps, features), name="x")
    return base.func3(x, L3.RNN(cell, name="rnn", **options)(x))


def _stack_initial_state() -> Any:
    x = keras.Input((6, 3), name="x")
    h0, h1, c1 = keras.Input((4,), name="h0"), keras.Input((3,), name="h1"), keras.Input((3,), name="c1")
    cells = L3.StackedRNNCells([L3.GRUCell(4), L3.LSTMCell(3)])
    y = L3.RNN(cells, return_sequences=True, name="rnn")(x, initial_state=[h0, [h1, c1]])
    return base.func3([x, h0, h1, c1], y)


def keras3_cases() -> None:
    case(
        "k3c_rnn_simple_seq",
        lambda: rnn3(L3.SimpleRNNCell(4, activation="relu"), return_sequences=True),
        floats(2, 6, 3),
        formats=("keras", "h5"),
        notes="RNN(SimpleRNNCell(relu)) return_sequences; .keras and Keras 3 .h5",
        stream=True,
    )
    case(
        "k3c_rnn_gru_masked_zero_output",
        lambda: rnn3(
            L3.GRUCell(4, reset_after=False, use_bias=False),
            7,
            masking=True,
            return_sequences=True,
            zero_output_for_mask=True,
        ),  # fmt: skip
        masked_floats(3, 7, 3, 0.5),
        formats=("keras", "h5"),
        notes="Masking -> RNN(GRUCell(reset_after=False, use_bias=False)) return_sequences, zero_output_for_mask",
    )
    case(
        "k3c_rnn_lstm_state_mask",
        lambda: func_rnn3(L3.LSTMCell(3, unit_forget_bias=False), 7, return_state=True),
        floats(2, 7, 3),
        mask=step_mask,
        state_outputs={"rnn/h": 1, "rnn/c": 2},
        notes="Functional RNN(LSTMCell) return_state, called with an explicit mask",
    )
    case(
        "k3c_rnn_gru_unroll_backwards",
        lambda: rnn3(L3.GRUCell(4), return_sequences=True, unroll=True, go_backwards=True),
        floats(2, 6, 3),
        notes="RNN(GRUCell) unroll=True, go_backwards=True, return_sequences",
    )
    case(
        "k3c_stack_mixed_state",
        lambda: func_rnn3(
            [L3.GRUCell(4, name="enc"), L3.LSTMCell(3, name="mid"), L3.SimpleRNNCell(5, name="dec")],
            return_sequences=True,
            return_state=True,
        ),
        floats(2, 6, 3),
        formats=("keras", "h5"),
        state_outputs={"rnn/gru_cell/h": 1, "rnn/lstm_cell/h": 2, "rnn/lstm_cell/c": 3, "rnn/simple_rnn_cell/h": 4},
        notes="RNN([GRUCell, LSTMCell, SimpleRNNCell]) (a list: Keras stacks it) return_sequences and return_state "
        "(outputs y, then every cell's states in cell order; Keras nests the LSTM cell's [h, c])",
        stream=True,
    )
    case(
        "k3c_stack_masked_backwards",
        lambda: rnn3(
            L3.StackedRNNCells([L3.LSTMCell(3), L3.GRUCell(4), L3.GRUCell(2, reset_after=False)]),
            7,
            masking=True,
            go_backwards=True,
        ),  # fmt: skip
        masked_floats(3, 7, 3, 0.5),
        formats=("keras", "h5"),
        notes="Masking -> RNN(StackedRNNCells([LSTMCell, GRUCell, GRUCell(reset_after=False)])) go_backwards, "
        "last output",
    )
    case(
        "k3c_stack_unroll",
        lambda: rnn3(
            L3.StackedRNNCells([L3.SimpleRNNCell(3), L3.LSTMCell(4)]), 5, unroll=True, return_sequences=True
        ),  # fmt: skip
        floats(2, 5, 3),
        notes="RNN(StackedRNNCells([SimpleRNNCell, LSTMCell])) unroll=True",
    )
    case(
        "k3c_stack_initial_state",
        _stack_initial_state,
        with_states(floats(2, 6, 3), {"h0": 4, "h1": 3, "c1": 3}),
        notes="Functional RNN(StackedRNNCells([GRUCell, LSTMCell]))(x, initial_state=[h0, [h1, c1]]), model Inputs",
    )
    case(
        "k3c_stateful_stack",
        lambda: base.seq3(
            keras.Input(batch_shape=(2, 5, 3), name="x"),
            L3.RNN(
                L3.StackedRNNCells([L3.SimpleRNNCell(3), L3.LSTMCell(4)]),
                stateful=True,
                return_sequences=True,
                name="rnn",
            ),  # fmt: skip
        ),
        floats(2, 5, 3),
        resets=("none", "none", "zeros", "none"),
        notes="stateful RNN(StackedRNNCells([SimpleRNNCell, LSTMCell])) fed 4 batches by predict; reset_state() "
        "before batch 2 (Keras 3's own fails on stacked cells' nested state variables: the script's assigns zeros)",
    )
    case(
        "k3c_stateful_rnn_gru",
        lambda: base.seq3(
            keras.Input(batch_shape=(3, 4, 2), name="x"),
            L3.RNN(L3.GRUCell(4), stateful=True, name="rnn"),
        ),
        floats(3, 4, 2),
        resets=("none", "none", "none"),
        notes="stateful RNN(GRUCell) last output, 3 batches carried over",
    )


# ------------------------------------------------------------------------------------------- Keras 2 (tf_keras) cells


def rnn2(cell: Any, steps: int | None = 6, features: int = 3, masking: bool = False, **options: Any) -> Any:
    layers = [L2.Masking(0.5, name="masking")] if masking else []
    return base.seq2(tf_keras.Input((steps, features), name="x"), *layers, L2.RNN(cell, name="rnn", **options))


def _k2_stack_state() -> Any:
    x = tf_keras.Input((6, 3), name="x")
    outputs = L2.RNN([L2.LSTMCell(3), L2.SimpleRNNCell(4), L2.GRUCell(2)], return_state=True, name="rnn")(x)
    return tf_keras.Model(x, outputs, name="model")


def keras2_cases() -> None:
    k2 = ("k2h5",)
    case(
        "k2c_rnn_gru_seq",
        lambda: rnn2(L2.GRUCell(4), return_sequences=True),
        floats(2, 6, 3),
        formats=k2,
        notes="Keras 2 RNN(GRUCell) return_sequences",
        stream=True,
    )
    case(
        "k2c_stack_mixed_state",
        _k2_stack_state,
        floats(2, 6, 3),
        formats=k2,
        state_outputs={"rnn/lstm_cell/h": 1, "rnn/lstm_cell/c": 2, "rnn/simple_rnn_cell/h": 3, "rnn/gru_cell/h": 4},
        notes="Keras 2 Functional RNN([LSTMCell, SimpleRNNCell, GRUCell]) return_state",
    )
    case(
        "k2c_rnn_lstm_time_major",
        lambda: rnn2(
            L2.LSTMCell(4, recurrent_activation="hard_sigmoid"), None, time_major=True, return_sequences=True
        ),  # fmt: skip
        time_major_floats(6, 2, 3),
        formats=k2,
        notes="Keras 2 RNN(LSTMCell(recurrent_activation=hard_sigmoid: Keras 2's 0.2x+0.5)) time_major=True",
    )
    case(
        "k2c_stack_masked_backwards",
        lambda: rnn2(
            [L2.GRUCell(3, reset_after=False), L2.SimpleRNNCell(4)],
            7,
            masking=True,
            go_backwards=True,
            return_sequences=True,
        ),  # fmt: skip
        masked_floats(3, 7, 3, 0.5),
        formats=k2,
        notes="Keras 2 Masking -> RNN([GRUCell(reset_after=False), SimpleRNNCell]) go_backwards, return_sequences",
    )
    case(
        "k2c_rnn_simple_unroll",
        lambda: rnn2(L2.SimpleRNNCell(4), 5, unroll=True),
        floats(2, 5, 3),
        formats=k2,
        notes="Keras 2 RNN(SimpleRNNCell) unroll=True, last output",
    )
    case(
        "k2c_stateful_stack",
        lambda: base.seq2(
            tf_keras.Input(batch_shape=(2, 5, 2), name="x"),
            L2.RNN([L2.GRUCell(3), L2.LSTMCell(2)], stateful=True, return_sequences=True, name="rnn"),
        ),
        floats(2, 5, 2),
        formats=k2,
        resets=("none", "none", "zeros", "none"),
        notes="Keras 2 stateful RNN([GRUCell, LSTMCell]); model.reset_states() before batch 2",
    )


# ------------------------------------------------------------------------------------------ Bidirectional(RNN(cell))


def bidi3(rnn: Any, steps: int = 6, features: int = 3, masking: bool = False, merge_mode: str | None = "concat") -> Any:
    """Sequential Input((steps, features)) [-> Masking(0.5)] -> Bidirectional(rnn, merge_mode)."""
    layers = [L3.Masking(0.5, name="masking")] if masking else []
    bidi = L3.Bidirectional(rnn, merge_mode=merge_mode, name="bi")
    return base.seq3(keras.Input((steps, features), name="x"), *layers, bidi)


def func_bidi3(rnn: Any, steps: int = 6, features: int = 3, merge_mode: str | None = "concat") -> Any:
    x = keras.Input((steps, features), name="x")
    return base.func3(x, L3.Bidirectional(rnn, merge_mode=merge_mode, name="bi")(x))


def _bidi_stack_initial_state() -> Any:
    x = keras.Input((6, 3), name="x")
    hf0, hf1, cf1 = keras.Input((4,), name="hf0"), keras.Input((3,), name="hf1"), keras.Input((3,), name="cf1")
    hb0, hb1, cb1 = keras.Input((4,), name="hb0"), keras.Input((3,), name="hb1"), keras.Input((3,), name="cb1")
    rnn = L3.RNN(L3.StackedRNNCells([L3.GRUCell(4), L3.LSTMCell(3)]), return_sequences=True)
    y = L3.Bidirectional(rnn, merge_mode="sum", name="bi")(x, initial_state=[hf0, [hf1, cf1], hb0, [hb1, cb1]])
    return base.func3([x, hf0, hf1, cf1, hb0, hb1, cb1], y)


def _bidi_state_outputs(cells: list[tuple[str, tuple[str, ...]]], first: int) -> dict[str, int]:
    """`bi/forward/<cell>/<state>` -> output index, forward then backward, from output `first` on."""
    names = [f"bi/{d}/{key}{s}" for d in ("forward", "backward") for key, states in cells for s in states]
    return {name: first + k for k, name in enumerate(names)}


def bidirectional3_cases() -> None:
    keras_and_h5 = ("keras", "h5")
    case(
        "k3c_bidi_rnn_simple_concat_seq",
        lambda: bidi3(L3.RNN(L3.SimpleRNNCell(4, activation="relu"), return_sequences=True)),
        floats(2, 6, 3),
        formats=keras_and_h5,
        notes="Bidirectional(RNN(SimpleRNNCell(relu)), concat) return_sequences; .keras and Keras 3 .h5",
    )
    case(
        "k3c_bidi_rnn_gru_sum_last",
        lambda: bidi3(L3.RNN(L3.GRUCell(4, reset_after=False)), merge_mode="sum"),
        floats(3, 6, 3),
        notes="Bidirectional(RNN(GRUCell(reset_after=False)), sum), last output",
    )
    case(
        "k3c_bidi_rnn_lstm_ave_state",
        lambda: func_bidi3(L3.RNN(L3.LSTMCell(3), return_sequences=True, return_state=True), merge_mode="ave"),
        floats(2, 6, 3),
        formats=keras_and_h5,
        state_outputs=_bidi_state_outputs([("", ("h", "c"))], 1),
        notes="Functional Bidirectional(RNN(LSTMCell), ave) return_sequences and return_state: "
        "[y, forward h, c, backward h, c]",
    )
    case(
        "k3c_bidi_rnn_gru_unroll",
        lambda: bidi3(L3.RNN(L3.GRUCell(3), return_sequences=True, unroll=True), 5, 2, merge_mode="mul"),
        floats(2, 5, 2),
        notes="Bidirectional(RNN(GRUCell) unroll=True, mul) return_sequences (Keras 3.15.1 refuses an inner "
        "go_backwards=True: its backward copy keeps go_backwards)",
    )
    case(
        "k3c_bidi_stack_concat_masked",
        lambda: bidi3(
            L3.RNN(L3.StackedRNNCells([L3.GRUCell(4), L3.LSTMCell(3), L3.SimpleRNNCell(2)]), return_sequences=True),
            7,
            masking=True,
        ),  # fmt: skip
        masked_floats(3, 7, 3, 0.5),
        formats=keras_and_h5,
        notes="Masking -> Bidirectional(RNN(StackedRNNCells([GRUCell, LSTMCell, SimpleRNNCell])), concat) "
        "return_sequences (masked steps output zeros: Keras forces zero_output_for_mask)",
    )
    case(
        "k3c_bidi_stack_none_state",
        lambda: func_bidi3(L3.RNN([L3.LSTMCell(3), L3.GRUCell(2)], return_state=True), merge_mode=None),
        floats(2, 6, 3),
        state_outputs=_bidi_state_outputs([("lstm_cell/", ("h", "c")), ("gru_cell/", ("h",))], 2),
        notes="Functional Bidirectional(RNN([LSTMCell, GRUCell]), merge_mode=None) return_state: [forward y, "
        "backward y, then every cell's states forward then backward (Keras nests the LSTM cell's [h, c])]",
    )
    case(
        "k3c_bidi_stack_mul_explicit_mask",
        lambda: func_bidi3(
            L3.RNN(L3.StackedRNNCells([L3.SimpleRNNCell(3), L3.GRUCell(4)]), return_sequences=True),
            7,
            merge_mode="mul",
        ),  # fmt: skip
        floats(2, 7, 3),
        mask=step_mask,
        notes="Functional Bidirectional(RNN(StackedRNNCells([SimpleRNNCell, GRUCell])), mul), explicit mask",
    )
    case(
        "k3c_bidi_stack_initial_state",
        _bidi_stack_initial_state,
        with_states(floats(2, 6, 3), {"hf0": 4, "hf1": 3, "cf1": 3, "hb0": 4, "hb1": 3, "cb1": 3}),
        notes="Functional Bidirectional(RNN(StackedRNNCells([GRUCell, LSTMCell])), sum)(x, initial_state="
        "[hf0, [hf1, cf1], hb0, [hb1, cb1]]) with model Inputs",
    )
    case(
        "k3c_bidi_stateful_stack",
        lambda: base.seq3(
            keras.Input(batch_shape=(2, 5, 3), name="x"),
            L3.Bidirectional(
                L3.RNN(L3.StackedRNNCells([L3.GRUCell(3), L3.LSTMCell(2)]), stateful=True, return_sequences=True),
                name="bi",
            ),
        ),
        floats(2, 5, 3),
        resets=("none", "none", "zeros", "none"),
        notes="stateful Bidirectional(RNN(StackedRNNCells([GRUCell, LSTMCell]))) fed 4 batches by predict (both "
        "directions carry their states to the next batch); reset_state() before batch 2",
    )


def bidi2(rnn: Any, steps: int = 6, features: int = 3, masking: bool = False, merge_mode: str | None = "concat") -> Any:
    layers = [L2.Masking(0.5, name="masking")] if masking else []
    bidi = L2.Bidirectional(rnn, merge_mode=merge_mode, name="bi")
    return base.seq2(tf_keras.Input((steps, features), name="x"), *layers, bidi)


def _k2_bidi_stack_state() -> Any:
    x = tf_keras.Input((6, 3), name="x")
    rnn = L2.RNN([L2.LSTMCell(3), L2.GRUCell(2)], return_sequences=True, return_state=True)
    return tf_keras.Model(x, L2.Bidirectional(rnn, merge_mode="ave", name="bi")(x), name="model")


def bidirectional2_cases() -> None:
    k2 = ("k2h5",)
    case(
        "k2c_bidi_rnn_lstm_backwards_seq",
        lambda: bidi2(L2.RNN(L2.LSTMCell(4), return_sequences=True, go_backwards=True)),
        floats(2, 6, 3),
        formats=k2,
        notes="Keras 2 Bidirectional(RNN(LSTMCell, go_backwards=True: the forward half reads from the end), concat) "
        "return_sequences",
    )
    case(
        "k2c_bidi_stack_sum_masked",
        lambda: bidi2(
            L2.RNN([L2.GRUCell(3, reset_after=False), L2.SimpleRNNCell(4)]), 7, masking=True, merge_mode="sum"
        ),
        masked_floats(3, 7, 3, 0.5),
        formats=k2,
        notes="Keras 2 Masking -> Bidirectional(RNN([GRUCell(reset_after=False), SimpleRNNCell]), sum), last output",
    )
    case(
        "k2c_bidi_stack_ave_state",
        _k2_bidi_stack_state,
        floats(2, 6, 3),
        formats=k2,
        state_outputs=_bidi_state_outputs([("lstm_cell/", ("h", "c")), ("gru_cell/", ("h",))], 1),
        notes="Keras 2 Functional Bidirectional(RNN([LSTMCell, GRUCell]), ave) return_sequences, return_state",
    )


# ------------------------------------------------------------------------------------------------------ cuDNN layers


@dataclass(frozen=True)
class CudnnCase:
    """A model built twice from `build(cudnn)`: with the cuDNN layer (saved) and with its plain twin (run)."""

    id: str
    build: Callable[[bool], Any]
    feeds: base.FeedMaker
    notes: str
    state_outputs: dict[str, int]
    stream: bool = False
    resets: tuple[str, ...] = ()  # stateful: the twin is fed batch after batch, as `make_fixtures.py` does


def gru2(cudnn: bool, units: int, **options: Any) -> Any:
    if cudnn:
        return CuDNNGRU(units, **options)
    return L2.GRU(units, reset_after=True, recurrent_activation="sigmoid", **options)


def lstm2(cudnn: bool, units: int, **options: Any) -> Any:
    if cudnn:
        return CuDNNLSTM(units, **options)
    return L2.LSTM(units, recurrent_activation="sigmoid", **options)


def _cudnn_lstm_initial_state(cudnn: bool) -> Any:
    x = tf_keras.Input((6, 3), name="x")
    h0, c0 = tf_keras.Input((3,), name="h0"), tf_keras.Input((3,), name="c0")
    outputs = lstm2(cudnn, 3, return_sequences=True, return_state=True, name="lstm")(x, initial_state=[h0, c0])
    return tf_keras.Model([x, h0, c0], outputs, name="model")


def _cudnn_gru_state_backwards(cudnn: bool) -> Any:
    x = tf_keras.Input((7, 2), name="x")
    return tf_keras.Model(x, gru2(cudnn, 5, go_backwards=True, return_state=True, name="gru")(x), name="model")


CUDNN_CASES = [
    CudnnCase(
        "k2_cudnn_gru_seq",
        lambda cudnn: base.seq2(tf_keras.Input((6, 3), name="x"), gru2(cudnn, 4, return_sequences=True, name="gru")),
        floats(2, 6, 3),
        "Keras 2 CuDNNGRU return_sequences (Sequential)",
        {},
        stream=True,
    ),
    CudnnCase(
        "k2_cudnn_gru_state_backwards",
        _cudnn_gru_state_backwards,
        floats(3, 7, 2),
        "Keras 2 Functional CuDNNGRU go_backwards, return_state",
        {"gru/h": 1},
    ),
    CudnnCase(
        "k2_cudnn_lstm_last",
        lambda cudnn: base.seq2(tf_keras.Input((5, 3), name="x"), lstm2(cudnn, 4, name="lstm"), L2.Dense(2, name="d")),
        floats(2, 5, 3),
        "Keras 2 CuDNNLSTM last output -> Dense (Sequential)",
        {},
        stream=True,
    ),
    CudnnCase(
        "k2_cudnn_lstm_initial_state",
        _cudnn_lstm_initial_state,
        with_states(floats(2, 6, 3), {"h0": 3, "c0": 3}),
        "Keras 2 Functional CuDNNLSTM(x, initial_state=[h0, c0]) return_sequences, return_state",
        {"lstm/h": 1, "lstm/c": 2},
    ),
    CudnnCase(
        "k2_cudnn_lstm_stateful",
        lambda cudnn: base.seq2(
            tf_keras.Input(batch_shape=(2, 4, 3), name="x"),
            lstm2(cudnn, 3, stateful=True, return_sequences=True, name="lstm"),
        ),
        floats(2, 4, 3),
        "Keras 2 stateful CuDNNLSTM fed 4 batches; model.reset_states() before batch 2",
        {},
        resets=("none", "none", "zeros", "none"),
    ),
    CudnnCase(
        "k2_cudnn_bidi_lstm",
        lambda cudnn: base.seq2(
            tf_keras.Input((6, 3), name="x"),
            L2.Bidirectional(lstm2(cudnn, 3, return_sequences=True), name="bi"),
        ),
        floats(2, 6, 3),
        "Keras 2 Bidirectional(CuDNNLSTM) return_sequences, concat",
        {},
    ),
]


def build_cudnn(c: CudnnCase) -> list[dict[str, Any]]:
    seed = zlib.crc32(c.id.encode())
    tf_keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = c.build(True)
    base.randomize_weights(model, rng)
    name = f"{c.id}.k2.h5"
    model.save(CELLS / name)
    twin = c.build(False)
    twin.load_weights(CELLS / name)  # tf_keras' _convert_rnn_weights turns the cuDNN layout into GRU/LSTM weights
    stored = [w.shape for w in model.get_weights()]
    converted = [w.shape for w in twin.get_weights()]
    if stored == converted and all(
        np.array_equal(a, b) for a, b in zip(model.get_weights(), twin.get_weights(), strict=True)
    ):
        raise RuntimeError(f"{c.id}: the plain twin got the cuDNN weights unconverted")
    plain = Case(
        c.id, lambda: twin, c.feeds, formats=("k2h5",), notes=c.notes, state_outputs=c.state_outputs, resets=c.resets
    )
    details = base.write_stateful(plain, twin, rng) if c.resets else base.write_single(plain, twin, rng)
    common = {
        "data": f"{c.id}.npz",
        "keras_version": tf_keras.__version__,
        "model": type(model).__name__,
        "outputs": model_output_names(twin),
        "state_outputs": c.state_outputs,
        "stream": c.stream,
        "notes": c.notes + "; Keras numbers from the plain twin the file's cuDNN weights were loaded into",
        **details,
    }
    return [{"id": name, "file": name, "format": "k2h5", **common}]


# --------------------------------------------------------------------------------------------------------- main


def main() -> None:
    keras3_cases()
    keras2_cases()
    bidirectional3_cases()
    bidirectional2_cases()
    CELLS.mkdir(exist_ok=True)
    for path in CELLS.iterdir():
        if path.suffix in {".keras", ".h5", ".npz", ".json"}:
            path.unlink()
    entries: list[dict[str, Any]] = []
    for c in CASES:
        entries += base.build_case(c)
        print(f"  {c.id}: {', '.join(c.formats)}", flush=True)
    for cc in CUDNN_CASES:
        entries += build_cudnn(cc)
        print(f"  {cc.id}: k2h5 (cuDNN)", flush=True)
    index = {"generator": "tests/parity/make_fixtures_cells.py", "skipped": [], "cases": entries}
    (CELLS / "cases.json").write_text(json.dumps(index, indent=1) + "\n")
    size = sum(p.stat().st_size for p in CELLS.iterdir())
    print(f"{len(entries)} model files, {size / 1e6:.2f} MB in {CELLS}")


if __name__ == "__main__":
    main()
