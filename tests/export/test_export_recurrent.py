"""SimpleRNN, GRU and LSTM graphs against the numpy reference: Scan and unrolled, masks, directions, states."""

from __future__ import annotations

import numpy as np
import pytest
from export_specs import (
    CELL_IDS,
    CELLS,
    LOOP_OPS,
    check_against_reference,
    holey_mask,
    model,
    one_layer,
    op_types,
    rnn_layer,
    run_graph,
)

from rnnserve.export.convert import to_onnx
from rnnserve.spec import InputSpec, TensorRef

F, U, T, B = 3, 4, 6, 4


def _inputs(rng: np.random.Generator, batch: int = B, steps: int = T) -> dict[str, np.ndarray]:
    return {"x": rng.normal(0.0, 1.0, (batch, steps, F)).astype(np.float32)}


def _states(spec_layer_units: int, count: int, rng: np.random.Generator, batch: int = B) -> list[np.ndarray]:
    return [rng.normal(0.0, 0.5, (batch, spec_layer_units)).astype(np.float32) for _ in range(count)]


@pytest.mark.parametrize(("class_name", "extra"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
def test_cells_masked_both_forms_match_reference(class_name, extra, go_backwards, return_sequences):
    rng = np.random.default_rng(1)
    layer = rnn_layer(
        class_name,
        "rnn",
        "x",
        F,
        U,
        rng,
        go_backwards=go_backwards,
        return_sequences=return_sequences,
        return_state=True,
        **extra,
    )
    spec = one_layer(layer, F, T)
    inputs, mask = _inputs(rng), holey_mask(B, T)
    states = _states(U, 2 if class_name == "LSTM" else 1, rng)
    scan, scan_result = check_against_reference(spec, inputs, mask=mask, states=states, unroll=False)
    unrolled, unrolled_result = check_against_reference(spec, inputs, mask=mask, states=states, unroll=True)
    assert "Scan" in set(op_types(scan.graph))
    assert not LOOP_OPS & set(op_types(unrolled.graph))
    for name, value in scan_result.outputs.items():
        np.testing.assert_allclose(unrolled_result.outputs[name], value, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("class_name", "extra"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unrolled"])
def test_zero_output_for_mask(class_name, extra, return_sequences, unroll):
    rng = np.random.default_rng(2)
    layer = rnn_layer(
        class_name, "rnn", "x", F, U, rng, zero_output_for_mask=True, return_sequences=return_sequences, **extra
    )
    mask = holey_mask(B, T)
    _, result = check_against_reference(one_layer(layer, F, T), _inputs(rng), mask=mask, unroll=unroll)
    if return_sequences:
        assert np.all(result.outputs["y"][~mask] == 0.0)
    else:  # the last step of row 2 is masked: its last output is zeros
        assert np.all(result.outputs["y"][2] == 0.0)


@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unrolled"])
def test_masked_steps_carry_output_and_state(unroll):
    """Tokens [0,0,4,9,0,1,0,0] -> outputs [0,0,o2,o3,o3,o5,o5,o5]; the final state is the one after step 5."""
    rng = np.random.default_rng(3)
    layer = rnn_layer("GRU", "rnn", "x", F, U, rng, return_sequences=True)
    keep = np.array([[0, 0, 1, 1, 0, 1, 0, 0]], bool)
    proto, signature = to_onnx(one_layer(layer, F, 8), unroll=unroll)
    result = run_graph(proto, signature, _inputs(rng, 1, 8), mask=keep)
    y = result.outputs["y"][0]
    assert np.all(y[:2] == 0.0)
    np.testing.assert_array_equal(y[4], y[3])
    np.testing.assert_array_equal(y[6], y[5])
    np.testing.assert_array_equal(y[7], y[5])
    np.testing.assert_array_equal(result.states[0][0], y[5])


@pytest.mark.parametrize("class_name", ["SimpleRNN", "GRU", "LSTM"])
def test_no_bias(class_name):
    rng = np.random.default_rng(4)
    layer = rnn_layer(class_name, "rnn", "x", F, U, rng, use_bias=False, return_sequences=True)
    check_against_reference(one_layer(layer, F), _inputs(rng), mask=holey_mask(B, T))


@pytest.mark.parametrize(
    ("class_name", "activation", "recurrent_activation"),
    [
        ("SimpleRNN", "relu", None),
        ("GRU", "softsign", "hard_sigmoid"),
        ("GRU", "tanh", "hard_sigmoid_keras2"),
        ("LSTM", "elu", "softmax"),  # a row-wise gate activation applies gate by gate, as in Keras
        ("LSTM", "gelu", "sparsemax"),
    ],
)
def test_cell_activations(class_name, activation, recurrent_activation):
    rng = np.random.default_rng(5)
    extra = {} if recurrent_activation is None else {"recurrent_activation": recurrent_activation}
    layer = rnn_layer(class_name, "rnn", "x", F, U, rng, activation=activation, return_sequences=True, **extra)
    for unroll in (False, True):
        check_against_reference(one_layer(layer, F, T), _inputs(rng), mask=holey_mask(B, T), unroll=unroll)


@pytest.mark.parametrize(("class_name", "extra"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unrolled"])
def test_time_major(class_name, extra, unroll):
    rng = np.random.default_rng(6)
    layer = rnn_layer(
        class_name, "rnn", "x", F, U, rng, time_major=True, return_sequences=True, return_state=True, **extra
    )
    spec = model([InputSpec("x", (T, None, F))], [layer], {"y": TensorRef("rnn"), "h": TensorRef("rnn", 1)})
    x = rng.normal(0.0, 1.0, (T, B, F)).astype(np.float32)
    proto, result = check_against_reference(spec, {"x": x}, mask=holey_mask(B, T), unroll=unroll)
    assert result.outputs["y"].shape == (T, B, U)
    assert "Transpose" not in set(op_types(proto.graph))


@pytest.mark.parametrize(("class_name", "extra"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unrolled"])
def test_streaming_in_chunks_equals_whole_sequence(class_name, extra, unroll):
    """Feeding k chunks through the state inputs gives the whole sequence's outputs and final states."""
    rng = np.random.default_rng(7)
    steps = 8
    layer = rnn_layer(class_name, "rnn", "x", F, U, rng, return_sequences=True, **extra)
    spec = one_layer(layer, F)
    x = _inputs(rng, 2, steps)["x"]
    mask = np.ones((2, steps), bool)
    mask[1, [1, 5]] = False  # masked steps inside chunks (a chunk never starts on a masked step)
    proto, signature = to_onnx(spec, unroll=False)
    whole = run_graph(proto, signature, {"x": x}, mask=mask)
    states = None
    pieces = []
    for start, stop in [(0, 3), (3, 4), (4, 8)]:
        if unroll:
            proto, signature = to_onnx(spec, unroll=True, time_steps=stop - start)
        part = run_graph(proto, signature, {"x": x[:, start:stop]}, states, mask[:, start:stop])
        pieces.append(part.outputs["y"])
        states = part.states
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole.outputs["y"], rtol=1e-5, atol=1e-6)
    for got, want in zip(states, whole.states, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_step_graph_t1_matches_reference():
    """The T=1 unrolled step graph (the runtime's stream hot path) computes one step exactly."""
    rng = np.random.default_rng(8)
    layer = rnn_layer("LSTM", "rnn", "x", F, U, rng, return_sequences=True)
    spec = one_layer(layer, F)
    proto, _ = check_against_reference(spec, _inputs(rng, B, 1), states=_states(U, 2, rng), unroll=True, time_steps=1)
    assert not LOOP_OPS & set(op_types(proto.graph))


def test_config_unroll_is_followed_by_default():
    rng = np.random.default_rng(9)
    layer = rnn_layer("GRU", "rnn", "x", F, U, rng, unroll=True, return_sequences=True)
    proto, signature = to_onnx(one_layer(layer, F, T))
    assert not LOOP_OPS & set(op_types(proto.graph))
    assert signature.inputs[0].shape == (None, None, F)  # the model's time stays free; this graph is one variant
    mask_input = next(i for i in proto.graph.input if i.name == "mask")
    assert mask_input.type.tensor_type.shape.dim[1].dim_value == T


NATIVE_OPS = {"RNN", "GRU", "LSTM"}


@pytest.mark.parametrize(("class_name", "extra"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("batch", [1, 3])
def test_unmasked_passes_take_the_fused_op_with_the_same_numbers(
    class_name, extra, go_backwards, return_sequences, batch
):
    """An all-True mask runs onnxruntime's fused op behind an If (SimpleRNN only at batch 1): same numbers."""
    rng = np.random.default_rng(10)
    layer = rnn_layer(
        class_name,
        "rnn",
        "x",
        F,
        U,
        rng,
        go_backwards=go_backwards,
        return_sequences=return_sequences,
        return_state=True,
        **extra,
    )
    states = _states(U, 2 if class_name == "LSTM" else 1, rng, batch)
    proto, _ = check_against_reference(one_layer(layer, F), _inputs(rng, batch), states=states, unroll=False)
    ops = set(op_types(proto.graph))
    assert {"If", "Scan"} <= ops and NATIVE_OPS & ops
    unrolled, _ = to_onnx(one_layer(layer, F), unroll=True, time_steps=T)
    assert not (NATIVE_OPS | {"If"}) & set(op_types(unrolled.graph))


@pytest.mark.parametrize("time_major", [False, True])
def test_fused_op_with_time_major_input(time_major):
    rng = np.random.default_rng(15)
    layer = rnn_layer("LSTM", "rnn", "x", F, U, rng, time_major=time_major, return_sequences=True, go_backwards=True)
    shape = (None, None, F)
    spec = model([InputSpec("x", shape)], [layer], {"y": TensorRef("rnn")})
    x = rng.normal(0.0, 1.0, (T, B, F) if time_major else (B, T, F)).astype(np.float32)
    check_against_reference(spec, {"x": x})


@pytest.mark.parametrize("activation", ["relu", "softsign", "softplus"])
def test_fused_op_activations(activation):
    rng = np.random.default_rng(16)
    for class_name in ("SimpleRNN", "GRU", "LSTM"):
        extra = {} if class_name == "SimpleRNN" else {"recurrent_activation": "sigmoid"}
        layer = rnn_layer(class_name, "rnn", "x", F, U, rng, activation=activation, return_sequences=True, **extra)
        proto, _ = check_against_reference(one_layer(layer, F), _inputs(rng, 1))
        assert NATIVE_OPS & set(op_types(proto.graph))


def test_cells_without_an_exact_fused_op_keep_the_plain_scan():
    rng = np.random.default_rng(17)
    layer = rnn_layer("GRU", "rnn", "x", F, U, rng, recurrent_activation="hard_sigmoid", return_sequences=True)
    proto, _ = check_against_reference(one_layer(layer, F), _inputs(rng, 1))
    assert not (NATIVE_OPS | {"If"}) & set(op_types(proto.graph))


def test_a_one_step_graph_is_unrolled_unless_asked_otherwise():
    rng = np.random.default_rng(18)
    spec = one_layer(rnn_layer("GRU", "rnn", "x", F, U, rng, return_sequences=True), F)
    assert not LOOP_OPS & set(op_types(to_onnx(spec, time_steps=1)[0].graph))
    assert "Scan" in set(op_types(to_onnx(spec, unroll=False, time_steps=1)[0].graph))
    assert "Scan" in set(op_types(to_onnx(spec, time_steps=4)[0].graph))
