"""Dense, Embedding, Masking, TimeDistributed, Dropout; stacks, initial_state inputs and multi-output models."""

from __future__ import annotations

import numpy as np
import pytest
from export_specs import (
    check_against_reference,
    dense_layer,
    holey_mask,
    model,
    rnn_layer,
    run_graph,
)

from rnnserve.export.convert import to_onnx
from rnnserve.spec import InputSpec, LayerSpec, TensorRef

F, U, T, B, VOCAB = 3, 4, 6, 4, 9


def _embedding(rng: np.random.Generator, source: str = "tokens", mask_zero: bool = True) -> LayerSpec:
    config = {"name": "emb", "input_dim": VOCAB, "output_dim": F, "mask_zero": mask_zero}
    return LayerSpec(
        "Embedding",
        "emb",
        config,
        {"embeddings": rng.normal(0, 0.6, (VOCAB, F)).astype(np.float32)},
        (TensorRef(source),),
    )


def _tokens(rng: np.random.Generator) -> np.ndarray:
    tokens = rng.integers(1, VOCAB, (B, T)).astype(np.int64)
    tokens[1, 2] = 0  # padding in the middle
    tokens[2, -2:] = 0  # padding at the end
    tokens[3, :] = 0  # a row that is all padding
    return tokens


@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unrolled"])
@pytest.mark.parametrize("class_name", ["SimpleRNN", "GRU", "LSTM"])
def test_embedding_mask_zero_into_rnn(unroll, class_name):
    rng = np.random.default_rng(21)
    layers = [_embedding(rng), rnn_layer(class_name, "rnn", "emb", F, U, rng, return_sequences=True)]
    spec = model([InputSpec("tokens", (None, T), "int64")], layers, {"y": TensorRef("rnn")})
    check_against_reference(spec, {"tokens": _tokens(rng)}, unroll=unroll)


def test_embedding_mask_zero_and_explicit_mask_combine():
    rng = np.random.default_rng(22)
    layers = [_embedding(rng), rnn_layer("GRU", "rnn", "emb", F, U, rng, return_sequences=True)]
    spec = model([InputSpec("tokens", (None, None), "int64")], layers, {"y": TensorRef("rnn")})
    check_against_reference(spec, {"tokens": _tokens(rng)}, mask=holey_mask(B, T))


def test_embedding_without_mask_zero_keeps_the_explicit_mask():
    rng = np.random.default_rng(23)
    layers = [_embedding(rng, mask_zero=False), rnn_layer("LSTM", "rnn", "emb", F, U, rng, return_sequences=True)]
    spec = model([InputSpec("tokens", (None, None), "int64")], layers, {"y": TensorRef("rnn")})
    check_against_reference(spec, {"tokens": _tokens(rng)}, mask=holey_mask(B, T))


@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unrolled"])
def test_masking_zeroes_steps_and_masks_the_rnn(unroll):
    rng = np.random.default_rng(24)
    masking = LayerSpec("Masking", "masking", {"name": "masking", "mask_value": -1.0}, {}, (TensorRef("x"),))
    layers = [masking, rnn_layer("GRU", "rnn", "masking", F, U, rng, return_sequences=True)]
    spec = model([InputSpec("x", (None, T, F))], layers, {"y": TensorRef("rnn"), "masked": TensorRef("masking")})
    x = rng.normal(0, 1, (B, T, F)).astype(np.float32)
    x[1, 3] = -1.0  # masked: every feature equals mask_value
    x[2, 4:] = -1.0  # masked at the end
    x[3, 2, 0] = -1.0  # not masked: only one feature equals it
    _, result = check_against_reference(spec, {"x": x}, mask=holey_mask(B, T), unroll=unroll)
    assert np.all(result.outputs["masked"][1, 3] == 0.0)
    assert result.outputs["masked"][3, 2, 0] == -1.0


@pytest.mark.parametrize("activation", ["linear", "relu", "softmax", "glu"])
def test_dense_on_sequences_and_last_outputs(activation):
    rng = np.random.default_rng(25)
    layers = [
        rnn_layer("LSTM", "rnn", "x", F, U, rng, return_sequences=True),
        dense_layer("per_step", "rnn", U, 6, rng, activation=activation),
        rnn_layer("SimpleRNN", "rnn2", "rnn", U, U, rng),
        dense_layer("head", "rnn2", U, 2, rng, use_bias=False),
    ]
    spec = model([InputSpec("x", (None, None, F))], layers, {"steps": TensorRef("per_step"), "y": TensorRef("head")})
    _, result = check_against_reference(
        spec, {"x": rng.normal(0, 1, (B, T, F)).astype(np.float32)}, mask=holey_mask(B, T)
    )
    assert result.outputs["steps"].shape == (B, T, 3 if activation == "glu" else 6)


def test_time_distributed_dense_and_dropout_pass_the_mask():
    rng = np.random.default_rng(26)
    inner = {"class_name": "Dense", "config": {"name": "inner", "units": 5, "activation": "tanh", "use_bias": True}}
    td = LayerSpec(
        "TimeDistributed",
        "td",
        {"name": "td", "layer": inner},
        {"kernel": rng.normal(0, 0.6, (F, 5)).astype(np.float32), "bias": rng.normal(0, 0.3, (5,)).astype(np.float32)},
        (TensorRef("x"),),
    )
    dropout = LayerSpec("Dropout", "drop", {"name": "drop", "rate": 0.5, "seed": 3}, {}, (TensorRef("td"),))
    td_drop = LayerSpec(
        "TimeDistributed",
        "td_drop",
        {"name": "td_drop", "layer": {"class_name": "Dropout", "config": {"rate": 0.1}}},
        {},
        (TensorRef("drop"),),
    )
    layers = [td, dropout, td_drop, rnn_layer("GRU", "rnn", "td_drop", 5, U, rng, return_sequences=True)]
    spec = model([InputSpec("x", (None, None, F))], layers, {"y": TensorRef("rnn")})
    for unroll in (False, True):
        check_against_reference(
            spec,
            {"x": rng.normal(0, 1, (B, T, F)).astype(np.float32)},
            mask=holey_mask(B, T),
            unroll=unroll,
            time_steps=T,
        )


@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unrolled"])
def test_stacked_recurrent_layers_with_every_state(unroll):
    rng = np.random.default_rng(27)
    layers = [
        rnn_layer("LSTM", "l1", "x", F, U, rng, return_sequences=True),
        rnn_layer("GRU", "l2", "l1", U, U, rng, return_sequences=True, go_backwards=True),
        rnn_layer("SimpleRNN", "l3", "l2", U, 2, rng, return_state=True),
    ]
    spec = model([InputSpec("x", (None, T, F))], layers, {"y": TensorRef("l3"), "h": TensorRef("l3", 1)})
    states = [rng.normal(0, 0.5, (B, u)).astype(np.float32) for u in (U, U, U, 2)]
    proto, signature = to_onnx(spec, unroll=unroll)
    assert [s.name for s in signature.states] == ["l1/h", "l1/c", "l2/h", "l3/h"]
    check_against_reference(
        spec, {"x": rng.normal(0, 1, (B, T, F)).astype(np.float32)}, mask=holey_mask(B, T), states=states, unroll=unroll
    )


def test_initial_state_model_inputs_become_state_inputs():
    rng = np.random.default_rng(28)
    layer = rnn_layer(
        "LSTM", "rnn", "x", F, U, rng, return_sequences=True, initial_state=(TensorRef("h0"), TensorRef("c0"))
    )
    spec = model(
        [InputSpec("x", (None, None, F)), InputSpec("h0", (None, U)), InputSpec("c0", (None, U))],
        [layer],
        {"y": TensorRef("rnn")},
    )
    proto, signature = to_onnx(spec)
    assert [i.name for i in proto.graph.input] == ["x", "mask", "rnn/h", "rnn/c"]
    assert dict(signature.initial_state_inputs) == {"rnn/h": "h0", "rnn/c": "c0"}
    x = rng.normal(0, 1, (B, T, F)).astype(np.float32)
    h0, c0 = (rng.normal(0, 0.5, (B, U)).astype(np.float32) for _ in range(2))
    got = run_graph(proto, signature, {"x": x}, [h0, c0], holey_mask(B, T))
    from rnnserve.layers.model import ReferenceModel

    want = ReferenceModel(spec).run({"x": x, "h0": h0, "c0": c0}, mask=holey_mask(B, T))
    np.testing.assert_allclose(got.outputs["y"], want.outputs["y"], rtol=1e-5, atol=1e-5)


def test_initial_state_from_another_layer():
    """An encoder's final states start the decoder (the decoder's state inputs are then not read)."""
    rng = np.random.default_rng(29)
    encoder = rnn_layer("GRU", "enc", "x", F, U, rng, return_state=True)
    decoder = rnn_layer("GRU", "dec", "x", F, U, rng, return_sequences=True, initial_state=(TensorRef("enc", 1),))
    spec = model([InputSpec("x", (None, None, F))], [encoder, decoder], {"y": TensorRef("dec")})
    check_against_reference(spec, {"x": rng.normal(0, 1, (B, T, F)).astype(np.float32)}, mask=holey_mask(B, T))
