"""Bidirectional graphs against the numpy reference: every merge mode, masks, states, both graph forms."""

from __future__ import annotations

import numpy as np
import pytest
from export_specs import (
    bidirectional_layer,
    check_against_reference,
    holey_mask,
    model,
    one_layer,
    rnn_layer,
    run_graph,
)

from rnnserve.export.convert import to_onnx
from rnnserve.spec import InputSpec, TensorRef

F, U, T, B = 3, 4, 6, 4


def _x(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"x": rng.normal(0.0, 1.0, (B, T, F)).astype(np.float32)}


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unrolled"])
def test_merge_modes(merge_mode, return_sequences, unroll):
    rng = np.random.default_rng(11)
    layer = bidirectional_layer("GRU", "bi", "x", F, U, rng, merge_mode, return_sequences=return_sequences)
    proto, result = check_against_reference(one_layer(layer, F, T), _x(rng), mask=holey_mask(B, T), unroll=unroll)
    width = 2 * U if merge_mode == "concat" else U
    expected = (B, T, width) if return_sequences else (B, width)
    assert result.outputs["y"].shape == expected
    if merge_mode is None:
        assert set(result.outputs) == {"y", "y1"}


@pytest.mark.parametrize("class_name", ["SimpleRNN", "GRU", "LSTM"])
@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unrolled"])
def test_masked_sequences_are_zero_and_states_are_returned(class_name, unroll):
    """Keras forces zero_output_for_mask=return_sequences: masked steps are zeros in both halves."""
    rng = np.random.default_rng(12)
    layer = bidirectional_layer(class_name, "bi", "x", F, U, rng, "concat", return_sequences=True, return_state=True)
    states = [rng.normal(0.0, 0.5, (B, U)).astype(np.float32) for _ in range(4 if class_name == "LSTM" else 2)]
    mask = holey_mask(B, T)
    _, result = check_against_reference(one_layer(layer, F, T), _x(rng), mask=mask, states=states, unroll=unroll)
    assert np.all(result.outputs["y"][~mask] == 0.0)
    assert len(result.states) == len(states)


def test_backward_half_is_in_input_time_order():
    """y[:, t, U:] is the backward pass's output after reading input steps T-1 down to t."""
    rng = np.random.default_rng(13)
    layer = bidirectional_layer("SimpleRNN", "bi", "x", F, U, rng, "concat", return_sequences=True)
    x = _x(rng)["x"]
    proto, signature = to_onnx(one_layer(layer, F))
    full = run_graph(proto, signature, {"x": x}).outputs["y"]
    tail = run_graph(proto, signature, {"x": x[:, 3:]}).outputs["y"]
    np.testing.assert_allclose(tail[:, :, U:], full[:, 3:, U:], rtol=1e-5, atol=1e-6)


def test_stacked_bidirectional_then_gru():
    rng = np.random.default_rng(14)

    first = bidirectional_layer("LSTM", "bi", "x", F, U, rng, "concat", return_sequences=True)
    second = rnn_layer("GRU", "gru", "bi", 2 * U, U, rng, return_sequences=False)
    spec = model([InputSpec("x", (None, None, F))], [first, second], {"y": TensorRef("gru")})
    for unroll in (False, True):
        check_against_reference(spec, _x(rng), mask=holey_mask(B, T), unroll=unroll, time_steps=T)


@pytest.mark.parametrize("class_name", ["SimpleRNN", "GRU", "LSTM"])
@pytest.mark.parametrize("inner_go_backwards", [False, True], ids=["inner_fwd", "inner_bwd_keras2"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
def test_unmasked_bidirectional_through_the_fused_ops(class_name, inner_go_backwards, return_sequences):
    """Keras 2 allows an inner go_backwards=True (the backward copy then reads forwards); both halves agree."""
    rng = np.random.default_rng(15)
    layer = bidirectional_layer(
        class_name,
        "bi",
        "x",
        F,
        U,
        rng,
        "concat",
        return_sequences=return_sequences,
        go_backwards=inner_go_backwards,
        return_state=True,
    )
    x = rng.normal(0.0, 1.0, (1, T, F)).astype(np.float32)
    check_against_reference(one_layer(layer, F), {"x": x})
    holey = np.ones((1, T), bool)
    holey[0, 2] = False  # the same layer through the Scan branch
    check_against_reference(one_layer(layer, F), {"x": x}, mask=holey)
