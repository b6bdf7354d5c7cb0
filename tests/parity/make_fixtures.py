"""Write the Keras parity fixtures: model files plus the numbers real Keras computes from them.

Regenerate (real Keras lives only in the Keras venv; the tests never import it):

    cd /work/main && KERAS_BACKEND=torch /work/venvs/keras/bin/python tests/parity/make_fixtures.py

Keras 3 cases use keras 3.15.1 on the torch backend; Keras 2 cases use tf_keras 2.21 (what R keras on TensorFlow 2
writes). Every case is built from a fixed seed, gets random weights of scale 0.5 (so activations work in their
non-linear range) and random inputs, and is run by Keras (`predict`, or a call with an explicit mask). The script
writes into `tests/parity/fixtures/`:

* the model file(s): `<id>.keras` (Keras 3 native), `<id>.h5` (Keras 3 legacy HDF5), `<id>.k2.h5` (Keras 2 HDF5);
* `<id>.npz` (no pickled objects): `in_<input name>` for every model input (initial-state inputs included),
  optional `mask` (bool (batch, time), passed to the runner as its `mask`), `out_<k>` for every model output in
  order, and `valid` (the (batch, time) mask Keras derives from Embedding/Masking, ANDed with `mask`) when masked;
  stateful cases hold batches instead: `b<j>_in_<name>`, `b<j>_out_<k>`, `b<j>_state_<i>` (every state after
  batch j) and `b<j>_reset_<i>` (the values a "values" reset put in before batch j);
* `cases.json`: one entry per model file, describing the data file, inputs, outputs, which outputs are states
  (`state_outputs`: state name -> output index, state names as in `rnnserve.spec.layer_states`), streaming and
  stateful details, and what the case covers.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tf_keras  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
WEIGHT_SCALE = 0.5
FORMAT_SUFFIX = {"keras": ".keras", "h5": ".h5", "k2h5": ".k2.h5"}

Feeds = dict[str, np.ndarray]
FeedMaker = Callable[[np.random.Generator], Feeds]

# Activations Keras 3 accepts by name. `glu` (halves the state) and `threshold` (needs arguments) fail inside Keras
# itself when given to a recurrent layer by name, so they have no Keras reference and no case.
KERAS3_ACTIVATIONS = (
    "celu", "elu", "exponential", "gelu", "hard_shrink", "hard_sigmoid", "hard_silu", "hard_swish", "hard_tanh",
    "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish", "relu", "relu6", "selu", "sigmoid", "silu",
    "soft_shrink", "softmax", "softplus", "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus",
    "swish", "tanh", "tanh_shrink",
)  # fmt: skip

SKIPPED = [
    (
        "SimpleRNN(unroll=True, go_backwards=True) with a mask: the Keras 3 torch backend crashes "
        "('tuple' object has no attribute 'shape'), so Keras gives no reference (SEMANTICS.md §3)."
    ),
    "activation='glu' and activation='threshold' on a recurrent layer: Keras itself fails on the first call.",
    "Keras 3 reset_states(states=...) does not exist; k3_stateful_stack sets values with Variable.assign instead.",
]


@dataclass(frozen=True)
class Case:
    """One Keras model, how to feed it, and what its fixture entry says."""

    id: str
    build: Callable[[], Any]
    feeds: FeedMaker
    formats: tuple[str, ...] = ("keras",)
    notes: str = ""
    mask: Callable[[np.random.Generator, Feeds], np.ndarray] | None = None
    state_outputs: dict[str, int] = field(default_factory=dict)
    stream: bool = False
    resets: tuple[str, ...] = ()  # stateful cases: per batch "none" | "zeros" | "values"

    @property
    def keras2(self) -> bool:
        return self.formats == ("k2h5",)


CASES: list[Case] = []


def case(case_id: str, build: Callable[[], Any], feeds: FeedMaker, **options: Any) -> None:
    if any(c.id == case_id for c in CASES):
        raise ValueError(f"duplicate case id {case_id!r}")
    CASES.append(Case(case_id, build, feeds, **options))


# ----------------------------------------------------------------------------------------------------- inputs


def floats(batch: int, steps: int, features: int, name: str = "x") -> FeedMaker:
    return lambda rng: {name: rng.normal(size=(batch, steps, features)).astype(np.float32)}


def time_major_floats(steps: int, batch: int, features: int) -> FeedMaker:
    return lambda rng: {"x": rng.normal(size=(steps, batch, features)).astype(np.float32)}


def tokens(rows: Sequence[Sequence[int]], name: str = "x") -> FeedMaker:
    """Fixed token ids (0 = padding): padding at the start, in the middle and at the end."""
    return lambda rng: {name: np.asarray(rows, dtype=np.int64)}


PADDED = ([0, 0, 4, 9, 0, 1, 0, 0], [3, 7, 2, 5, 8, 6, 1, 4], [5, 2, 0, 0, 7, 0, 9, 0])
PADDED_END = ([3, 7, 2, 5, 0, 0], [6, 1, 0, 0, 0, 0], [2, 4, 8, 1, 9, 3])


def masked_floats(batch: int, steps: int, features: int, mask_value: float) -> FeedMaker:
    """Floats where some steps equal `mask_value` in every feature (masked) and one only in some (not masked)."""

    def make(rng: np.random.Generator) -> Feeds:
        x = rng.normal(size=(batch, steps, features)).astype(np.float32)
        x[0, 1] = mask_value
        x[0, steps - 2 :] = mask_value
        x[1, 0] = mask_value
        x[1, 3, 0] = mask_value  # partial match: not masked
        if batch > 2:
            x[2, 2:4] = mask_value
        return {"x": x}

    return make


def with_states(base: FeedMaker, states: dict[str, int]) -> FeedMaker:
    """Add initial-state inputs (name -> units) of the same batch as `x`."""

    def make(rng: np.random.Generator) -> Feeds:
        feeds = base(rng)
        batch = next(iter(feeds.values())).shape[0]
        for name, units in states.items():
            feeds[name] = rng.normal(scale=0.5, size=(batch, units)).astype(np.float32)
        return feeds

    return make


def step_mask(rng: np.random.Generator, feeds: Feeds) -> np.ndarray:
    """An explicit (batch, time) mask with gaps at the start, in the middle and at the end."""
    batch, steps = feeds["x"].shape[:2]
    mask = np.ones((batch, steps), dtype=bool)
    mask[0, [0, 3]] = False
    mask[1, steps - 2 :] = False
    return mask


# ------------------------------------------------------------------------------------------------- Keras 3 models


L3 = keras.layers


def seq3(inputs: Any, *layers: Any, name: str = "model") -> Any:
    return keras.Sequential([inputs, *layers], name=name)


def func3(inputs: Any, outputs: Any, name: str = "model") -> Any:
    return keras.Model(inputs, outputs, name=name)


def srnn3(steps: int, masking: bool = False, **options: Any) -> Any:
    """Sequential Input((steps, 3)) [-> Masking(0.5)] -> SimpleRNN(4, **options)."""
    layers = [L3.Masking(0.5, name="masking")] if masking else []
    return seq3(keras.Input((steps, 3), name="x"), *layers, L3.SimpleRNN(4, name="rnn", **options))


def srnn3_return_state(return_sequences: bool) -> Any:
    return _return_state_model(L3.SimpleRNN(4, return_sequences=return_sequences, return_state=True, name="rnn"))


def simple_rnn_cases() -> None:
    for act in (*KERAS3_ACTIVATIONS, None):
        label = "none" if act is None else act
        case(
            f"k3_srnn_act_{label}",
            partial(srnn3, 6, activation=act, return_sequences=True),
            floats(2, 6, 3),
            notes=f"SimpleRNN activation={act!r}, return_sequences=True",
        )
    case(
        "k3_srnn_nobias_last",
        lambda: seq3(keras.Input((7, 2), name="x"), L3.SimpleRNN(5, use_bias=False, name="rnn")),
        floats(3, 7, 2),
        notes="SimpleRNN use_bias=False, return_sequences=False",
        stream=True,
    )
    case(
        "k3_srnn_seq",
        lambda: seq3(keras.Input((7, 3), name="x"), L3.SimpleRNN(4, return_sequences=True, name="rnn")),
        floats(2, 7, 3),
        formats=("keras", "h5"),
        notes="SimpleRNN default tanh, return_sequences=True; Keras 3 .keras and .h5 of the same model",
        stream=True,
    )
    for seq in (True, False):
        tag = "seq" if seq else "last"
        case(
            f"k3_srnn_return_state_{tag}",
            partial(srnn3_return_state, seq),
            floats(2, 6, 3),
            notes=f"SimpleRNN return_state=True, return_sequences={seq} (Functional, outputs [y, h])",
            state_outputs={"rnn/h": 1},
        )
        case(
            f"k3_srnn_backwards_{tag}",
            partial(srnn3, 6, go_backwards=True, return_sequences=seq),
            floats(2, 6, 3),
            notes=f"SimpleRNN go_backwards=True, return_sequences={seq}",
        )
        case(
            f"k3_srnn_unroll_{tag}",
            partial(srnn3, 5, unroll=True, return_sequences=seq),
            floats(2, 5, 3),
            notes=f"SimpleRNN unroll=True, return_sequences={seq} (streamed: other lengths than the unrolled T)",
            stream=True,
        )
    case(
        "k3_srnn_config_args",
        _srnn_all_arguments,
        floats(3, 6, 3),
        formats=("keras", "h5"),
        notes="SimpleRNN with non-default initializers, L1/L2/L1L2 kernel/recurrent/bias/activity regularizers, "
        "MaxNorm/UnitNorm/NonNeg constraints, dropout=0.3, recurrent_dropout=0.2, seed=7: inert at inference",
    )
    case(
        "k3_srnn_explicit_mask",
        lambda: seq3(keras.Input((7, 3), name="x"), L3.SimpleRNN(4, return_sequences=True, name="rnn")),
        floats(2, 7, 3),
        mask=step_mask,
        notes="SimpleRNN called as model(x, mask=m): the runner's mask argument",
    )


def _return_state_model(rnn: Any, steps: int = 6, features: int = 3) -> Any:
    x = keras.Input((steps, features), name="x")
    return func3(x, rnn(x))


def _srnn_all_arguments() -> Any:
    reg, con, ini = keras.regularizers, keras.constraints, keras.initializers
    rnn = L3.SimpleRNN(
        4,
        activation="tanh",
        use_bias=True,
        kernel_initializer=ini.HeNormal(seed=1),
        recurrent_initializer=ini.Identity(),
        bias_initializer=ini.Constant(0.1),
        kernel_regularizer=reg.L1(0.02),
        recurrent_regularizer=reg.L2(0.01),
        bias_regularizer=reg.L1L2(l1=0.01, l2=0.02),
        activity_regularizer=reg.L2(0.05),
        kernel_constraint=con.MaxNorm(2.0),
        recurrent_constraint=con.UnitNorm(),
        bias_constraint=con.NonNeg(),
        dropout=0.3,
        recurrent_dropout=0.2,
        seed=7,
        return_sequences=True,
        name="rnn",
    )
    return seq3(keras.Input((6, 3), name="x"), rnn)


def masking_cases() -> None:
    case(
        "k3_emb_mask_srnn_last",
        lambda: seq3(
            keras.Input((8,), dtype="int64", name="x"),
            L3.Embedding(10, 3, mask_zero=True, name="emb"),
            L3.SimpleRNN(4, name="rnn"),
        ),
        tokens(PADDED),
        formats=("keras", "h5"),
        notes="Sequential Embedding(mask_zero) -> SimpleRNN last output; padding at start, middle and end",
    )
    case(
        "k3_emb_mask_gru_seq_func",
        lambda: _embedding_functional(L3.GRU(4, return_sequences=True, name="gru"), dtype="int32"),
        tokens(PADDED),
        formats=("keras", "h5"),
        notes="Functional Embedding(mask_zero) -> GRU sequence (NotEqual op node in the config; int32 input)",
        stream=True,
    )
    case(
        "k3_emb_mask_float_input",
        lambda: seq3(
            keras.Input((6,), name="x"),
            L3.Embedding(10, 3, mask_zero=True, name="emb"),
            L3.LSTM(4, return_sequences=True, name="lstm"),
        ),
        tokens(PADDED_END),
        notes="Embedding fed by a float32 Input (the R default), padding only at the end, LSTM sequence",
    )
    case(
        "k3_masking_lstm_seq",
        lambda: seq3(
            keras.Input((7, 3), name="x"),
            L3.Masking(mask_value=0.5, name="masking"),
            L3.LSTM(4, return_sequences=True, name="lstm"),
        ),
        masked_floats(3, 7, 3, 0.5),
        formats=("keras", "h5"),
        notes="Masking(0.5) -> LSTM sequence; a step with only some features = 0.5 is not masked",
        stream=True,
    )
    case(
        "k3_masking_gru_last_func",
        lambda: _masking_functional(L3.GRU(4, name="gru")),
        masked_floats(3, 7, 3, 0.5),
        formats=("keras", "h5"),
        notes="Functional Masking -> GRU last output (NotEqual + Any op nodes in the config)",
    )
    for seq in (True, False):
        tag = "seq" if seq else "last"
        case(
            f"k3_masking_srnn_backwards_{tag}",
            partial(srnn3, 7, masking=True, go_backwards=True, return_sequences=seq),
            masked_floats(3, 7, 3, 0.5),
            notes=f"Masking + go_backwards=True, return_sequences={seq}",
        )
    case(
        "k3_emb_mask_zero_output",
        lambda: seq3(
            keras.Input((8,), dtype="int64", name="x"),
            L3.Embedding(10, 3, mask_zero=True, name="emb"),
            L3.GRU(4, return_sequences=True, zero_output_for_mask=True, name="gru"),
        ),
        tokens(PADDED),
        notes="GRU zero_output_for_mask=True: masked steps output zeros",
    )
    case(
        "k3_emb_mask_unroll",
        lambda: seq3(
            keras.Input((8,), dtype="int64", name="x"),
            L3.Embedding(10, 3, mask_zero=True, name="emb"),
            L3.SimpleRNN(4, unroll=True, return_sequences=True, name="rnn"),
        ),
        tokens(PADDED),
        notes="unroll=True + mask (forward only: unroll + go_backwards + mask crashes in Keras' torch backend)",
    )


def _embedding_functional(rnn: Any, dtype: str = "int64", steps: int = 8) -> Any:
    x = keras.Input((steps,), dtype=dtype, name="x")
    return func3(x, rnn(L3.Embedding(10, 3, mask_zero=True, name="emb")(x)))


def _masking_functional(rnn: Any, steps: int = 7, features: int = 3) -> Any:
    x = keras.Input((steps, features), name="x")
    return func3(x, rnn(L3.Masking(mask_value=0.5, name="masking")(x)))


def gated_cases() -> None:
    case(
        "k3_gru_reset_after_seq",
        lambda: seq3(keras.Input((7, 3), name="x"), L3.GRU(4, return_sequences=True, name="gru")),
        floats(2, 7, 3),
        notes="GRU reset_after=True (bias (2, 3U)), return_sequences=True",
        stream=True,
    )
    case(
        "k3_gru_reset_before_seq",
        lambda: seq3(
            keras.Input((7, 3), name="x"),
            L3.GRU(4, reset_after=False, recurrent_activation="hard_sigmoid", return_sequences=True, name="gru"),
        ),
        floats(2, 7, 3),
        formats=("keras", "h5"),
        notes="GRU reset_after=False, recurrent_activation=hard_sigmoid (Keras 3: x/6+0.5)",
        stream=True,
    )
    case(
        "k3_gru_reset_before_last",
        lambda: seq3(keras.Input((6, 2), name="x"), L3.GRU(5, reset_after=False, name="gru")),
        floats(3, 6, 2),
        notes="GRU reset_after=False, last output",
    )
    case(
        "k3_gru_activation_variants",
        lambda: seq3(
            keras.Input((6, 3), name="x"),
            L3.GRU(4, activation="relu", recurrent_activation="tanh", return_sequences=True, name="gru"),
        ),
        floats(2, 6, 3),
        notes="GRU activation=relu, recurrent_activation=tanh",
    )
    case(
        "k3_lstm_forget_bias_seq",
        lambda: seq3(
            keras.Input((7, 3), name="x"), L3.LSTM(4, unit_forget_bias=True, return_sequences=True, name="lstm")
        ),
        floats(2, 7, 3),
        notes="LSTM unit_forget_bias=True, return_sequences=True",
        stream=True,
    )
    case(
        "k3_lstm_no_forget_bias_last",
        lambda: seq3(
            keras.Input((6, 4), name="x"),
            L3.LSTM(3, unit_forget_bias=False, recurrent_activation="hard_sigmoid", activation="softsign", name="lstm"),
        ),
        floats(3, 6, 4),
        notes="LSTM unit_forget_bias=False, recurrent_activation=hard_sigmoid, activation=softsign, last output",
    )
    case(
        "k3_lstm_dropout",
        lambda: seq3(
            keras.Input((6, 3), name="x"),
            L3.LSTM(4, dropout=0.4, recurrent_dropout=0.3, seed=3, return_sequences=True, name="lstm"),
        ),
        floats(2, 6, 3),
        notes="LSTM dropout/recurrent_dropout inert at inference",
    )
    case(
        "k3_gru_return_state",
        lambda: _return_state_model(L3.GRU(4, return_sequences=True, return_state=True, name="gru")),
        floats(2, 6, 3),
        notes="GRU return_state=True (outputs [y, h])",
        state_outputs={"gru/h": 1},
    )
    case(
        "k3_lstm_return_state",
        lambda: _return_state_model(L3.LSTM(4, return_state=True, name="lstm")),
        floats(2, 6, 3),
        formats=("keras", "h5"),
        notes="LSTM return_state=True, last output (outputs [y, h, c])",
        state_outputs={"lstm/h": 1, "lstm/c": 2},
    )
    case(
        "k3_gru_initial_state",
        lambda: _initial_state_model(L3.GRU(4, return_sequences=True, name="gru"), ("h0",)),
        with_states(floats(2, 6, 3), {"h0": 4}),
        formats=("keras", "h5"),
        notes="Functional GRU(x, initial_state=h0) with h0 a model Input",
    )
    case(
        "k3_lstm_initial_state",
        lambda: _initial_state_model(L3.LSTM(4, return_state=True, name="lstm"), ("h0", "c0")),
        with_states(floats(2, 6, 3), {"h0": 4, "c0": 4}),
        notes="Functional LSTM(x, initial_state=[h0, c0]) with return_state",
        state_outputs={"lstm/h": 1, "lstm/c": 2},
    )


def _initial_state_model(rnn: Any, state_names: tuple[str, ...], units: int = 4) -> Any:
    x = keras.Input((6, 3), name="x")
    states = [keras.Input((units,), name=n) for n in state_names]
    return func3([x, *states], rnn(x, initial_state=states if len(states) > 1 else states[0]))


def stacked_cases() -> None:
    case(
        "k3_stacked_seq",
        lambda: seq3(
            keras.Input((7, 3), name="x"),
            L3.SimpleRNN(5, return_sequences=True, name="rnn"),
            L3.GRU(4, return_sequences=True, name="gru"),
            L3.LSTM(3, return_sequences=True, name="lstm"),
            L3.TimeDistributed(L3.Dense(2, activation="tanh", name="dense"), name="td"),
        ),
        floats(2, 7, 3),
        formats=("keras", "h5"),
        notes="Sequential SimpleRNN -> GRU -> LSTM (return_sequences) -> TimeDistributed(Dense)",
        stream=True,
    )
    case(
        "k3_stacked_func_dense",
        _stacked_functional,
        floats(3, 6, 2),
        formats=("keras", "h5"),
        notes="Functional SimpleRNN -> GRU(reset_after=False) -> LSTM (last) -> Dense(softmax)",
    )
    case(
        "k3_gru_dense_3d",
        lambda: seq3(
            keras.Input((6, 3), name="x"),
            L3.GRU(4, return_sequences=True, name="gru"),
            L3.Dense(3, activation="relu", name="dense"),
        ),
        floats(2, 6, 3),
        notes="Dense applied to a 3-D sequence output",
        stream=True,
    )


def _stacked_functional() -> Any:
    x = keras.Input((6, 2), name="x")
    h = L3.SimpleRNN(4, return_sequences=True, name="rnn")(x)
    h = L3.GRU(5, reset_after=False, return_sequences=True, name="gru")(h)
    h = L3.LSTM(3, name="lstm")(h)
    return func3(x, L3.Dense(2, activation="softmax", name="dense")(h))


BIDI_INNER = {
    "concat": lambda seq: L3.LSTM(3, return_sequences=seq),
    "sum": lambda seq: L3.GRU(4, return_sequences=seq),
    "mul": lambda seq: L3.SimpleRNN(4, return_sequences=seq),
    "ave": lambda seq: L3.GRU(3, reset_after=False, return_sequences=seq),
    "none": lambda seq: L3.LSTM(3, return_sequences=seq),
}


def merge_mode(mode: str) -> str | None:
    return None if mode == "none" else mode


def bidi3_masked(mode: str) -> Any:
    """Functional Embedding(mask_zero) -> Bidirectional(sequence) with the inner layer BIDI_INNER[mode]."""
    return _embedding_functional(L3.Bidirectional(BIDI_INNER[mode](True), merge_mode=merge_mode(mode), name="bi"))


def bidi3_last(mode: str) -> Any:
    bidi = L3.Bidirectional(BIDI_INNER[mode](False), merge_mode=merge_mode(mode), name="bi")
    return seq3(keras.Input((6, 3), name="x"), bidi)


def bidirectional_cases() -> None:
    for mode in BIDI_INNER:
        merge = merge_mode(mode)
        case(
            f"k3_bidi_{mode}_seq_masked",
            partial(bidi3_masked, mode),
            tokens(PADDED),
            formats=("keras", "h5") if mode == "concat" else ("keras",),
            notes=f"Bidirectional merge_mode={merge!r}, return_sequences=True, Embedding mask (zeros at masked steps)",
        )
        case(
            f"k3_bidi_{mode}_last",
            partial(bidi3_last, mode),
            floats(2, 6, 3),
            notes=f"Bidirectional merge_mode={merge!r}, return_sequences=False",
        )
    case(
        "k3_bidi_concat_last_masked",
        lambda: _masking_functional(L3.Bidirectional(L3.GRU(4), name="bi")),
        masked_floats(3, 7, 3, 0.5),
        notes="Masking -> Bidirectional(GRU) last output",
    )
    case(
        "k3_bidi_sum_seq_masking",
        lambda: seq3(
            keras.Input((7, 3), name="x"),
            L3.Masking(0.5, name="masking"),
            L3.Bidirectional(L3.SimpleRNN(4, return_sequences=True), merge_mode="sum", name="bi"),
        ),
        masked_floats(3, 7, 3, 0.5),
        notes="Sequential Masking -> Bidirectional(SimpleRNN, sum) sequence",
    )
    case(
        "k3_bidi_return_state",
        lambda: _return_state_model(L3.Bidirectional(L3.LSTM(3, return_sequences=True, return_state=True), name="bi")),
        floats(2, 6, 3),
        notes="Bidirectional(LSTM, return_state) outputs [y, fwd h, fwd c, bwd h, bwd c]",
        state_outputs={"bi/forward/h": 1, "bi/forward/c": 2, "bi/backward/h": 3, "bi/backward/c": 4},
    )
    case(
        "k3_bidi_gru_return_state_last",
        lambda: _return_state_model(L3.Bidirectional(L3.GRU(4, return_state=True), merge_mode="ave", name="bi")),
        floats(2, 6, 3),
        notes="Bidirectional(GRU, return_state, ave), last output: outputs [y, fwd h, bwd h]",
        state_outputs={"bi/forward/h": 1, "bi/backward/h": 2},
    )
    case(
        "k3_bidi_initial_state",
        lambda: _initial_state_model(L3.Bidirectional(L3.GRU(4, return_sequences=True), name="bi"), ("hf", "hb")),
        with_states(floats(2, 6, 3), {"hf": 4, "hb": 4}),
        notes="Functional Bidirectional(GRU)(x, initial_state=[hf, hb]) with model Inputs",
    )


def stateful3_cases() -> None:
    case(
        "k3_stateful_gru",
        lambda: seq3(
            keras.Input(batch_shape=(2, 5, 3), name="x"),
            L3.GRU(4, stateful=True, return_sequences=True, name="gru"),
            L3.Dense(2, name="dense"),
        ),
        floats(2, 5, 3),
        resets=("none", "none", "zeros", "none"),
        notes="stateful GRU fed 4 batches by predict; layer.reset_state() before batch 2",
    )
    case(
        "k3_stateful_stack",
        lambda: seq3(
            keras.Input(batch_shape=(3, 6, 2), name="x"),
            L3.SimpleRNN(4, stateful=True, return_sequences=True, name="rnn"),
            L3.LSTM(3, stateful=True, name="lstm"),
        ),
        floats(3, 6, 2),
        resets=("none", "none", "zeros", "none", "values", "none"),
        notes="stateful SimpleRNN -> LSTM; reset_state() before batch 2, Variable.assign(values) before batch 4",
    )


# ------------------------------------------------------------------------------------------------- Keras 2 models


L2 = tf_keras.layers


def seq2(inputs: Any, *layers: Any, name: str = "model") -> Any:
    return tf_keras.Sequential([inputs, *layers], name=name)


def keras2_cases() -> None:
    k2 = ("k2h5",)
    case(
        "k2_srnn_seq",
        lambda: seq2(tf_keras.Input((6, 3), name="x"), L2.SimpleRNN(4, return_sequences=True, name="rnn")),
        floats(2, 6, 3),
        formats=k2,
        notes="Keras 2 SimpleRNN sequence",
        stream=True,
    )
    case(
        "k2_srnn_swish_backwards",
        lambda: seq2(
            tf_keras.Input((6, 3), name="x"), L2.SimpleRNN(4, activation="swish", go_backwards=True, name="rnn")
        ),
        floats(2, 6, 3),
        formats=k2,
        notes="Keras 2 SimpleRNN activation=swish (stored 'swish'), go_backwards",
    )
    case(
        "k2_gru_last",
        lambda: seq2(tf_keras.Input((7, 3), name="x"), L2.GRU(4, name="gru")),
        floats(3, 7, 3),
        formats=k2,
        notes="Keras 2 GRU (reset_after=True default), last output",
    )
    case(
        "k2_gru_hard_sigmoid_seq",
        lambda: seq2(
            tf_keras.Input((7, 3), name="x"),
            L2.GRU(4, reset_after=False, recurrent_activation="hard_sigmoid", return_sequences=True, name="gru"),
        ),
        floats(2, 7, 3),
        formats=k2,
        stream=True,
        notes="Keras 2 GRU reset_after=False, recurrent_activation=hard_sigmoid (Keras 2: 0.2x+0.5)",
    )
    case(
        "k2_lstm_hard_sigmoid_seq",
        lambda: seq2(
            tf_keras.Input((6, 3), name="x"),
            L2.LSTM(4, recurrent_activation="hard_sigmoid", return_sequences=True, name="lstm"),
        ),
        floats(2, 6, 3),
        formats=k2,
        stream=True,
        notes="Keras 2 LSTM recurrent_activation=hard_sigmoid",
    )
    case(
        "k2_lstm_time_major_seq",
        lambda: seq2(
            tf_keras.Input((None, 3), name="x"), L2.LSTM(4, time_major=True, return_sequences=True, name="lstm")
        ),
        time_major_floats(6, 2, 3),
        formats=k2,
        notes="Keras 2 LSTM time_major=True: x (T, B, F), y (T, B, U)",
        stream=True,
    )
    case(
        "k2_gru_time_major_last",
        lambda: _k2_time_major_functional(),
        time_major_floats(7, 3, 2),
        formats=k2,
        notes="Keras 2 Functional GRU time_major=True, return_state (y (B, U), h (B, U))",
        state_outputs={"gru/h": 1},
    )
    case(
        "k2_bidi_concat_masked",
        lambda: seq2(
            tf_keras.Input((8,), name="x"),
            L2.Embedding(10, 3, mask_zero=True, name="emb"),
            L2.Bidirectional(L2.LSTM(3, return_sequences=True), name="bi"),
        ),
        tokens(PADDED),
        formats=k2,
        notes="Keras 2 Embedding(mask_zero) -> Bidirectional(LSTM) concat sequence",
    )
    case(
        "k2_bidi_sum_last",
        lambda: seq2(tf_keras.Input((6, 3), name="x"), L2.Bidirectional(L2.GRU(4), merge_mode="sum", name="bi")),
        floats(2, 6, 3),
        formats=k2,
        notes="Keras 2 Bidirectional(GRU) sum, last output",
    )
    case(
        "k2_emb_mask_gru_func",
        lambda: _k2_embedding_functional(),
        tokens(PADDED),
        formats=k2,
        stream=True,
        notes="Keras 2 Functional Embedding(mask_zero) -> GRU sequence (implicit mask) -> Dense",
    )
    case(
        "k2_masking_srnn_last",
        lambda: seq2(tf_keras.Input((7, 3), name="x"), L2.Masking(0.5, name="masking"), L2.SimpleRNN(4, name="rnn")),
        masked_floats(3, 7, 3, 0.5),
        formats=k2,
        notes="Keras 2 Masking -> SimpleRNN last output",
    )
    case(
        "k2_lstm_initial_state",
        lambda: _k2_initial_state_functional(),
        with_states(floats(2, 6, 3), {"h0": 4, "c0": 4}),
        formats=k2,
        notes="Keras 2 Functional LSTM(x, initial_state=[h0, c0]) (extra inbound tensors) -> TimeDistributed(Dense)",
    )
    case(
        "k2_stateful_lstm",
        lambda: seq2(
            tf_keras.Input(batch_shape=(2, 5, 3), name="x"),
            L2.LSTM(4, stateful=True, return_sequences=True, name="lstm"),
        ),
        floats(2, 5, 3),
        formats=k2,
        resets=("none", "none", "values", "none", "zeros", "none"),
        notes="Keras 2 stateful LSTM; reset_states(states=values) before batch 2, reset_states() before batch 4",
    )
    case(
        "k2_stateful_stack",
        lambda: seq2(
            tf_keras.Input(batch_shape=(2, 6, 2), name="x"),
            L2.GRU(4, stateful=True, return_sequences=True, name="gru"),
            L2.SimpleRNN(3, stateful=True, name="rnn"),
        ),
        floats(2, 6, 2),
        formats=k2,
        resets=("none", "zeros", "none", "values"),
        notes="Keras 2 stateful GRU -> SimpleRNN; model.reset_states() before batch 1, per-layer "
        "reset_states(states=values) before batch 3",
    )


def _k2_time_major_functional() -> Any:
    x = tf_keras.Input((None, 2), name="x")
    return tf_keras.Model(x, L2.GRU(4, time_major=True, return_state=True, name="gru")(x), name="model")


def _k2_embedding_functional() -> Any:
    x = tf_keras.Input((8,), dtype="int32", name="x")
    h = L2.GRU(4, return_sequences=True, name="gru")(L2.Embedding(10, 3, mask_zero=True, name="emb")(x))
    return tf_keras.Model(x, L2.Dense(2, name="dense")(h), name="model")


def _k2_initial_state_functional() -> Any:
    x = tf_keras.Input((6, 3), name="x")
    h0, c0 = tf_keras.Input((4,), name="h0"), tf_keras.Input((4,), name="c0")
    h = L2.LSTM(4, return_sequences=True, name="lstm")(x, initial_state=[h0, c0])
    return tf_keras.Model([x, h0, c0], L2.TimeDistributed(L2.Dense(2), name="td")(h), name="model")


# --------------------------------------------------------------------------------------------------- running Keras


def randomize_weights(model: Any, rng: np.random.Generator) -> None:
    """Overwrite every trainable weight with normal * WEIGHT_SCALE (stateful state variables are not trainable)."""
    for variable in model.trainable_weights:
        shape = tuple(int(d) for d in variable.shape)
        variable.assign(rng.normal(scale=WEIGHT_SCALE, size=shape).astype(np.float32))


def model_input_names(model: Any) -> list[str]:
    return [t.name.split(":")[0] for t in model.inputs]


def model_output_names(model: Any) -> list[str]:
    """Informational names of the outputs: `layer` or `layer:k` for output k > 0 of a multi-output layer."""
    config = model.get_config()
    if "output_layers" not in config:  # Sequential: the last layer's outputs
        last = model.layers[-1].name
        return [last if k == 0 else f"{last}:{k}" for k in range(len(model.outputs))]
    refs = config["output_layers"]
    refs = [refs] if refs and isinstance(refs[0], str) else refs
    return [name if index == 0 else f"{name}:{index}" for name, _, index in refs]


def as_list(outputs: Any) -> list[np.ndarray]:
    values = outputs if isinstance(outputs, list | tuple) else [outputs]
    return [to_numpy(v) for v in values]


def run_keras(model: Any, feeds: Feeds, mask: np.ndarray | None) -> list[np.ndarray]:
    ordered = [feeds[name] for name in model_input_names(model)]
    inputs = ordered[0] if len(ordered) == 1 else ordered
    if mask is None:
        return as_list(model.predict(inputs, verbose=0))
    return as_list(model(inputs, mask=mask, training=False))


def recurrent_layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if getattr(layer, "stateful", False)]


def state_names(model: Any) -> list[str]:
    """Names of the stateful states, as `rnnserve.spec.layer_states` names them."""
    names = []
    for layer in recurrent_layers(model):
        kinds = ("h", "c") if type(layer).__name__ == "LSTM" else ("h",)
        names += [f"{layer.name}/{k}" for k in kinds]
    return names


def to_numpy(value: Any) -> np.ndarray:
    """A Keras 3 tensor/Variable or a TensorFlow Variable as a numpy array."""
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("tensorflow"):
        return np.asarray(value.numpy())
    return np.asarray(keras.ops.convert_to_numpy(value))


def read_states(model: Any) -> list[np.ndarray]:
    return [to_numpy(s) for layer in recurrent_layers(model) for s in layer.states]


def reset(model: Any, kind: str, keras2: bool, rng: np.random.Generator, stack: bool) -> list[np.ndarray]:
    """Apply one reset; return the values a "values" reset set (else [])."""
    if kind == "none":
        return []
    if kind == "zeros":
        if keras2 and stack:
            model.reset_states()  # Keras 2 only; Keras 3 has no model.reset_states()
        else:
            for layer in recurrent_layers(model):
                layer.reset_states() if keras2 else layer.reset_state()
        return []
    values = [rng.normal(scale=0.5, size=tuple(s.shape)).astype(np.float32) for s in read_states(model)]
    pos = 0
    for layer in recurrent_layers(model):
        mine = values[pos : pos + len(layer.states)]
        pos += len(layer.states)
        if keras2:
            layer.reset_states(states=mine if len(mine) > 1 else mine[0])
        else:
            for variable, value in zip(layer.states, mine, strict=True):
                variable.assign(value)
    if not all(np.array_equal(a, b) for a, b in zip(read_states(model), values, strict=True)):
        raise RuntimeError("setting stateful states did not take")
    return values


def effective_mask(model: Any, feeds: Feeds, explicit: np.ndarray | None) -> np.ndarray | None:
    """The (batch, time) mask the recurrent layers see: Keras' own `compute_mask` of the Embedding(mask_zero) or
    Masking layer that reads the model input, ANDed with an explicit mask. None when nothing masks."""
    derived = None
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Masking" or (kind == "Embedding" and layer.mask_zero):
            derived = to_numpy(layer.compute_mask(feeds["x"])).astype(bool)
            break
    if derived is None or explicit is None:
        return derived if explicit is None else explicit
    return derived & explicit


# -------------------------------------------------------------------------------------------------- writing cases


def save_model(model: Any, c: Case) -> list[str]:
    files = []
    for fmt in c.formats:
        path = FIXTURES / f"{c.id}{FORMAT_SUFFIX[fmt]}"
        model.save(path)
        files.append(path.name)
    return files


def check_reload(model_file: Path, feeds: Feeds, mask: np.ndarray | None, expected: list[np.ndarray]) -> None:
    """The .keras file alone must reproduce the numbers (the weights and config really are in it)."""
    reloaded = keras.saving.load_model(model_file, compile=False)
    got = run_keras(reloaded, feeds, mask)
    for k, (a, b) in enumerate(zip(got, expected, strict=True)):
        if not np.allclose(a, b, atol=1e-6, rtol=1e-6):
            raise RuntimeError(f"{model_file.name}: output {k} differs after reloading")


def save_npz(case_id: str, arrays: dict[str, np.ndarray]) -> None:
    np.savez_compressed(FIXTURES / f"{case_id}.npz", **arrays)  # type: ignore[arg-type]  # numpy's **kwds stub


def write_single(c: Case, model: Any, rng: np.random.Generator) -> dict[str, Any]:
    feeds = c.feeds(rng)
    mask = c.mask(rng, feeds) if c.mask is not None else None
    outputs = run_keras(model, feeds, mask)
    arrays = {f"in_{name}": value for name, value in feeds.items()}
    arrays |= {f"out_{k}": value for k, value in enumerate(outputs)}
    if mask is not None:
        arrays["mask"] = mask
    valid = effective_mask(model, feeds, mask)
    if valid is not None:
        arrays["valid"] = valid
    save_npz(c.id, arrays)
    if "keras" in c.formats:
        check_reload(FIXTURES / f"{c.id}.keras", feeds, mask, outputs)
    return {
        "inputs": _describe(feeds, model),
        "mask": mask is not None,
        "output_shapes": [list(o.shape) for o in outputs],
    }


def write_stateful(c: Case, model: Any, rng: np.random.Generator) -> dict[str, Any]:
    arrays: dict[str, np.ndarray] = {}
    batches = []
    stack = len(recurrent_layers(model)) > 1
    feeds: Feeds = {}
    for j, kind in enumerate(c.resets):
        values = reset(model, kind, c.keras2, rng, stack)
        feeds = c.feeds(rng)
        outputs = run_keras(model, feeds, None)
        arrays |= {f"b{j}_in_{name}": value for name, value in feeds.items()}
        arrays |= {f"b{j}_out_{k}": value for k, value in enumerate(outputs)}
        arrays |= {f"b{j}_state_{i}": value for i, value in enumerate(read_states(model))}
        arrays |= {f"b{j}_reset_{i}": value for i, value in enumerate(values)}
        batches.append({"reset": kind})
    save_npz(c.id, arrays)
    return {
        "inputs": _describe(feeds, model),
        "mask": False,
        "output_shapes": [list(arrays[f"b0_out_{k}"].shape) for k in range(len(model.outputs))],
        "stateful": {"states": state_names(model), "batches": batches},
    }


def _describe(feeds: Feeds, model: Any) -> list[dict[str, Any]]:
    return [
        {"name": name, "dtype": str(feeds[name].dtype), "shape": list(feeds[name].shape)}
        for name in model_input_names(model)
    ]


def build_case(c: Case) -> list[dict[str, Any]]:
    seed = zlib.crc32(c.id.encode())
    (tf_keras.utils.set_random_seed if c.keras2 else keras.utils.set_random_seed)(seed)
    rng = np.random.default_rng(seed)
    model = c.build()
    randomize_weights(model, rng)
    for layer in recurrent_layers(model):
        layer.reset_states() if c.keras2 else layer.reset_state()
    files = save_model(model, c)
    details = write_stateful(c, model, rng) if c.resets else write_single(c, model, rng)
    common = {
        "data": f"{c.id}.npz",
        "keras_version": tf_keras.__version__ if c.keras2 else keras.__version__,
        "model": type(model).__name__,
        "outputs": model_output_names(model),
        "state_outputs": c.state_outputs,
        "stream": c.stream,
        "notes": c.notes,
        **details,
    }
    return [{"id": name, "file": name, "format": fmt, **common} for fmt, name in zip(c.formats, files, strict=True)]


def register_all() -> None:
    simple_rnn_cases()
    masking_cases()
    gated_cases()
    stacked_cases()
    bidirectional_cases()
    stateful3_cases()
    keras2_cases()


def clean() -> None:
    FIXTURES.mkdir(exist_ok=True)
    for path in FIXTURES.iterdir():
        if path.suffix in {".keras", ".h5", ".npz", ".json"}:
            path.unlink()


def summarize(entries: list[dict[str, Any]]) -> None:
    by_format: dict[str, int] = {}
    for entry in entries:
        by_format[entry["format"]] = by_format.get(entry["format"], 0) + 1
    size = sum(p.stat().st_size for p in FIXTURES.iterdir())
    print(f"{len(CASES)} models, {len(entries)} model files {by_format}, {size / 1e6:.2f} MB in {FIXTURES}")
    print(
        f"stateful: {sum(1 for e in entries if 'stateful' in e)}, streamable: {sum(1 for e in entries if e['stream'])}"
    )
    for line in SKIPPED:
        print(f"skipped: {line}")


def main() -> None:
    register_all()
    clean()
    entries: list[dict[str, Any]] = []
    for c in CASES:
        entries += build_case(c)
        print(f"  {c.id}: {', '.join(c.formats)}", flush=True)
    index = {"generator": "tests/parity/make_fixtures.py", "skipped": SKIPPED, "cases": entries}
    (FIXTURES / "cases.json").write_text(json.dumps(index, indent=1) + "\n")
    summarize(entries)


if __name__ == "__main__":
    main()
