"""Layer functions: R's `object` rule, argument validation, Keras 3 configs and freshly initialised weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from rnnserve.errors import InvalidArgument
from rnnserve.modeling import (
    KerasTensor,
    Sequential,
    bidirectional,
    constraint_maxnorm,
    initializer_constant,
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
    time_distributed,
)
from rnnserve.modeling.recurrent import GRU, LSTM, SimpleRNN

F, U = 3, 4

# ---- the object rule ---------------------------------------------------------------------------------------------


def test_object_none_returns_the_layer() -> None:
    layer = layer_simple_rnn(units=U)
    assert isinstance(layer, SimpleRNN) and not layer.built


def test_object_sequential_adds_and_returns_the_model() -> None:
    model = keras_model_sequential(input_shape=(5, F))
    assert layer_gru(model, U) is model
    assert layer_dense(model, 2) is model
    assert [layer.class_name for layer in model.layers] == ["GRU", "Dense"]
    assert all(layer.built for layer in model.layers)  # the input is known, so layers build as they are added


def test_object_tensor_applies_the_layer() -> None:
    x = layer_input(shape=(None, F))
    y = layer_lstm(x, U, return_sequences=True)
    assert isinstance(y, KerasTensor) and y.shape == (None, None, U)
    assert layer_dense(y, 2).shape == (None, None, 2)


@pytest.mark.parametrize(("function", "count"), [(layer_simple_rnn, 2), (layer_gru, 2), (layer_lstm, 3)])
def test_return_state_gives_a_list(function: Callable[..., Any], count: int) -> None:
    outputs = function(layer_input(shape=(7, F)), U, return_state=True)
    assert isinstance(outputs, list) and len(outputs) == count
    assert outputs[0].shape == (None, U) and all(s.shape == (None, U) for s in outputs[1:])


def test_bidirectional_return_state_gives_forward_then_backward_states() -> None:
    outputs = bidirectional(layer_input(shape=(7, F)), layer_lstm(units=U, return_state=True))
    assert [t.shape for t in outputs] == [(None, 2 * U)] + [(None, U)] * 4


@pytest.mark.parametrize("bad", [np.zeros((2, 5, F)), "x", 3])
def test_object_of_another_kind_is_rejected(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="object") as info:
        layer_simple_rnn(bad, U)
    assert info.value.extra["argument"] == "object"


def test_a_layer_is_applied_once() -> None:
    layer = layer_gru(units=U)
    layer(layer_input(shape=(5, F)))
    with pytest.raises(InvalidArgument, match="already used"):
        layer(layer_input(shape=(5, F)))
    model = keras_model_sequential([layer_dense(units=2)], input_shape=(F,))
    with pytest.raises(InvalidArgument, match="already used"):
        keras_model_sequential([model.layers[0]], input_shape=(F,))


# ---- validation: every bad argument is named ---------------------------------------------------------------------

BAD_ARGUMENTS: list[tuple[Callable[..., Any], dict[str, Any], str]] = [
    (layer_simple_rnn, {"units": 0}, "units"),
    (layer_simple_rnn, {"units": -3}, "units"),
    (layer_simple_rnn, {"units": 2.5}, "units"),
    (layer_simple_rnn, {"units": "8"}, "units"),
    (layer_simple_rnn, {"units": True}, "units"),
    (layer_simple_rnn, {"units": None}, "units"),
    (layer_simple_rnn, {"units": U, "activation": "tanhh"}, "activation"),
    (layer_simple_rnn, {"units": U, "activation": "glu"}, "activation"),
    (layer_simple_rnn, {"units": U, "activation": "hard_sigmoid_keras2"}, "activation"),
    (layer_gru, {"units": U, "recurrent_activation": "sigmoidd"}, "recurrent_activation"),
    (layer_lstm, {"units": U, "dropout": 1.0}, "dropout"),
    (layer_lstm, {"units": U, "dropout": -0.1}, "dropout"),
    (layer_gru, {"units": U, "recurrent_dropout": 1.5}, "recurrent_dropout"),
    (layer_simple_rnn, {"units": U, "kernel_initializer": "glorot"}, "kernel_initializer"),
    (layer_lstm, {"units": U, "recurrent_initializer": None}, "recurrent_initializer"),
    (layer_gru, {"units": U, "kernel_regularizer": "l3"}, "kernel_regularizer"),
    (layer_gru, {"units": U, "bias_constraint": 5}, "bias_constraint"),
    (layer_lstm, {"units": U, "return_sequences": "yes"}, "return_sequences"),
    (layer_lstm, {"units": U, "unit_forget_bias": 1}, "unit_forget_bias"),
    (layer_gru, {"units": U, "reset_after": None}, "reset_after"),
    (layer_simple_rnn, {"units": U, "name": "a/b"}, "name"),
    (layer_simple_rnn, {"units": U, "dtype": "float64"}, "dtype"),
    (layer_simple_rnn, {"units": U, "seed": -1}, "seed"),
    (layer_simple_rnn, {"units": U, "zero_output_for_mask": "no"}, "zero_output_for_mask"),
    # Keras 3 rejects these (SEMANTICS §7)
    (layer_simple_rnn, {"units": U, "implementation": 1}, "implementation"),
    (layer_simple_rnn, {"units": U, "time_major": True}, "time_major"),
    (layer_simple_rnn, {"units": U, "batch_input_shape": (2, 5, F)}, "batch_input_shape"),
    (layer_lstm, {"units": U, "batch_size": 2}, "batch_size"),
    (layer_gru, {"units": U, "time_major": True}, "time_major"),
    (layer_lstm, {"units": U, "time_major": True}, "time_major"),
    (layer_gru, {"units": U, "implementation": 3}, "implementation"),
    (layer_lstm, {"units": U, "weights": []}, "weights"),
    (layer_dense, {"units": 0}, "units"),
    (layer_dense, {"units": 2, "activation": "softmaxx"}, "activation"),
    (layer_embedding, {"input_dim": 0, "output_dim": 2}, "input_dim"),
    (layer_embedding, {"input_dim": 5, "output_dim": 2.5}, "output_dim"),
    (layer_embedding, {"input_dim": 5, "output_dim": 2, "mask_zero": "TRUE"}, "mask_zero"),
    (layer_masking, {"mask_value": "zero"}, "mask_value"),
    (layer_dropout, {"rate": 1.5}, "rate"),
    (layer_dropout, {"rate": None}, "rate"),
]


@pytest.mark.parametrize(("function", "kwargs", "argument"), BAD_ARGUMENTS)
def test_bad_argument_raises_naming_it_and_the_value(
    function: Callable[..., Any], kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        function(**kwargs)
    assert info.value.extra["argument"] == argument
    assert argument in str(info.value) and repr(kwargs[argument]) in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"layer": layer_dense(units=2)}, "layer"),
        ({"layer": "lstm"}, "layer"),
        ({"layer": layer_lstm(units=U), "merge_mode": "max"}, "merge_mode"),
        ({"layer": layer_lstm(units=U), "backward_layer": layer_lstm(units=U, go_backwards=True)}, "backward_layer"),
    ],
)
def test_bad_bidirectional_arguments(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        bidirectional(**kwargs)
    assert info.value.extra["argument"] == argument


def test_bidirectional_without_merging_gives_both_directions() -> None:
    outputs = bidirectional(layer_input(shape=(7, F)), layer_gru(units=U, return_state=True), merge_mode=None)
    assert [t.shape for t in outputs] == [(None, U)] * 4  # forward y, backward y, forward h, backward h


def test_backward_layer_refusal_says_only_null_is_supported() -> None:
    with pytest.raises(InvalidArgument, match="only NULL"):
        bidirectional(layer=layer_gru(units=U), backward_layer=layer_gru(units=U, go_backwards=True))


def test_time_distributed_takes_a_dense_layer() -> None:
    with pytest.raises(InvalidArgument) as info:
        time_distributed(layer=layer_lstm(units=U))
    assert info.value.extra["argument"] == "layer"


def test_unknown_keyword_is_rejected_like_keras() -> None:
    with pytest.raises(InvalidArgument, match="Unrecognized keyword arguments passed to GRU: {'foo': 1}"):
        layer_gru(units=U, foo=1)


def test_r_doubles_are_accepted_as_integers() -> None:
    assert layer_lstm(units=8.0).units == 8
    assert layer_embedding(input_dim=10.0, output_dim=3.0).input_dim == 10


def test_bad_calls_on_tensors() -> None:
    with pytest.raises(InvalidArgument, match="initial_state"):
        layer_lstm(units=U)(layer_input(shape=(5, F)), initial_state=[layer_input(shape=(U,))])
    with pytest.raises(InvalidArgument, match="initial_state"):
        layer_gru(units=U)(layer_input(shape=(5, F)), initial_state=[layer_input(shape=(U + 1,))])
    with pytest.raises(InvalidArgument, match="object"):
        layer_gru(layer_input(shape=(F,)), U)  # no time axis
    with pytest.raises(InvalidArgument, match="layer_embedding"):
        layer_gru(layer_input(shape=(5, F), dtype="int32"), U)
    with pytest.raises(InvalidArgument, match="unroll"):
        layer_gru(layer_input(shape=(None, F)), U, unroll=True)


# ---- configs -----------------------------------------------------------------------------------------------------

COMMON_KEYS = ["name", "trainable", "dtype", "return_sequences", "return_state", "go_backwards", "stateful", "unroll",
               "zero_output_for_mask", "units", "activation"]  # fmt: skip
INIT_KEYS = ["kernel_initializer", "recurrent_initializer", "bias_initializer"]
PENALTY_KEYS = ["kernel_regularizer", "recurrent_regularizer", "bias_regularizer", "activity_regularizer",
                "kernel_constraint", "recurrent_constraint", "bias_constraint",
                "dropout", "recurrent_dropout"]  # fmt: skip


@pytest.mark.parametrize(
    ("layer", "keys"),
    [
        (SimpleRNN(U), [*COMMON_KEYS, "use_bias", *INIT_KEYS, *PENALTY_KEYS]),
        (GRU(U), [*COMMON_KEYS, "recurrent_activation", "use_bias", *INIT_KEYS, *PENALTY_KEYS, "reset_after", "seed"]),
        (LSTM(U), [*COMMON_KEYS, "recurrent_activation", "use_bias", *INIT_KEYS, "unit_forget_bias", *PENALTY_KEYS,
                   "seed"]),
    ],
)  # fmt: skip
def test_recurrent_config_keys_are_keras_3s_in_order(layer: Any, keys: list[str]) -> None:
    assert list(layer.get_config()) == keys
    spec = layer.spec_config()
    assert spec["time_major"] is False and "seed" in spec and "cell" not in spec


def test_config_values() -> None:
    layer = layer_gru(
        units=U, activation=None, recurrent_activation="swish", dropout=0.3, recurrent_dropout=0.2, seed=7,
        kernel_regularizer=regularizer_l2(0.01), recurrent_constraint=constraint_maxnorm(2.0),
        activity_regularizer="l1", zero_output_for_mask=True, name="enc",
    )  # fmt: skip
    config = layer.get_config()
    assert config["name"] == "enc" and config["activation"] == "linear" and config["recurrent_activation"] == "silu"
    assert (config["dropout"], config["recurrent_dropout"], config["seed"]) == (0.3, 0.2, 7)
    assert config["zero_output_for_mask"] is True
    assert config["kernel_regularizer"]["config"] == {"l2": 0.01}
    assert config["recurrent_constraint"] == {
        "module": "keras.constraints", "class_name": "MaxNorm", "config": {"max_value": 2.0, "axis": 0},
        "registered_name": None,
    }  # fmt: skip
    assert config["activity_regularizer"]["class_name"] == "L1"
    assert config["bias_regularizer"] is None and config["kernel_constraint"] is None
    assert config["dtype"] == {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                               "registered_name": None}  # fmt: skip
    assert layer.spec_config()["kernel_regularizer"] == config["kernel_regularizer"]


def test_simple_rnn_spec_config_has_seed_although_keras_does_not_store_it() -> None:
    layer = layer_simple_rnn(units=U, seed=5)
    assert "seed" not in layer.get_config() and layer.spec_config()["seed"] == 5


def test_core_layer_configs() -> None:
    dense = layer_dense(units=2, activation="relu")
    assert list(dense.get_config()) == ["name", "trainable", "dtype", "units", "activation", "use_bias",
                                        "kernel_initializer", "bias_initializer", "kernel_regularizer",
                                        "bias_regularizer", "kernel_constraint", "bias_constraint",
                                        "quantization_config"]  # fmt: skip
    assert dense.spec_config()["activity_regularizer"] is None
    emb = layer_embedding(input_dim=10, output_dim=4, mask_zero=True)
    assert emb.get_config()["embeddings_initializer"]["class_name"] == "RandomUniform"
    assert emb.get_config()["mask_zero"] is True
    assert layer_masking(mask_value=-1).get_config()["mask_value"] == -1.0
    assert layer_dropout(rate=0.25, seed=3).get_config() | {"name": None} == {
        "name": None, "trainable": True, "dtype": dense.get_config()["dtype"], "rate": 0.25, "seed": 3,
        "noise_shape": None,
    }  # fmt: skip


def test_embedding_input_length_is_deprecated() -> None:
    with pytest.warns(UserWarning, match="input_length"):
        layer_embedding(input_dim=10, output_dim=4, input_length=5)


def test_automatic_names_are_unique_like_keras() -> None:
    names = [layer_simple_rnn(units=U).name for _ in range(3)] + [layer_gru(units=U).name, layer_dense(units=1).name]
    assert names == ["simple_rnn", "simple_rnn_1", "simple_rnn_2", "gru", "dense"]
    assert layer_lstm(units=U, name="encoder").name == "encoder"
    assert [Sequential().name, Sequential().name] == ["sequential", "sequential_1"]


# ---- weights -----------------------------------------------------------------------------------------------------


def _built(layer: Any, features: int = F) -> Any:
    layer(layer_input(shape=(5, features)))
    return layer


@pytest.mark.parametrize(
    ("layer", "shapes"),
    [
        (SimpleRNN(U), {"kernel": (F, U), "recurrent_kernel": (U, U), "bias": (U,)}),
        (GRU(U), {"kernel": (F, 3 * U), "recurrent_kernel": (U, 3 * U), "bias": (2, 3 * U)}),
        (GRU(U, reset_after=False), {"kernel": (F, 3 * U), "recurrent_kernel": (U, 3 * U), "bias": (3 * U,)}),
        (LSTM(U), {"kernel": (F, 4 * U), "recurrent_kernel": (U, 4 * U), "bias": (4 * U,)}),
        (LSTM(U, use_bias=False), {"kernel": (F, 4 * U), "recurrent_kernel": (U, 4 * U)}),
    ],
)
def test_weight_names_order_and_shapes(layer: Any, shapes: dict[str, tuple[int, ...]]) -> None:
    weights = _built(layer).weights
    assert [(k, v.shape) for k, v in weights.items()] == list(shapes.items())
    assert all(v.dtype == np.float32 for v in weights.values())


def test_default_initial_values() -> None:
    gru = _built(GRU(U))
    np.testing.assert_array_equal(gru.weights["bias"], np.zeros((2, 3 * U)))
    recurrent = gru.weights["recurrent_kernel"].astype(np.float64)  # orthogonal over all three gates together
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(U), atol=1e-5)
    assert np.abs(gru.weights["kernel"]).max() <= np.sqrt(6 / (F + 3 * U))
    lstm = _built(LSTM(U))
    np.testing.assert_array_equal(lstm.weights["bias"], np.r_[np.zeros(U), np.ones(U), np.zeros(2 * U)])
    lstm = _built(LSTM(U, unit_forget_bias=False, bias_initializer=initializer_constant(0.5)))
    np.testing.assert_array_equal(lstm.weights["bias"], np.full(4 * U, 0.5))
    lstm = _built(LSTM(U, bias_initializer=initializer_constant(0.5)))  # f block ones, the rest the initializer
    np.testing.assert_array_equal(lstm.weights["bias"], np.r_[np.full(U, 0.5), np.ones(U), np.full(2 * U, 0.5)])


def test_bidirectional_copies_the_layer_both_ways() -> None:
    inner = layer_gru(units=U, return_sequences=True, name="enc")
    wrapper = bidirectional(layer=inner, merge_mode="sum")
    assert (wrapper.forward.name, wrapper.backward.name) == ("forward_enc", "backward_enc")
    assert (wrapper.forward.go_backwards, wrapper.backward.go_backwards) == (False, True)
    # Keras forces zero_output_for_mask = return_sequences on both directions (SEMANTICS §4)
    assert wrapper.forward.zero_output_for_mask and wrapper.backward.zero_output_for_mask
    y = wrapper(layer_input(shape=(5, F)))
    assert y.shape == (None, 5, U)
    assert list(wrapper.weights) == [f"{d}/{w}" for d in ("forward", "backward")
                                     for w in ("kernel", "recurrent_kernel", "bias")]  # fmt: skip
    assert not np.array_equal(wrapper.weights["forward/kernel"], wrapper.weights["backward/kernel"])
    config = wrapper.get_config()
    assert config["merge_mode"] == "sum" and config["layer"]["config"]["name"] == "forward_enc"
    assert config["backward_layer"]["config"]["go_backwards"] is True
    spec = wrapper.spec_config()
    assert "backward_layer" not in spec and spec["layer"]["config"]["time_major"] is False


def test_bidirectional_initial_weights() -> None:
    rng = np.random.default_rng(0)
    shapes = [(F, U), (U, U), (U,)] * 2
    given = [rng.normal(size=s).astype(np.float32) for s in shapes]
    wrapper = bidirectional(layer=layer_simple_rnn(units=U), weights=given)
    wrapper(layer_input(shape=(5, F)))
    for expected, actual in zip(given, wrapper.get_weights(), strict=True):
        np.testing.assert_array_equal(expected, actual)


def test_time_distributed_dense() -> None:
    wrapper = time_distributed(layer=layer_dense(units=2, name="head"))
    y = wrapper(layer_input(shape=(None, F)))
    assert y.shape == (None, None, 2)
    assert {k: v.shape for k, v in wrapper.weights.items()} == {"kernel": (F, 2), "bias": (2,)}
    assert wrapper.get_config()["layer"]["config"]["name"] == "head"
    assert wrapper.get_config()["layer"]["build_config"] == {"input_shape": [None, F]}


def test_masks_travel_with_tensors() -> None:
    tokens = layer_input(shape=(None,), dtype="int32")
    emb = layer_embedding(tokens, 10, F, mask_zero=True)
    assert emb.has_mask and emb.shape == (None, None, F)
    assert layer_gru(emb, U, return_sequences=True).has_mask
    assert not layer_gru(emb, U).has_mask
    assert layer_masking(layer_input(shape=(None, F))).has_mask


def test_set_weights_checks_shapes() -> None:
    layer = _built(SimpleRNN(U))
    with pytest.raises(InvalidArgument, match="weights"):
        layer.set_weights([np.zeros((F, U))])
    with pytest.raises(InvalidArgument, match="shape"):
        layer.set_weights([np.zeros((F, U)), np.zeros((U, U)), np.zeros(U + 1)])
    layer.set_weights([np.ones((F, U)), np.ones((U, U)), np.ones(U)])
    assert all(np.all(w == 1) for w in layer.get_weights())
