"""Models built with the layer API (seeded) export to ONNX and run on onnxruntime with the reference's numbers.

Graph I/O as `rnnserve.runtime.runner` names it: the signature inputs, "mask" (bool [B, T]) and one float32
input per state; outputs: the signature outputs, then each state + ":out".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pytest
from graph_provider import session_providers

from rnnserve.export.convert import to_onnx
from rnnserve.layers.model import ReferenceModel
from rnnserve.modeling import (
    Model,
    bidirectional,
    keras_model,
    keras_model_sequential,
    layer_dense,
    layer_dropout,
    layer_embedding,
    layer_gru,
    layer_input,
    layer_lstm,
    layer_masking,
    layer_simple_rnn,
    regularizer_l2,
    set_random_seed,
    time_distributed,
)
from rnnserve.runtime.runner import MASK_INPUT, STATE_OUT_SUFFIX, RunResult
from rnnserve.signature import ModelSignature

B, T, F, U = 2, 5, 3, 4


def stacked_sequential() -> Model:
    model = keras_model_sequential(input_shape=(None, F))
    layer_simple_rnn(model, U, return_sequences=True, activation="relu", dropout=0.3)
    layer_gru(model, U, return_sequences=True, reset_after=False, kernel_regularizer=regularizer_l2(0.01))
    layer_lstm(model, U, go_backwards=True)
    layer_dense(model, 2, activation="sigmoid")
    return model


def masked_tokens_functional() -> Model:
    tokens = layer_input(shape=(None,), dtype="int32", name="tokens")
    emb = layer_embedding(tokens, 9, F, mask_zero=True)
    y, h, c = layer_lstm(emb, U, return_sequences=True, return_state=True)
    out = time_distributed(layer_dropout(y, 0.2), layer_dense(units=2, activation="tanh"))
    return keras_model(tokens, [out, h, c])


def bidirectional_masking() -> Model:
    x = layer_input(shape=(None, F), name="x")
    m = layer_masking(x, mask_value=0.0)
    y = bidirectional(m, layer_gru(units=U, return_sequences=True), merge_mode="ave")
    forward, backward = bidirectional(y, layer_simple_rnn(units=U, return_sequences=True), merge_mode=None)
    return keras_model(x, [bidirectional(forward, layer_lstm(units=U), merge_mode="concat"), backward])


def stateful_lstm() -> Model:
    model = keras_model_sequential(input_shape=(None, F), batch_size=B)
    layer_lstm(model, U, stateful=True, return_sequences=True, unit_forget_bias=False, bias_initializer="ones")
    return model


MODELS: dict[str, Callable[[], Model]] = {
    "stacked_sequential": stacked_sequential,
    "masked_tokens_functional": masked_tokens_functional,
    "bidirectional_masking": bidirectional_masking,
    "stateful_lstm": stateful_lstm,
}


def run_onnx(proto: bytes, signature: ModelSignature, feeds: dict[str, np.ndarray], mask: np.ndarray,
             states: list[np.ndarray]) -> RunResult:  # fmt: skip
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(proto, options, providers=session_providers())
    all_feeds = {**feeds, MASK_INPUT: mask, **{s.name: v for s, v in zip(signature.states, states, strict=True)}}
    graph_inputs = [i.name for i in session.get_inputs()]
    assert set(graph_inputs) <= set(all_feeds), graph_inputs
    names = [o.name for o in signature.outputs] + [s.name + STATE_OUT_SUFFIX for s in signature.states]
    assert [o.name for o in session.get_outputs()] == names
    values = session.run(names, {name: all_feeds[name] for name in graph_inputs})
    count = len(signature.outputs)
    return RunResult(dict(zip(names[:count], values[:count], strict=True)), list(values[count:]))


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, what
    excess = np.abs(actual - expected) - (1e-5 + 1e-5 * np.abs(expected))
    assert excess.max() <= 0, f"{what}: off by {np.abs(actual - expected).max():.3g}"


def _feeds(signature: ModelSignature, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for tensor in signature.inputs:
        if tensor.dtype == "int64":
            ids = rng.integers(1, 9, size=(B, T))
            ids[0, [1, 4]] = 0  # masked by Embedding(mask_zero)
            feeds[tensor.name] = ids
        else:
            x = rng.normal(size=(B, T, F)).astype(np.float32)
            x[1, 2] = 0.0  # masked if the model has a Masking layer
            feeds[tensor.name] = x
    return feeds


@pytest.mark.parametrize("name", sorted(MODELS))
def test_exported_graph_matches_the_reference(name: str) -> None:
    set_random_seed(2024)
    spec = MODELS[name]().to_spec()
    proto, signature = to_onnx(spec)
    rng = np.random.default_rng(7)
    feeds = _feeds(signature, rng)
    mask = np.ones((B, T), bool)
    mask[1, -1] = False  # an explicit mask as a client would send
    states = [rng.normal(size=(B, s.shape[1])).astype(np.float32) for s in signature.states]
    expected = ReferenceModel(spec).run(feeds, states=states, mask=mask)
    actual = run_onnx(proto.SerializeToString(), signature, feeds, mask, states)
    assert list(actual.outputs) == list(expected.outputs) == list(spec.output_names)
    for output in expected.outputs:
        assert_close(actual.outputs[output], expected.outputs[output], output)
    for k, (a, e) in enumerate(zip(actual.states, expected.states, strict=True)):
        assert_close(a, e, signature.states[k].name)
