"""Sequential and Functional models: to_spec() in the normalised form, Keras 3 configs, seeding, summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnserve.errors import InvalidArgument
from rnnserve.modeling import (
    bidirectional,
    clear_session,
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
from rnnserve.signature import signature_from_spec
from rnnserve.spec import InputSpec, TensorRef, state_layout

F, U = 3, 4


def _stack() -> object:
    model = keras_model_sequential(input_shape=(5, F), name="stack")
    layer_simple_rnn(model, U, return_sequences=True, dropout=0.2, kernel_regularizer=regularizer_l2(0.01))
    layer_gru(model, U)
    layer_dense(model, 2)
    return model


def test_sequential_spec() -> None:
    model = _stack()
    spec = model.to_spec()  # type: ignore[attr-defined]
    assert spec.name == "stack" and spec.keras_version == "3"
    assert spec.inputs == (InputSpec("input_layer", (None, 5, F), "float32"),)
    assert [(layer.class_name, layer.name, layer.inputs) for layer in spec.layers] == [
        ("SimpleRNN", "simple_rnn", (TensorRef("input_layer"),)),
        ("GRU", "gru", (TensorRef("simple_rnn"),)),
        ("Dense", "dense", (TensorRef("gru"),)),
    ]
    assert spec.outputs == (TensorRef("dense"),) and spec.output_names == ("dense",)
    rnn = spec.layers[0].config
    assert rnn["dropout"] == 0.2 and rnn["kernel_regularizer"]["class_name"] == "L2" and rnn["time_major"] is False
    assert spec.keras_config == model.serialize()  # type: ignore[attr-defined]
    json.dumps(spec.keras_config)  # plain JSON, as in config.json
    assert [s.name for s in state_layout(spec)] == ["simple_rnn/h", "gru/h"]


def test_sequential_config_is_keras_3s() -> None:
    config = _stack().get_config()  # type: ignore[attr-defined]
    assert list(config) == ["name", "trainable", "dtype", "layers", "build_input_shape"]
    first = config["layers"][0]
    assert first["class_name"] == "InputLayer" and first["config"]["batch_shape"] == [None, 5, F]
    assert "build_config" not in first
    assert config["layers"][2]["build_config"] == {"input_shape": [None, 5, U]}
    assert config["build_input_shape"] == [None, 5, F]


def test_first_layer_input_shape_makes_the_input() -> None:
    model = keras_model_sequential()
    layer_lstm(model, U, input_shape=(None, F))
    assert model.to_spec().inputs == (InputSpec("input_layer", (None, None, F)),)


def test_sequential_needs_an_input_shape() -> None:
    model = keras_model_sequential([layer_gru(units=U)])
    with pytest.raises(InvalidArgument, match="input_shape") as info:
        model.to_spec()
    assert info.value.extra["argument"] == "input_shape"
    with pytest.raises(InvalidArgument, match="batch_size"):
        keras_model_sequential(batch_size=2)


def test_return_state_only_on_the_last_sequential_layer() -> None:
    model = keras_model_sequential(input_shape=(5, F))
    layer_lstm(model, U, return_state=True)
    spec = model.to_spec()
    assert spec.output_names == ("lstm", "lstm:1", "lstm:2")  # as the importers name them
    assert spec.outputs == (TensorRef("lstm", 0), TensorRef("lstm", 1), TensorRef("lstm", 2))
    with pytest.raises(InvalidArgument, match="return_state"):
        layer_dense(model, 2)
    assert len(model.layers) == 1  # the refused layer is not kept


def test_stateful_needs_a_fixed_batch_size() -> None:
    with pytest.raises(InvalidArgument, match="stateful") as info:
        layer_gru(keras_model_sequential(input_shape=(5, F)), U, stateful=True)
    assert info.value.extra["argument"] == "stateful"
    with pytest.raises(InvalidArgument, match="stateful"):
        layer_lstm(layer_input(shape=(5, F)), U, stateful=True)
    with pytest.raises(InvalidArgument, match="stateful"):
        bidirectional(layer_input(shape=(5, F)), layer_gru(units=U, stateful=True))

    model = keras_model_sequential(input_shape=(None, F), batch_size=2)
    layer_lstm(model, U, stateful=True)
    signature = signature_from_spec(model.to_spec())
    assert signature.stateful and signature.batch_size == 2
    assert [s.shape for s in signature.states] == [(2, U), (2, U)]

    x = layer_input(batch_shape=(3, None, F))
    spec = keras_model(x, layer_gru(x, U, stateful=True)).to_spec()
    assert spec.inputs[0].shape == (3, None, F) and spec.layers[0].config["stateful"] is True


def test_functional_with_initial_state_inputs() -> None:
    tokens = layer_input(shape=(None,), dtype="int32", name="tokens")
    h0, c0 = layer_input(shape=U, name="h0"), layer_input(shape=U, name="c0")
    emb = layer_embedding(tokens, 10, F)
    y, h, c = layer_lstm(units=U, return_sequences=True, return_state=True, name="enc")(emb, initial_state=[h0, c0])
    out = time_distributed(layer_dropout(y, 0.1), layer_dense(units=2))
    model = keras_model([tokens, h0, c0], [out, h, c], name="seq2seq")
    spec = model.to_spec()
    assert [i.name for i in spec.inputs] == ["tokens", "h0", "c0"]
    assert spec.inputs[0].dtype == "int64"  # token ids
    enc = spec.layer("enc")
    assert enc.inputs == (TensorRef("embedding"),) and enc.initial_state == (TensorRef("h0"), TensorRef("c0"))
    assert spec.output_names == ("time_distributed", "enc:1", "enc:2")
    assert spec.outputs == (TensorRef("time_distributed"), TensorRef("enc", 1), TensorRef("enc", 2))
    signature = signature_from_spec(spec)
    assert dict(signature.initial_state_inputs) == {"enc/h": "h0", "enc/c": "c0"}
    assert [i.name for i in signature.inputs] == ["tokens"]

    config = model.get_config()
    assert config["input_layers"] == [["tokens", 0, 0], ["h0", 0, 0], ["c0", 0, 0]]
    assert config["output_layers"] == [["time_distributed", 0, 0], ["enc", 0, 1], ["enc", 0, 2]]
    entry = next(layer for layer in config["layers"] if layer["name"] == "enc")
    node = entry["inbound_nodes"][0]
    assert node["args"][0]["config"]["keras_history"] == ["embedding", 0, 0]
    assert [s["config"]["keras_history"] for s in node["kwargs"]["initial_state"]] == [["h0", 0, 0], ["c0", 0, 0]]
    assert entry["build_config"] == {
        "shapes_dict": {"sequences_shape": [None, None, F], "initial_state_shape": [[None, U], [None, U]]}
    }


def test_initial_state_on_a_masked_input_is_refused() -> None:
    """Keras 3 drops the implicit mask of a layer called with initial_state; rnnserve would apply it."""
    emb = layer_embedding(layer_input(shape=(None,), dtype="int32"), 10, F, mask_zero=True)
    with pytest.raises(InvalidArgument, match="drops the mask") as info:
        layer_gru(units=U)(emb, initial_state=layer_input(shape=U))
    assert info.value.extra["argument"] == "initial_state"


def test_single_tensor_inputs_and_outputs_are_written_as_one_triple() -> None:
    x = layer_input(shape=(5, F), name="x")
    model = keras_model(x, layer_gru(x, U))
    config = model.get_config()
    assert config["input_layers"] == ["x", 0, 0] and config["output_layers"] == ["gru", 0, 0]
    assert model.serialize()["class_name"] == "Functional" and model.name == "functional"


def test_sequential_embedding_input_is_int64_in_the_spec() -> None:
    model = keras_model_sequential(input_shape=(None,))
    layer_embedding(model, 20, F, mask_zero=True)
    layer_masking(model)
    layer_simple_rnn(model, U)
    assert model.to_spec().inputs[0].dtype == "int64"


def test_functional_graph_errors() -> None:
    x, other = layer_input(shape=(5, F)), layer_input(shape=(5, F))
    y = layer_gru(other, U)
    with pytest.raises(InvalidArgument, match="inputs") as info:
        keras_model(x, y)
    assert info.value.extra["argument"] == "inputs"
    with pytest.raises(InvalidArgument, match="outputs"):
        keras_model(x)
    with pytest.raises(InvalidArgument, match="inputs"):
        keras_model(y, y)
    a = layer_input(shape=(5, F), name="dup")
    with pytest.raises(InvalidArgument, match="unique") as info:
        keras_model(a, layer_gru(a, U, name="dup"))
    assert info.value.extra["argument"] == "name"


def _seeded_weights(seed: int) -> list[np.ndarray]:
    clear_session()
    set_random_seed(seed)
    x = layer_input(shape=(None, F))
    y = bidirectional(layer_lstm(x, U, return_sequences=True), layer_gru(units=U))
    spec = keras_model(x, layer_dense(y, 2)).to_spec()
    return [w for layer in spec.layers for w in layer.weights.values()]


def test_same_seed_same_weights() -> None:
    first, again, other = _seeded_weights(11), _seeded_weights(11), _seeded_weights(12)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_model_weights_round_trip_and_spec_copies() -> None:
    model = _stack()
    weights = [w + 1.0 for w in model.get_weights()]  # type: ignore[attr-defined]
    model.set_weights(weights)  # type: ignore[attr-defined]
    spec = model.to_spec()  # type: ignore[attr-defined]
    spec_weights = [w for layer in spec.layers for w in layer.weights.values()]
    for a, b in zip(weights, spec_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    spec_weights[0][...] = 0  # a spec owns its arrays
    assert np.array_equal(model.get_weights()[0], weights[0])  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgument, match="weights"):
        model.set_weights(weights[:-1])  # type: ignore[attr-defined]


def test_summary_counts_parameters_as_keras() -> None:
    text = _stack().summary()  # type: ignore[attr-defined]
    assert 'Model: "stack"' in text
    assert "simple_rnn (SimpleRNN)" in text and "(None, 5, 4)" in text
    # SimpleRNN 3*4 + 4*4 + 4 = 32; GRU(reset_after) 4*12 + 4*12 + 2*12 = 120; Dense 4*2 + 2 = 10
    assert "| 32" in text and "| 120" in text and text.rstrip().endswith("Total params: 162")
    x = layer_input(shape=(5, F), name="x")
    functional = keras_model(x, layer_gru(x, U)).summary()
    assert "x (InputLayer)" in functional and "x[0][0]" in functional
