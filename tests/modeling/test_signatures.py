"""The layer functions have R keras' argument names, order and defaults (None = NULL)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from rnnserve import modeling

_INITIALIZERS_REGS_CONSTRAINTS = [
    ("kernel_initializer", "glorot_uniform"),
    ("recurrent_initializer", "orthogonal"),
    ("bias_initializer", "zeros"),
    ("kernel_regularizer", None),
    ("recurrent_regularizer", None),
    ("bias_regularizer", None),
    ("activity_regularizer", None),
    ("kernel_constraint", None),
    ("recurrent_constraint", None),
    ("bias_constraint", None),
    ("dropout", 0.0),
    ("recurrent_dropout", 0.0),
]
_RNN_FLAGS = [
    ("return_sequences", False),
    ("return_state", False),
    ("go_backwards", False),
    ("stateful", False),
]

EXPECTED: dict[str, list[tuple[str, Any]]] = {
    "layer_simple_rnn": [
        ("object", None), ("units", None), ("activation", "tanh"), ("use_bias", True), *_RNN_FLAGS,
        ("unroll", False), *_INITIALIZERS_REGS_CONSTRAINTS,
    ],
    "layer_gru": [
        ("object", None), ("units", None), ("activation", "tanh"), ("recurrent_activation", "sigmoid"),
        ("use_bias", True), *_RNN_FLAGS, ("unroll", False), ("time_major", False), ("reset_after", True),
        *_INITIALIZERS_REGS_CONSTRAINTS,
    ],
    "layer_lstm": [
        ("object", None), ("units", None), ("activation", "tanh"), ("recurrent_activation", "sigmoid"),
        ("use_bias", True), *_RNN_FLAGS, ("time_major", False), ("unroll", False),
        *_INITIALIZERS_REGS_CONSTRAINTS[:3], ("unit_forget_bias", True), *_INITIALIZERS_REGS_CONSTRAINTS[3:],
    ],
    "bidirectional": [
        ("object", None), ("layer", None), ("merge_mode", "concat"), ("weights", None), ("backward_layer", None),
    ],
    "time_distributed": [("object", None), ("layer", None)],
    "layer_dense": [
        ("object", None), ("units", None), ("activation", None), ("use_bias", True),
        ("kernel_initializer", "glorot_uniform"), ("bias_initializer", "zeros"), ("kernel_regularizer", None),
        ("bias_regularizer", None), ("activity_regularizer", None), ("kernel_constraint", None),
        ("bias_constraint", None),
    ],
    "layer_embedding": [
        ("object", None), ("input_dim", None), ("output_dim", None), ("embeddings_initializer", "uniform"),
        ("embeddings_regularizer", None), ("activity_regularizer", None), ("embeddings_constraint", None),
        ("mask_zero", False), ("input_length", None),
    ],
    "layer_masking": [("object", None), ("mask_value", 0.0)],
    "layer_dropout": [("object", None), ("rate", None), ("noise_shape", None), ("seed", None)],
    "layer_input": [
        ("shape", None), ("batch_size", None), ("dtype", None), ("sparse", None), ("batch_shape", None), ("name", None),
    ],
    "keras_model_sequential": [
        ("layers", None), ("name", None), ("input_shape", None), ("batch_size", None), ("dtype", None),
        ("input_layer_name", None),
    ],
    "keras_model": [("inputs", inspect.Parameter.empty), ("outputs", None), ("name", None)],
}  # fmt: skip

TAKES_KERAS_KWARGS = {
    "layer_simple_rnn", "layer_gru", "layer_lstm", "bidirectional", "time_distributed", "layer_dense",
    "layer_embedding", "layer_masking", "layer_dropout",
}  # fmt: skip


@pytest.mark.parametrize("function", sorted(EXPECTED))
def test_names_defaults_and_order_match_r(function: str) -> None:
    parameters = list(inspect.signature(getattr(modeling, function)).parameters.values())
    named = [(p.name, p.default) for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]
    assert named == EXPECTED[function]
    has_kwargs = parameters[-1].kind is inspect.Parameter.VAR_KEYWORD
    assert has_kwargs == (function in TAKES_KERAS_KWARGS)


def test_r_style_positional_call() -> None:
    """R: layer_lstm(model, 8, "relu") works positionally after `object`."""
    layer = modeling.layer_lstm(None, 8, "relu")
    assert (layer.units, layer.activation) == (8, "relu")


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("initializer_glorot_uniform", [("seed", None)]),
        ("initializer_orthogonal", [("gain", 1.0), ("seed", None)]),
        ("initializer_random_normal", [("mean", 0.0), ("stddev", 0.05), ("seed", None)]),
        ("initializer_random_uniform", [("minval", -0.05), ("maxval", 0.05), ("seed", None)]),
        ("initializer_truncated_normal", [("mean", 0.0), ("stddev", 0.05), ("seed", None)]),
        (
            "initializer_variance_scaling",
            [("scale", 1.0), ("mode", "fan_in"), ("distribution", "truncated_normal"), ("seed", None)],
        ),
        ("initializer_constant", [("value", 0.0)]),
        ("initializer_identity", [("gain", 1.0)]),
        ("regularizer_l1", [("l1", 0.01)]),
        ("regularizer_l2", [("l2", 0.01)]),
        ("regularizer_l1_l2", [("l1", 0.01), ("l2", 0.01)]),
        ("constraint_maxnorm", [("max_value", 2), ("axis", 0)]),
        ("constraint_minmaxnorm", [("min_value", 0.0), ("max_value", 1.0), ("rate", 1.0), ("axis", 0)]),
        ("constraint_unitnorm", [("axis", 0)]),
    ],
)
def test_object_constructors_match_r(function: str, expected: list[tuple[str, Any]]) -> None:
    parameters = inspect.signature(getattr(modeling, function)).parameters.values()
    assert [(p.name, p.default) for p in parameters] == expected
