"""Builders of small hand-made layer configs, weights and specs for the numpy reference tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnserve.importers.keras_layers import normalise_layer
from rnnserve.spec import InputSpec, LayerSpec, ModelSpec, TensorRef

GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}


def rnn_config(class_name: str, units: int, **overrides: Any) -> dict[str, Any]:
    """The importers' normalised defaults (every key present), then `overrides` as given, unchecked, so tests can
    also build the configs that the reference and the exporter must refuse."""
    name = overrides.pop("name", class_name.lower())
    return {**normalise_layer(class_name, {"units": units}, name, "3"), **overrides}


def rnn_weights(
    class_name: str,
    features: int,
    units: int,
    rng: np.random.Generator,
    *,
    use_bias: bool = True,
    reset_after: bool = True,
) -> dict[str, np.ndarray]:
    """Random weights with Keras names and shapes (float32, as files store them)."""
    width = GATES[class_name] * units
    weights = {
        "kernel": rng.normal(0.0, 0.6, (features, width)).astype(np.float32),
        "recurrent_kernel": rng.normal(0.0, 0.6, (units, width)).astype(np.float32),
    }
    if use_bias:
        shape = (2, width) if class_name == "GRU" and reset_after else (width,)
        weights["bias"] = rng.normal(0.0, 0.3, shape).astype(np.float32)
    return weights


def rnn_layer(
    class_name: str,
    name: str,
    features: int,
    units: int,
    rng: np.random.Generator,
    source: str,
    *,
    initial_state: tuple[TensorRef, ...] = (),
    **overrides: Any,
) -> LayerSpec:
    config = rnn_config(class_name, units, name=name, **overrides)
    weights = rnn_weights(
        class_name, features, units, rng, use_bias=config["use_bias"], reset_after=config.get("reset_after", True)
    )
    return LayerSpec(class_name, name, config, weights, (TensorRef(source),), initial_state)


def bidirectional_layer(
    class_name: str,
    name: str,
    features: int,
    units: int,
    rng: np.random.Generator,
    source: str,
    merge_mode: str | None = "concat",
    **overrides: Any,
) -> LayerSpec:
    inner = rnn_config(class_name, units, name="forward_" + name, **overrides)
    weights = {
        f"{direction}/{key}": value
        for direction in ("forward", "backward")
        for key, value in rnn_weights(class_name, features, units, rng, use_bias=inner["use_bias"]).items()
    }
    config = {"name": name, "merge_mode": merge_mode, "layer": {"class_name": class_name, "config": inner}}
    return LayerSpec("Bidirectional", name, config, weights, (TensorRef(source),))


def dense_config(units: int, activation: str = "linear", use_bias: bool = True) -> dict[str, Any]:
    return {"name": "dense", "units": units, "activation": activation, "use_bias": use_bias}


def dense_layer(name: str, features: int, units: int, rng: np.random.Generator, source: str, **kw: Any) -> LayerSpec:
    config = dense_config(units, **kw)
    weights = {"kernel": rng.normal(0.0, 0.6, (features, units)).astype(np.float32)}
    if config["use_bias"]:
        weights["bias"] = rng.normal(0.0, 0.3, (units,)).astype(np.float32)
    return LayerSpec("Dense", name, config, weights, (TensorRef(source),))


def embedding_layer(
    name: str, vocab: int, dim: int, rng: np.random.Generator, source: str, mask_zero: bool = True
) -> LayerSpec:
    config = {"name": name, "input_dim": vocab, "output_dim": dim, "mask_zero": mask_zero}
    weights = {"embeddings": rng.normal(0.0, 0.6, (vocab, dim)).astype(np.float32)}
    return LayerSpec("Embedding", name, config, weights, (TensorRef(source),))


def model(
    inputs: tuple[InputSpec, ...],
    layers: tuple[LayerSpec, ...],
    outputs: dict[str, TensorRef],
    keras_version: str = "3",
) -> ModelSpec:
    return ModelSpec(
        name="m",
        inputs=inputs,
        layers=layers,
        outputs=tuple(outputs.values()),
        output_names=tuple(outputs),
        keras_version=keras_version,
    )


def close(actual: np.ndarray, expected: np.ndarray) -> bool:
    """The project tolerance: |d| <= 1e-5 + 1e-5*|y|, shapes equal."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    return actual.shape == expected.shape and bool(np.all(np.abs(actual - expected) <= 1e-5 + 1e-5 * np.abs(expected)))
