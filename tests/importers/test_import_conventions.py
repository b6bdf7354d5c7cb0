"""The normalised-config conventions other parts of rnnserve rely on, checked on real Keras 3 and Keras 2 files."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
from importer_files import FILES, layer_config, model_files, with_config

from rnnserve.importers import load_spec
from rnnserve.signature import signature_from_spec
from rnnserve.spec import TensorRef, layer_output_count

_RNN_KEYS = {
    "name", "units", "activation", "use_bias", "kernel_initializer", "recurrent_initializer", "bias_initializer",
    "kernel_regularizer", "recurrent_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
    "recurrent_constraint", "bias_constraint", "dropout", "recurrent_dropout", "return_sequences", "return_state",
    "go_backwards", "stateful", "unroll", "zero_output_for_mask", "seed", "time_major",
}  # fmt: skip
KEYS = {
    "SimpleRNN": _RNN_KEYS,
    "GRU": _RNN_KEYS | {"recurrent_activation", "reset_after"},
    "LSTM": _RNN_KEYS | {"recurrent_activation", "unit_forget_bias"},
    "Dense": {
        "name",
        "units",
        "activation",
        "use_bias",
        "kernel_initializer",
        "bias_initializer",
        "kernel_regularizer",
        "bias_regularizer",
        "activity_regularizer",
        "kernel_constraint",
        "bias_constraint",
    },  # fmt: skip
    "Embedding": {
        "name",
        "input_dim",
        "output_dim",
        "embeddings_initializer",
        "embeddings_regularizer",
        "activity_regularizer",
        "embeddings_constraint",
        "mask_zero",
    },  # fmt: skip
    "Masking": {"name", "mask_value"},
    "Dropout": {"name", "rate", "noise_shape", "seed"},
    "Bidirectional": {"name", "merge_mode", "layer"},
    "TimeDistributed": {"name", "layer"},
}


@cache
def _configs() -> list[tuple[str, str, dict[str, Any]]]:
    """(file, class, config) of every layer, wrapped layers included, over every committed file."""
    out = []
    for path in model_files():
        for layer in load_spec(path).layers:
            out.append((path.name, layer.class_name, dict(layer.config)))
            if "layer" in layer.config:
                inner = layer.config["layer"]
                out.append((path.name, inner["class_name"], dict(inner["config"])))
    return out


def test_every_config_of_a_class_has_the_same_keys_in_both_keras_generations() -> None:
    configs = _configs()
    assert {cls for _, cls, _ in configs} == set(KEYS)
    for file, cls, config in configs:
        assert set(config) == KEYS[cls], f"{file} {cls}"


def test_wrapped_layers_are_class_and_config() -> None:
    for _, cls, config in _configs():
        if cls in ("Bidirectional", "TimeDistributed"):
            assert set(config["layer"]) == {"class_name", "config"}


def test_activations_are_canonical_per_keras_version() -> None:
    k2 = load_spec(FILES / "k2_seq_mixed.h5")
    assert k2.layer("simple_rnn").config["activation"] == "linear"
    assert k2.layer("gru").config["recurrent_activation"] == "hard_sigmoid_keras2"  # 0.2x + 0.5 in Keras 2
    assert k2.layer("lstm").config["activation"] == "silu"  # Keras 2 writes "swish"
    k3 = load_spec(FILES / "k3_seq_gru_lstm.keras")
    assert k3.layer("gru").config["recurrent_activation"] == "hard_sigmoid"
    k3_rnn = load_spec(FILES / "k3_seq_simple_rnn.keras")
    assert k3_rnn.layer("simple_rnn_1").config["activation"] == "linear"  # activation=None
    assert k3_rnn.layer("dense").config["activation"] == "silu"


def test_keras2_only_keys_get_keras3_defaults_and_time_major_is_kept() -> None:
    gru = load_spec(FILES / "k2_seq_mixed.h5").layer("gru").config
    assert gru["zero_output_for_mask"] is False and gru["seed"] is None and gru["reset_after"] is True
    assert load_spec(FILES / "k2_func_time_major.h5").layer("lstm").config["time_major"] is True
    assert load_spec(FILES / "k3_seq_gru_lstm.keras").layer("gru").config["time_major"] is False


def test_regularizers_constraints_and_dropout_are_kept_as_given() -> None:
    lstm = load_spec(FILES / "k3_seq_gru_lstm.keras").layer("lstm").config
    assert (lstm["dropout"], lstm["recurrent_dropout"], lstm["seed"]) == (0.2, 0.1, 7)
    assert lstm["kernel_regularizer"]["class_name"] == "L2"
    assert lstm["kernel_regularizer"]["config"]["l2"] == pytest.approx(0.01)
    assert lstm["recurrent_constraint"]["class_name"] == "MaxNorm"
    assert lstm["bias_regularizer"] is None


@pytest.mark.parametrize("file", ["k3_func_masking_bidi.keras", "k3_func_masking_bidi.h5", "k2_func_emb_bidi.h5"])
def test_bidirectional_forces_zero_output_for_mask_to_return_sequences(file: str) -> None:
    for layer in load_spec(FILES / file).layers:
        if layer.class_name == "Bidirectional":
            inner = layer.config["layer"]["config"]
            assert inner["zero_output_for_mask"] is inner["return_sequences"]
            assert inner["go_backwards"] is False


@pytest.mark.parametrize("file", ["k3_func_emb_mask.keras", "k3_func_masking_bidi.keras"])
def test_keras3_mask_ops_are_folded_away(file: str) -> None:
    spec = load_spec(FILES / file)
    classes = [layer.class_name for layer in spec.layers]
    assert "NotEqual" not in classes and "Any" not in classes
    assert "NotEqual" in str(spec.keras_config)  # the raw config keeps them
    masking = [layer for layer in spec.layers if layer.class_name in ("Embedding", "Masking")]
    assert masking and all(m.config.get("mask_zero", True) for m in masking)


@pytest.mark.parametrize("file", ["k3_func_lstm_state.keras", "k3_func_lstm_state.h5", "k2_func_lstm_state.h5"])
def test_initial_state_inputs(file: str) -> None:
    spec = load_spec(FILES / file)
    assert spec.layer("lstm").initial_state == (TensorRef("h0"), TensorRef("c0"))
    assert spec.output_names == ("head", "lstm:1", "lstm:2")
    assert dict(signature_from_spec(spec).initial_state_inputs) == {"lstm/h": "h0", "lstm/c": "c0"}


def test_bidirectional_initial_state_is_forward_then_backward() -> None:
    spec = load_spec(FILES / "k3_func_bidi_state.keras")
    assert spec.layer("bi").initial_state == (TensorRef("hf"), TensorRef("hb"))
    assert spec.output_names == ("bi", "bi:1", "bi:2")


@pytest.mark.parametrize(
    ("file", "shape"), [("k2_seq_stateful.h5", (2, 5, 3)), ("k3_seq_stateful.keras", (2, None, 3))]
)
def test_stateful_models_keep_their_fixed_batch(file: str, shape: tuple[int | None, ...]) -> None:
    spec = load_spec(FILES / file)
    assert spec.inputs[0].shape == shape
    signature = signature_from_spec(spec)
    assert signature.stateful and signature.batch_size == 2


def test_time_major_signature() -> None:
    assert signature_from_spec(load_spec(FILES / "k2_func_time_major.h5")).time_major


def test_sequential_without_input_layer_takes_its_build_shape(tmp_path: Path) -> None:
    def drop_input_layer(config: dict[str, Any]) -> None:
        config["config"]["layers"] = config["config"]["layers"][1:]

    spec = load_spec(with_config(FILES / "k3_seq_gru_lstm.keras", tmp_path / "m.keras", drop_input_layer))
    assert spec.inputs[0].name == "gru_input" and spec.inputs[0].shape == (None, None, 3)
    assert spec.layers[0].inputs == (TensorRef("gru_input"),)


def test_an_input_read_by_an_embedding_is_int64(tmp_path: Path) -> None:
    def float_tokens(config: dict[str, Any]) -> None:
        layer_config(config, "tokens")["config"]["dtype"] = "float32"

    spec = load_spec(with_config(FILES / "k3_func_emb_mask.keras", tmp_path / "m.keras", float_tokens))
    assert spec.inputs[0].dtype == "int64"


def test_merge_mode_none_gives_two_outputs(tmp_path: Path) -> None:
    def unmerged(config: dict[str, Any]) -> None:
        layer_config(config, "bi")["config"]["merge_mode"] = None
        config["config"]["output_layers"] = [["bi", 0, k] for k in range(4)]

    spec = load_spec(with_config(FILES / "k3_func_bidi_state.keras", tmp_path / "m.keras", unmerged))
    assert spec.layer("bi").config["merge_mode"] is None
    assert layer_output_count(spec.layer("bi")) == 4  # forward y, backward y, forward h, backward h
    assert spec.output_names == ("bi", "bi:1", "bi:2", "bi:3")
