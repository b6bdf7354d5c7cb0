"""The Monte-Carlo dropout graph (`to_onnx(spec, dropout=True)`, `OrtModel.run_with_masks`) against the numpy
reference (`rnnserve.mc_dropout.run_samples`) with the same masks: every layer and configuration that MC dropout
supports, in both loop forms (Scan, unrolled) and the unrolled one-step graph of a stream, within
|d| <= 1e-5 + 1e-5 |y|. The masks are drawn once by the reference and passed explicitly; the onnxruntime path
drawing them itself from the same seed must draw the same ones."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from export_specs import (
    CELL_IDS,
    CELLS,
    LOOP_OPS,
    assert_close,
    bidirectional_layer,
    dense_layer,
    holey_mask,
    model,
    one_layer,
    op_types,
    rnn_layer,
)
from graph_provider import runtime_options

from rnnserve.errors import InvalidInput
from rnnserve.export.convert import to_onnx
from rnnserve.layers.model import ReferenceModel
from rnnserve.mc_dropout import DropoutRequest, Samples, run_samples, run_samples_ort
from rnnserve.runtime.ort_model import OrtModel, RuntimeOptions
from rnnserve.runtime.runner import MASK_INPUT
from rnnserve.spec import InputSpec, LayerSpec, ModelSpec, TensorRef

F, U, T, B = 3, 4, 6, 4
RATES = [(0.3, 0.0), (0.0, 0.4), (0.3, 0.4)]
RATE_IDS = ["input", "recurrent", "both"]
FORMS = {"scan": False, "unrolled": True}


def _x(rng: np.random.Generator, batch: int = B, steps: int = T, features: int = F) -> np.ndarray:
    return rng.normal(0.0, 1.0, (batch, steps, features)).astype(np.float32)


def _states(rng: np.random.Generator, widths: list[int], batch: int = B) -> list[np.ndarray]:
    return [rng.normal(0.0, 0.5, (batch, w)).astype(np.float32) for w in widths]


def compare(
    spec: ModelSpec,
    feeds: dict[str, np.ndarray],
    *,
    states: list[np.ndarray] | None = None,
    mask: np.ndarray | None = None,
    runner: OrtModel | None = None,
    samples: int = 3,
    seed: int = 5,
) -> tuple[Samples, Samples]:
    """onnxruntime equals the reference with the reference's masks, and draws the same masks from the same seed."""
    ort_model = runner or OrtModel(spec, runtime_options())
    request = DropoutRequest(samples, seed)
    want = run_samples(ReferenceModel(spec), feeds, states, mask, request)
    given = run_samples_ort(ort_model, feeds, states, mask, DropoutRequest(samples, seed + 1), masks=want.masks)
    drawn = run_samples_ort(ort_model, feeds, states, mask, request)
    assert want.masks, "the model drops nothing"
    assert list(drawn.masks) == list(want.masks)
    for name, value in want.masks.items():
        assert np.array_equal(drawn.masks[name], value), name
    for got in (given, drawn):
        assert list(got.outputs) == list(want.outputs)
        for name, value in want.outputs.items():
            assert_close(got.outputs[name], value, name)
        assert len(got.states) == len(want.states)
        for k, (a, e) in enumerate(zip(got.states, want.states, strict=True)):
            assert_close(a, e, f"state {k}")
    return want, drawn


# ---- one recurrent layer --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("class_name", "extra"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize(("dropout", "recurrent_dropout"), RATES, ids=RATE_IDS)
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("form", list(FORMS))
def test_each_cell_with_each_rate_in_both_forms(class_name, extra, dropout, recurrent_dropout, go_backwards, form):
    rng = np.random.default_rng(1)
    layer = rnn_layer(
        class_name,
        "rnn",
        "x",
        F,
        U,
        rng,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        go_backwards=go_backwards,
        return_sequences=True,
        return_state=True,
        unroll=FORMS[form],
        **extra,
    )
    spec = one_layer(layer, F, T)
    states = _states(rng, [U] * (2 if class_name == "LSTM" else 1))
    want, _ = compare(spec, {"x": _x(rng)}, states=states, mask=holey_mask(B, T))
    assert not np.allclose(want.outputs["y"][0], want.outputs["y"][1])  # the samples differ


@pytest.mark.parametrize(("class_name", "extra"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_last_output_and_zero_output_for_mask(class_name, extra, zero_output_for_mask):
    rng = np.random.default_rng(2)
    layer = rnn_layer(
        class_name,
        "rnn",
        "x",
        F,
        U,
        rng,
        dropout=0.25,
        recurrent_dropout=0.35,
        zero_output_for_mask=zero_output_for_mask,
        return_sequences=zero_output_for_mask,
        **extra,
    )
    compare(one_layer(layer, F), {"x": _x(rng)}, mask=holey_mask(B, T))


@pytest.mark.parametrize(
    "extra",
    [
        {"use_bias": False},
        {"recurrent_activation": "softmax"},  # applied gate by gate
        {"activation": "relu", "recurrent_activation": "hard_sigmoid"},
    ],
    ids=["no_bias", "softmax_gates", "relu"],
)
@pytest.mark.parametrize("class_name", ["GRU", "LSTM"])
def test_cell_arguments(class_name, extra):
    rng = np.random.default_rng(3)
    layer = rnn_layer(class_name, "rnn", "x", F, U, rng, dropout=0.2, recurrent_dropout=0.3, return_sequences=True,
                      **extra)  # fmt: skip
    compare(one_layer(layer, F), {"x": _x(rng)})


@pytest.mark.parametrize(("class_name", "extra"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("form", list(FORMS))
def test_time_major_layers(class_name, extra, form):
    rng = np.random.default_rng(4)
    layer = rnn_layer(
        class_name,
        "rnn",
        "x",
        F,
        U,
        rng,
        dropout=0.3,
        recurrent_dropout=0.2,
        time_major=True,
        return_sequences=True,
        return_state=True,
        unroll=FORMS[form],
        **extra,
    )
    drop = LayerSpec("Dropout", "drop", {"name": "drop", "rate": 0.4, "noise_shape": None, "seed": None}, {},
                     (TensorRef("rnn"),))  # fmt: skip
    spec = model([InputSpec("x", (T, None, F))], [layer, drop], {"y": TensorRef("drop"), "h": TensorRef("rnn", 1)})
    x = rng.normal(0.0, 1.0, (T, B, F)).astype(np.float32)
    want, _ = compare(spec, {"x": x}, mask=holey_mask(B, T))
    assert want.masks["drop/mask"].shape == (T, 3 * B, U)  # time first, as the tensor it drops


# ---- Keras masks, Dropout layers, stacks ------------------------------------------------------------------------


def _dropout(name: str, source: str, rate: float, noise_shape: tuple[int | None, ...] | None = None) -> LayerSpec:
    config = {"name": name, "rate": rate, "noise_shape": None if noise_shape is None else list(noise_shape)}
    return LayerSpec("Dropout", name, {**config, "seed": None}, {}, (TensorRef(source),))


@pytest.mark.parametrize("form", list(FORMS))
def test_embedding_mask_zero_and_masking(form):
    rng = np.random.default_rng(5)
    vocab = 9
    emb = LayerSpec(
        "Embedding",
        "emb",
        {"name": "emb", "input_dim": vocab, "output_dim": F, "mask_zero": True},
        {"embeddings": rng.normal(0, 0.6, (vocab, F)).astype(np.float32)},
        (TensorRef("tokens"),),
    )
    unroll = FORMS[form]
    layers = [
        emb,
        _dropout("drop", "emb", 0.3),
        rnn_layer("GRU", "gru", "drop", F, U, rng, dropout=0.2, recurrent_dropout=0.3, return_sequences=True,
                  unroll=unroll),
        rnn_layer("SimpleRNN", "rnn", "gru", U, 2, rng, recurrent_dropout=0.4, go_backwards=True, unroll=unroll),
    ]  # fmt: skip
    spec = model([InputSpec("tokens", (None, T), "int64")], layers, {"y": TensorRef("rnn")})
    tokens = rng.integers(1, vocab, (B, T)).astype(np.int64)
    tokens[1, 2], tokens[2, -2:], tokens[3, :] = 0, 0, 0  # padding in the middle, at the end, a row all padding
    compare(spec, {"tokens": tokens})

    masking = LayerSpec("Masking", "masking", {"name": "masking", "mask_value": -1.0}, {}, (TensorRef("x"),))
    layers = [masking, rnn_layer("LSTM", "lstm", "masking", F, U, rng, dropout=0.1, recurrent_dropout=0.5,
                                 return_sequences=True, unroll=unroll)]  # fmt: skip
    spec = model([InputSpec("x", (None, T, F))], layers, {"y": TensorRef("lstm")})
    x = _x(rng)
    x[1, 3], x[2, 4:] = -1.0, -1.0
    compare(spec, {"x": x}, mask=holey_mask(B, T))


@pytest.mark.parametrize("form", list(FORMS))
def test_a_stack_with_dropout_layers_noise_shape_and_dense(form):
    rng = np.random.default_rng(6)
    unroll = FORMS[form]
    layers = [
        rnn_layer("GRU", "gru", "x", F, U, rng, dropout=0.3, recurrent_dropout=0.2, return_sequences=True,
                  unroll=unroll),
        _dropout("drop", "gru", 0.25, (None, 1, U)),  # one mask a sequence, the same at every step
        rnn_layer("LSTM", "lstm", "drop", U, 3, rng, dropout=0.2, return_sequences=True, unroll=unroll),
        _dropout("drop_seq", "lstm", 0.1),
        rnn_layer("SimpleRNN", "rnn", "drop_seq", 3, 2, rng, dropout=0.1, recurrent_dropout=0.3, unroll=unroll),
        _dropout("drop_last", "rnn", 0.5),  # on a (batch, units) tensor
        dense_layer("dense", "drop_last", 2, 3, rng, activation="tanh"),
    ]  # fmt: skip
    spec = model([InputSpec("x", (None, T, F))], layers, {"y": TensorRef("dense"), "seq": TensorRef("drop_seq")})
    states = _states(rng, [U, 3, 3, 2])
    want, _ = compare(spec, {"x": _x(rng)}, states=states, mask=holey_mask(B, T), samples=4)
    assert want.masks["drop/mask"].shape == (4 * B, 1, U)
    assert want.masks["drop_last/mask"].shape == (4 * B, 2)
    assert want.masks["lstm/dropout"].shape == (1, 4 * B, U)  # no recurrent_dropout: one mask for the gates


def test_initial_state_inputs():
    rng = np.random.default_rng(7)
    layer = rnn_layer(
        "LSTM", "lstm", "x", F, U, rng, initial_state=(TensorRef("h0"), TensorRef("c0")), dropout=0.2,
        recurrent_dropout=0.3, return_sequences=True,
    )  # fmt: skip
    inputs = [InputSpec("x", (None, T, F)), InputSpec("h0", (None, U)), InputSpec("c0", (None, U))]
    spec = model(inputs, [layer], {"y": TensorRef("lstm")})
    h0, c0 = _states(rng, [U, U])
    compare(spec, {"x": _x(rng), "h0": h0, "c0": c0})


def test_rnn_around_one_cell_is_its_layer():
    from rnnserve.modeling import clear_session, keras_model, layer_input, layer_rnn, rnn_cell_gru, set_random_seed

    clear_session()
    set_random_seed(3)
    x = layer_input(shape=(T, F), name="x")
    y = layer_rnn(x, rnn_cell_gru(U, dropout=0.3, recurrent_dropout=0.2), return_sequences=True, name="rnn")
    spec = keras_model(x, y).to_spec()
    want, _ = compare(spec, {"x": _x(np.random.default_rng(8))})
    assert want.masks["rnn/dropout"].shape == (3, 3 * B, F)


# ---- sessions: states in, every graph form a stream uses ----------------------------------------------------------


@pytest.mark.parametrize(("class_name", "extra"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("form", list(FORMS))
def test_stateful_steps_of_every_length(class_name, extra, form):
    """A session's what-if steps: the states carried so far, chunks of 1 step (the unrolled step graph), of the
    model's own T and of another length (a Scan graph when the model is unrolled for T)."""
    rng = np.random.default_rng(9)
    layers = [
        rnn_layer(class_name, "a", "x", F, U, rng, dropout=0.3, recurrent_dropout=0.3, return_sequences=True,
                  stateful=True, unroll=FORMS[form], **extra),
        rnn_layer("GRU", "b", "a", U, 2, rng, recurrent_dropout=0.5, return_sequences=True, stateful=True,
                  unroll=FORMS[form]),
    ]  # fmt: skip
    spec = model([InputSpec("x", (B, T, F))], layers, {"y": TensorRef("b")})
    runner = OrtModel(spec, runtime_options())
    states = _states(rng, [U] * (2 if class_name == "LSTM" else 1) + [2])
    for steps in (1, T, 4):
        compare(spec, {"x": _x(rng, steps=steps)}, states=states, runner=runner, seed=steps)
    built = runner._dropout_graphs  # noqa: SLF001 - which dropout graphs the lengths asked for
    assert set(built) == ({1, None, 0} if form == "unrolled" else {1, None})


def test_both_forms_of_the_exported_graph():
    rng = np.random.default_rng(10)
    layer = rnn_layer("GRU", "gru", "x", F, U, rng, dropout=0.3, recurrent_dropout=0.2, return_sequences=True)
    spec = one_layer(layer, F, T)
    scan, _ = to_onnx(spec, unroll=False, dropout=True)
    unrolled, _ = to_onnx(spec, unroll=True, dropout=True)
    assert LOOP_OPS & set(op_types(scan.graph)) and not LOOP_OPS & set(op_types(unrolled.graph))
    for proto in (scan, unrolled):
        inputs = {i.name: i for i in proto.graph.input}
        assert list(inputs) == ["x", MASK_INPUT, "gru/h", "gru/dropout", "gru/recurrent_dropout"]
        dims = [[d.dim_param or d.dim_value for d in inputs[n].type.tensor_type.shape.dim] for n in list(inputs)[3:]]
        assert dims == [[3, "batch", F], [3, "batch", U]]


# ---- what plain graphs do not pay, what is refused ---------------------------------------------------------------


def test_the_default_graph_has_no_mask_inputs_and_plain_runs_build_no_dropout_graph():
    rng = np.random.default_rng(11)
    layers = [
        rnn_layer("LSTM", "lstm", "x", F, U, rng, dropout=0.3, recurrent_dropout=0.2, return_sequences=True),
        _dropout("drop", "lstm", 0.5),
    ]
    spec = model([InputSpec("x", (None, None, F))], layers, {"y": TensorRef("drop")})
    plain, _ = to_onnx(spec)
    assert [i.name for i in plain.graph.input] == ["x", MASK_INPUT, "lstm/h", "lstm/c"]
    runner = OrtModel(spec, runtime_options())
    for steps in (1, T):
        runner.run({"x": _x(rng, steps=steps)})
    assert runner._dropout_graphs == {}  # noqa: SLF001
    run_samples_ort(runner, {"x": _x(rng)}, None, None, DropoutRequest(2, 0))
    assert list(runner._dropout_graphs) == [None]  # noqa: SLF001


def test_a_model_without_dropout_gives_identical_samples_and_builds_no_graph():
    rng = np.random.default_rng(12)
    layer = rnn_layer("GRU", "gru", "x", F, U, rng, return_sequences=True)
    spec = one_layer(layer, F)
    runner = OrtModel(spec, runtime_options())
    x = _x(rng)
    samples = run_samples_ort(runner, {"x": x}, None, holey_mask(B, T), DropoutRequest(5, 1))
    plain = runner.run({"x": x}, mask=holey_mask(B, T))
    assert samples.masks == {} and runner._dropout_graphs == {}  # noqa: SLF001
    assert samples.outputs["y"].shape == (5, B, T, U)
    assert all(np.array_equal(samples.outputs["y"][n], plain.outputs["y"]) for n in range(5))


def _refused(spec: ModelSpec, x: np.ndarray) -> None:
    for run in (
        lambda: run_samples(ReferenceModel(spec), {"x": x}, None, None, DropoutRequest(2, 0)),
        lambda: run_samples_ort(OrtModel(spec, RuntimeOptions()), {"x": x}, None, None, DropoutRequest(2, 0)),
        lambda: to_onnx(spec, dropout=True),
    ):
        with pytest.raises(InvalidInput, match="Monte-Carlo dropout supports"):
            run()


def test_time_distributed_dropout_is_refused_on_both_paths():
    rng = np.random.default_rng(13)
    td = LayerSpec(
        "TimeDistributed",
        "td",
        {"name": "td", "layer": {"class_name": "Dropout", "config": {"rate": 0.2, "noise_shape": None, "seed": None}}},
        {},
        (TensorRef("x"),),
    )
    _refused(one_layer(td, F), _x(rng))


# ---- Bidirectional ------------------------------------------------------------------------------------------------

MERGE_MODES = ["concat", "sum", "mul", "ave", None]


def _mask_names(prefixes: list[str], dropout: float, recurrent_dropout: float) -> list[str]:
    kinds = ["dropout"] * bool(dropout) + ["recurrent_dropout"] * bool(recurrent_dropout)
    return [f"{p}/{k}" for p in prefixes for k in kinds]


@pytest.mark.parametrize(("class_name", "extra"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize(("dropout", "recurrent_dropout"), RATES, ids=RATE_IDS)
@pytest.mark.parametrize("form", list(FORMS))
def test_bidirectional_of_each_cell_with_each_rate(class_name, extra, dropout, recurrent_dropout, form):
    """Each direction is its own copy of the layer with its own masks: `bi/forward/...`, `bi/backward/...`, drawn
    independently (Keras does, both versions, unless the layer has a seed: see the seeded test)."""
    rng = np.random.default_rng(20)
    layer = bidirectional_layer(class_name, "bi", "x", F, U, rng, "concat", dropout=dropout,
                                recurrent_dropout=recurrent_dropout, return_sequences=True, return_state=True,
                                unroll=FORMS[form], **extra)  # fmt: skip
    spec = one_layer(layer, F, T)
    states = _states(rng, [U] * (4 if class_name == "LSTM" else 2))
    want, _ = compare(spec, {"x": _x(rng)}, states=states, mask=holey_mask(B, T))
    assert list(want.masks) == _mask_names(["bi/forward", "bi/backward"], dropout, recurrent_dropout)
    gates = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}[class_name]
    for direction in ("forward", "backward"):
        if dropout:
            assert want.masks[f"bi/{direction}/dropout"].shape == (gates if recurrent_dropout else 1, 3 * B, F)
        if recurrent_dropout:
            assert want.masks[f"bi/{direction}/recurrent_dropout"].shape == (gates, 3 * B, U)
    for name in want.masks:
        if "/forward/" in name:
            assert not np.array_equal(want.masks[name], want.masks[name.replace("/forward/", "/backward/")])
    assert not np.allclose(want.outputs["y"][0], want.outputs["y"][1])  # the samples differ


@pytest.mark.parametrize("merge_mode", MERGE_MODES, ids=[str(m) for m in MERGE_MODES])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
def test_bidirectional_merge_modes_and_outputs(merge_mode, return_sequences, go_backwards):
    """Every merge mode, the last output or the sequence (the backward one flipped back), an inner layer that reads
    backwards (its backward copy then reads forwards), Keras masks."""
    rng = np.random.default_rng(21)
    layer = bidirectional_layer("LSTM", "bi", "x", F, U, rng, merge_mode, dropout=0.3, recurrent_dropout=0.25,
                                return_sequences=return_sequences, go_backwards=go_backwards)  # fmt: skip
    compare(one_layer(layer, F), {"x": _x(rng)}, mask=holey_mask(B, T))


@pytest.mark.parametrize("form", list(FORMS))
def test_bidirectionals_in_a_model_with_dropout_layers_and_initial_states(form):
    rng = np.random.default_rng(22)
    unroll = FORMS[form]
    layers = [
        bidirectional_layer("GRU", "bi", "x", F, U, rng, "sum", dropout=0.2, recurrent_dropout=0.3,
                            return_sequences=True, unroll=unroll, reset_after=False),
        _dropout("drop", "bi", 0.25),
        bidirectional_layer("SimpleRNN", "bi2", "drop", U, 2, rng, "concat", dropout=0.4, unroll=unroll),
        _dropout("drop_last", "bi2", 0.1),
    ]  # fmt: skip
    spec = model([InputSpec("x", (None, T, F))], layers, {"y": TensorRef("drop_last"), "seq": TensorRef("drop")})
    states = _states(rng, [U, U, 2, 2])
    want, _ = compare(spec, {"x": _x(rng)}, states=states, mask=holey_mask(B, T), samples=4)
    assert list(want.masks) == [
        "bi/forward/dropout", "bi/forward/recurrent_dropout", "bi/backward/dropout", "bi/backward/recurrent_dropout",
        "bi2/forward/dropout", "bi2/backward/dropout", "drop/mask", "drop_last/mask",
    ]  # fmt: skip


def test_a_seeded_bidirectional_draws_its_backward_masks_as_its_forward_ones():
    """Keras 3 builds both directions from one config, seed included: two generators of the same seed, drawing the
    same masks. An unseeded one draws them apart. Explicit masks are taken as given, alike or not."""
    rng = np.random.default_rng(23)
    layer = bidirectional_layer("GRU", "bi", "x", F, U, rng, "sum", dropout=0.3, recurrent_dropout=0.2, seed=7,
                                return_sequences=True)  # fmt: skip
    spec = one_layer(layer, F)
    x = _x(rng)
    want, _ = compare(spec, {"x": x})
    for kind in ("dropout", "recurrent_dropout"):
        assert np.array_equal(want.masks[f"bi/forward/{kind}"], want.masks[f"bi/backward/{kind}"])
    given = dict(want.masks)
    given["bi/backward/dropout"] = want.masks["bi/backward/dropout"][:, ::-1].copy()  # other rows' masks
    expected = run_samples(ReferenceModel(spec), {"x": x}, None, None, DropoutRequest(3, 0), masks=given)
    got = run_samples_ort(OrtModel(spec, runtime_options()), {"x": x}, None, None, DropoutRequest(3, 0), masks=given)
    assert_close(got.outputs["y"], expected.outputs["y"], "y")
    assert not np.allclose(expected.outputs["y"], want.outputs["y"])


# ---- stacked cells: RNN(StackedRNNCells), also in a Bidirectional -------------------------------------------------


def _randomized(spec: ModelSpec, rng: np.random.Generator) -> ModelSpec:
    """`spec` with random weights (biases too) of the same shapes."""
    layers = tuple(
        replace(
            layer, weights={k: rng.normal(0.0, 0.6, np.shape(v)).astype(np.float32) for k, v in layer.weights.items()}
        )
        for layer in spec.layers
    )
    return replace(spec, layers=layers)


def _stacked_spec(seed: int, *, bidirectional: bool, merge_mode: str | None = "concat", **rnn: Any) -> ModelSpec:
    """x -> RNN([GRU(both rates), LSTM(dropout), SimpleRNN(none), GRU reset_before(both), LSTM(recurrent)]),
    plain or in a Bidirectional."""
    from rnnserve.modeling import (
        bidirectional as bidirectional_of,
    )
    from rnnserve.modeling import (
        clear_session,
        keras_model,
        layer_input,
        layer_rnn,
        rnn_cell_gru,
        rnn_cell_lstm,
        rnn_cell_simple,
        set_random_seed,
    )

    clear_session()
    set_random_seed(seed)
    x = layer_input(shape=(T, F), name="x")
    cells: Any = [
        rnn_cell_gru(U, dropout=0.3, recurrent_dropout=0.2),
        rnn_cell_lstm(3, dropout=0.25),
        rnn_cell_simple(2),
        rnn_cell_gru(3, reset_after=False, dropout=0.2, recurrent_dropout=0.35),
        rnn_cell_lstm(2, recurrent_dropout=0.3),
    ]
    if bidirectional:
        y = bidirectional_of(x, layer_rnn(cell=cells, **rnn), merge_mode=merge_mode, name="rnn")
    else:
        y = layer_rnn(x, cells, name="rnn", **rnn)
    return _randomized(keras_model(x, y).to_spec(), np.random.default_rng(seed))


STACK_MASKS = [
    ("gru_cell/dropout", (3, F)), ("gru_cell/recurrent_dropout", (3, U)), ("lstm_cell/dropout", (1, U)),
    ("gru_cell_1/dropout", (3, 2)), ("gru_cell_1/recurrent_dropout", (3, 3)), ("lstm_cell_1/recurrent_dropout", (4, 2)),
]  # fmt: skip
"""Each cell's masks: on its own input (the previous cell's output; per gate with a recurrent_dropout) and state."""
STACK_STATES = [U, 3, 3, 2, 3, 2, 2]


@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("form", list(FORMS))
def test_stacked_cells_each_with_its_own_masks(go_backwards, return_sequences, form):
    spec = _stacked_spec(30, bidirectional=False, return_sequences=return_sequences, go_backwards=go_backwards,
                         unroll=FORMS[form])  # fmt: skip
    rng = np.random.default_rng(31)
    want, _ = compare(spec, {"x": _x(rng)}, states=_states(rng, STACK_STATES), mask=holey_mask(B, T))
    assert [(k, v.shape) for k, v in want.masks.items()] == [(f"rnn/{n}", (g, 3 * B, w)) for n, (g, w) in STACK_MASKS]
    assert not np.allclose(want.outputs[spec.output_names[0]][0], want.outputs[spec.output_names[0]][1])


@pytest.mark.parametrize("form", list(FORMS))
def test_stacked_cells_in_steps_of_every_length(form):
    """A session's what-if steps on stacked cells: 1 step (the unrolled step graph), the model's T, another length."""
    spec = _stacked_spec(37, bidirectional=False, return_sequences=True, unroll=FORMS[form])
    rng = np.random.default_rng(38)
    runner = OrtModel(spec, runtime_options())
    states = _states(rng, STACK_STATES)
    for steps in (1, T, 4):
        compare(spec, {"x": _x(rng, steps=steps)}, states=states, runner=runner, seed=steps)
    assert {1, None} <= set(runner._dropout_graphs)  # noqa: SLF001


@pytest.mark.parametrize("merge_mode", MERGE_MODES, ids=[str(m) for m in MERGE_MODES])
@pytest.mark.parametrize("form", list(FORMS))
def test_stacked_cells_in_a_bidirectional(merge_mode, form):
    spec = _stacked_spec(32, bidirectional=True, merge_mode=merge_mode, return_sequences=merge_mode != "sum",
                         unroll=FORMS[form])  # fmt: skip
    rng = np.random.default_rng(33)
    want, _ = compare(spec, {"x": _x(rng)}, states=_states(rng, STACK_STATES * 2), mask=holey_mask(B, T))
    expected = [(f"rnn/{d}/{n}", (g, 3 * B, w)) for d in ("forward", "backward") for n, (g, w) in STACK_MASKS]
    assert [(k, v.shape) for k, v in want.masks.items()] == expected
    from rnnserve.kinds import kind_of

    layer = spec.layer("rnn")
    parts = {f"rnn/{p}" for p in kind_of(layer).parts(layer.config)}  # the masks' prefixes are the layer's parts
    assert {k.rsplit("/", 1)[0] for k in want.masks} <= parts


def test_seeded_stacked_cells_in_a_bidirectional_share_their_masks_cell_by_cell():
    from rnnserve.modeling import (
        bidirectional,
        clear_session,
        keras_model,
        layer_input,
        layer_rnn,
        rnn_cell_gru,
        rnn_cell_simple,
        set_random_seed,
    )

    clear_session()
    set_random_seed(5)
    x = layer_input(shape=(T, F), name="x")
    cells: Any = [rnn_cell_gru(U, dropout=0.3, recurrent_dropout=0.2, seed=3), rnn_cell_simple(2, dropout=0.4)]
    spec = _randomized(
        keras_model(x, bidirectional(x, layer_rnn(cell=cells), name="bi")).to_spec(), np.random.default_rng(5)
    )
    want, _ = compare(spec, {"x": _x(np.random.default_rng(34))})
    for name in ("gru_cell/dropout", "gru_cell/recurrent_dropout"):
        assert np.array_equal(want.masks[f"bi/forward/{name}"], want.masks[f"bi/backward/{name}"])
    assert not np.array_equal(
        want.masks["bi/forward/simple_rnn_cell/dropout"], want.masks["bi/backward/simple_rnn_cell/dropout"]
    )


def test_stacked_cells_once_refused_are_sampled():
    """The two models that were refused (400) before stacked cells and Bidirectional had masks."""
    from rnnserve.modeling import (
        bidirectional,
        clear_session,
        keras_model,
        layer_input,
        layer_rnn,
        rnn_cell_gru,
        rnn_cell_lstm,
        set_random_seed,
    )

    clear_session()
    set_random_seed(4)
    x = layer_input(shape=(T, F), name="x")
    cells: Any = [rnn_cell_gru(U, dropout=0.3), rnn_cell_lstm(2)]
    spec = keras_model(x, layer_rnn(x, cells, return_sequences=True, name="rnn")).to_spec()
    want, _ = compare(spec, {"x": _x(np.random.default_rng(14))})
    assert list(want.masks) == ["rnn/gru_cell/dropout"]
    x = layer_input(shape=(T, F), name="x")
    cells = [rnn_cell_gru(U), rnn_cell_lstm(2, recurrent_dropout=0.2)]
    spec = keras_model(x, bidirectional(x, layer_rnn(cell=cells), name="bi")).to_spec()
    want, _ = compare(spec, {"x": _x(np.random.default_rng(15))})
    assert list(want.masks) == ["bi/forward/lstm_cell/recurrent_dropout", "bi/backward/lstm_cell/recurrent_dropout"]


def test_same_seed_same_numbers_and_no_rate_identical_samples():
    spec = _stacked_spec(35, bidirectional=True, merge_mode="ave")
    x = _x(np.random.default_rng(36))
    runner = OrtModel(spec, runtime_options())
    first = run_samples_ort(runner, {"x": x}, None, None, DropoutRequest(4, 8))
    again = run_samples_ort(runner, {"x": x}, None, None, DropoutRequest(4, 8))
    other = run_samples_ort(runner, {"x": x}, None, None, DropoutRequest(4, 9))
    name = spec.output_names[0]
    assert np.array_equal(first.outputs[name], again.outputs[name])
    assert not np.allclose(first.outputs[name], other.outputs[name])
    still = _without_rates(spec)
    runner = OrtModel(still, runtime_options())
    samples = run_samples_ort(runner, {"x": x}, None, None, DropoutRequest(5, 1))
    reference = run_samples(ReferenceModel(still), {"x": x}, None, None, DropoutRequest(5, 1))
    plain = runner.run({"x": x})
    assert samples.masks == reference.masks == {} and runner._dropout_graphs == {}  # noqa: SLF001
    for n in range(5):
        assert np.array_equal(samples.outputs[name][n], plain.outputs[name])
        assert_close(reference.outputs[name][n], plain.outputs[name], name)


def _without_rates(spec: ModelSpec) -> ModelSpec:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: 0.0 if k in ("dropout", "recurrent_dropout") else strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return replace(spec, layers=tuple(replace(layer, config=strip(layer.config)) for layer in spec.layers))


# ---- tf_keras 2's fused GRU/LSTM layers: the input mask drawn over the whole input ---------------------------------


def _k2(layers: list[LayerSpec], outputs: dict[str, TensorRef], shape: tuple[int | None, ...] = (None, None, F)):
    return model([InputSpec("x", shape)], layers, outputs, keras_version="2.21.0")


@pytest.mark.parametrize("class_name", ["GRU", "LSTM"])
@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
def test_keras2_fused_layers_draw_one_input_mask_per_timestep(class_name, time_major):
    """tf_keras 2 runs a GRU/LSTM layer with a dropout and no recurrent_dropout (tanh, sigmoid, a bias, not unrolled;
    GRU reset_after) through its fused kernel, multiplying the whole input by a mask of its shape: each timestep
    its own mask. Every graph form a request may use (Scan for T, the unrolled step graph for 1)."""
    rng = np.random.default_rng(40)
    layers = [
        rnn_layer(class_name, "rnn", "x", F, U, rng, dropout=0.3, return_sequences=True, time_major=time_major),
        _dropout("drop", "rnn", 0.2),
        bidirectional_layer(class_name, "bi", "drop", U, 2, rng, "sum", dropout=0.4, time_major=time_major),
    ]
    shape = (None, None, F)
    spec = _k2(layers, {"y": TensorRef("bi"), "seq": TensorRef("drop")}, shape)
    runner = OrtModel(spec, runtime_options())
    for steps in (T, 1):
        x = rng.normal(0.0, 1.0, (steps, B, F) if time_major else (B, steps, F)).astype(np.float32)
        want, _ = compare(spec, {"x": x}, runner=runner, mask=holey_mask(B, steps) if steps > 1 else None)
        assert list(want.masks) == ["rnn/dropout", "drop/mask", "bi/forward/dropout", "bi/backward/dropout"]
        per_step = (steps, 3 * B) if time_major else (3 * B, steps)
        assert want.masks["rnn/dropout"].shape == (*per_step, F)
        assert want.masks["bi/forward/dropout"].shape == want.masks["bi/backward/dropout"].shape == (*per_step, U)
        if steps > 1:
            time_axis = 0 if time_major else 1
            per_timestep = want.masks["rnn/dropout"]
            assert not np.array_equal(np.take(per_timestep, 0, time_axis), np.take(per_timestep, 1, time_axis))


@pytest.mark.parametrize(
    ("class_name", "extra", "what"),
    [
        ("GRU", {"dropout": 0.3, "recurrent_dropout": 0.2}, "a recurrent_dropout: the cell, per gate"),
        ("GRU", {"dropout": 0.3, "reset_after": False}, "reset_before: no fused kernel"),
        ("LSTM", {"dropout": 0.3, "unroll": True}, "unrolled"),
        ("LSTM", {"dropout": 0.3, "use_bias": False}, "no bias"),
        ("GRU", {"dropout": 0.3, "activation": "relu"}, "another activation"),
        ("SimpleRNN", {"dropout": 0.3}, "SimpleRNN has no fused kernel"),
    ],
)
def test_keras2_layers_off_the_fused_path_draw_one_mask_a_sequence(class_name, extra, what):
    rng = np.random.default_rng(41)
    layer = rnn_layer(class_name, "rnn", "x", F, U, rng, return_sequences=True, **extra)
    want, _ = compare(_k2([layer], {"y": TensorRef("rnn")}, (None, T, F)), {"x": _x(rng)})
    gates = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}[class_name]
    assert want.masks["rnn/dropout"].shape == (gates if extra.get("recurrent_dropout") else 1, 3 * B, F), what


def test_keras2_rnn_around_a_cell_draws_one_mask_a_sequence():
    """`RNN(GRUCell)` runs the cell, whatever the Keras version: one mask a sequence."""
    from rnnserve.modeling import clear_session, keras_model, layer_input, layer_rnn, rnn_cell_gru, set_random_seed

    clear_session()
    set_random_seed(6)
    x = layer_input(shape=(T, F), name="x")
    spec = keras_model(x, layer_rnn(x, rnn_cell_gru(U, dropout=0.3), return_sequences=True, name="rnn")).to_spec()
    want, _ = compare(replace(spec, keras_version="2.21.0"), {"x": _x(np.random.default_rng(42))})
    assert want.masks["rnn/dropout"].shape == (1, 3 * B, F)


def test_a_package_exported_unrolled_for_its_length(tmp_path):
    """A package whose graph was unrolled for T at export (its layers say unroll=False, its input no length)."""
    from rnnserve.export.package import write_package
    from rnnserve.runtime.repository import load_runner

    rng = np.random.default_rng(15)
    layers = [
        rnn_layer("LSTM", "lstm", "x", F, U, rng, dropout=0.2, recurrent_dropout=0.3, return_sequences=True),
        _dropout("drop", "lstm", 0.4),
    ]
    spec = model([InputSpec("x", (None, None, F))], layers, {"y": TensorRef("drop")})
    runner = load_runner(write_package(spec, tmp_path / "pkg", unroll=True, time_steps=T), "m", runtime_options())
    for steps in (T, 3, 1):
        compare(spec, {"x": _x(rng, steps=steps)}, runner=runner, seed=steps)
    assert set(runner._dropout_graphs) == {None, 0, 1}  # noqa: SLF001


def test_the_data_plane_answers_dropout_on_either_runner(tmp_path):
    """`InferenceService.predict` with dropout: on onnxruntime for an `OrtModel`, on the numpy reference for another
    runner; the same numbers."""
    import asyncio

    from rnnserve.batching.direct import DirectExecutor
    from rnnserve.inference import InferenceService, PredictRequest
    from rnnserve.runtime.repository import ModelRepository
    from rnnserve.sessions.memory import MemorySessionStore
    from rnnserve.settings import Settings

    rng = np.random.default_rng(16)
    layer = rnn_layer("GRU", "gru", "x", F, U, rng, dropout=0.3, recurrent_dropout=0.3, return_sequences=True)
    spec = one_layer(layer, F)
    x = _x(rng)

    async def predict(runner):
        repository = ModelRepository(tmp_path)
        repository.add("m", runner)
        store, executor = MemorySessionStore(max_sessions=2), DirectExecutor(threads=1)
        service = InferenceService(repository, store, executor, Settings(models=tmp_path))
        try:
            return await service.predict("m", PredictRequest({"x": x}, dropout=DropoutRequest(4, 2)))
        finally:
            await service.aclose()
            await store.aclose()
            await executor.aclose()

    runner = OrtModel(spec, runtime_options())
    on_ort = asyncio.run(predict(runner))
    assert list(runner._dropout_graphs) == [None]  # noqa: SLF001
    on_reference = asyncio.run(predict(ReferenceModel(spec)))
    assert on_ort.outputs["y"].shape == (4, B, T, U)
    assert_close(on_ort.outputs["y"], on_reference.outputs["y"], "y")
    assert on_ort.dropout == on_reference.dropout == {"samples": 4, "seed": 2, "reduce": "none"}
