"""Small seeded models for the service tests, as hand-built `ModelSpec`s (full Keras 3 configs, Keras weight names).

Each builder returns a spec named after its model; `MODELS` maps every name the tests serve to its builder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rnnserve.importers.keras_layers import normalise_layer
from rnnserve.spec import InputSpec, LayerSpec, ModelSpec, TensorRef

FEATURES = 3
VOCAB = 10
GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}


def rnn_config(class_name: str, name: str, units: int, **overrides: Any) -> dict[str, Any]:
    """The importers' normalised defaults (every key present), returning sequences, then `overrides` as given."""
    return {**normalise_layer(class_name, {"units": units}, name, "3"), "return_sequences": True, **overrides}


def rnn_weights(class_name: str, features: int, units: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    width = GATES[class_name] * units
    bias_shape = (2, width) if class_name == "GRU" else (width,)
    return {
        "kernel": rng.normal(0.0, 0.5, (features, width)).astype(np.float32),
        "recurrent_kernel": rng.normal(0.0, 0.5, (units, width)).astype(np.float32),
        "bias": rng.normal(0.0, 0.2, bias_shape).astype(np.float32),
    }


def rnn(class_name: str, name: str, source: str, features: int, units: int, rng: np.random.Generator, **kw: Any):
    config = rnn_config(class_name, name, units, **kw)
    return LayerSpec(class_name, name, config, rnn_weights(class_name, features, units, rng), (TensorRef(source),))


def dense(name: str, source: str, features: int, units: int, rng: np.random.Generator) -> LayerSpec:
    config = {"name": name, "units": units, "activation": "linear", "use_bias": True}
    weights = {
        "kernel": rng.normal(0.0, 0.5, (features, units)).astype(np.float32),
        "bias": rng.normal(0.0, 0.2, (units,)).astype(np.float32),
    }
    return LayerSpec("Dense", name, config, weights, (TensorRef(source),))


def spec(
    name: str, inputs: tuple[InputSpec, ...], layers: tuple[LayerSpec, ...], outputs: dict[str, TensorRef]
) -> ModelSpec:
    return ModelSpec(name, inputs, layers, tuple(outputs.values()), tuple(outputs))


def single_rnn(class_name: str, name: str, units: int, seed: int) -> ModelSpec:
    rng = np.random.default_rng(seed)
    x = InputSpec("x", (None, None, FEATURES))
    return spec(name, (x,), (rnn(class_name, "rnn", "x", FEATURES, units, rng),), {"y": TensorRef("rnn")})


def simple() -> ModelSpec:
    return single_rnn("SimpleRNN", "simple", 4, seed=1)


def gru() -> ModelSpec:
    return single_rnn("GRU", "gru", 5, seed=2)


def lstm() -> ModelSpec:
    return single_rnn("LSTM", "lstm", 4, seed=3)


def stacked() -> ModelSpec:
    """LSTM(4) -> GRU(3) -> Dense(2), all per timestep: three layers, three states."""
    rng = np.random.default_rng(4)
    x = InputSpec("x", (None, None, FEATURES))
    layers = (
        rnn("LSTM", "lstm", "x", FEATURES, 4, rng),
        rnn("GRU", "gru", "lstm", 4, 3, rng),
        dense("dense", "gru", 3, 2, rng),
    )
    return spec("stacked", (x,), layers, {"y": TensorRef("dense")})


def lstm_state() -> ModelSpec:
    """A Functional-style model with three outputs: the sequence and the final h and c."""
    rng = np.random.default_rng(5)
    x = InputSpec("x", (None, None, FEATURES))
    layer = rnn("LSTM", "rnn", "x", FEATURES, 3, rng, return_state=True)
    return spec(
        "lstm_state", (x,), (layer,), {"y": TensorRef("rnn", 0), "h": TensorRef("rnn", 1), "c": TensorRef("rnn", 2)}
    )


def tokens() -> ModelSpec:
    """Embedding(mask_zero) -> GRU(3) returning the last output only: int64 input, no time axis in the output."""
    rng = np.random.default_rng(6)
    ids = InputSpec("ids", (None, None), "int64")
    embedding = LayerSpec(
        "Embedding",
        "embedding",
        {"name": "embedding", "input_dim": VOCAB, "output_dim": 4, "mask_zero": True},
        {"embeddings": rng.normal(0.0, 0.5, (VOCAB, 4)).astype(np.float32)},
        (TensorRef("ids"),),
    )
    layer = rnn("GRU", "rnn", "embedding", 4, 3, rng, return_sequences=False)
    return spec("tokens", (ids,), (embedding, layer), {"y": TensorRef("rnn")})


def bidirectional() -> ModelSpec:
    rng = np.random.default_rng(7)
    x = InputSpec("x", (None, None, FEATURES))
    inner = rnn_config("GRU", "forward_bi", 3)
    weights = {
        f"{direction}/{key}": value
        for direction in ("forward", "backward")
        for key, value in rnn_weights("GRU", FEATURES, 3, rng).items()
    }
    config = {"name": "bi", "merge_mode": "concat", "layer": {"class_name": "GRU", "config": inner}}
    layer = LayerSpec("Bidirectional", "bi", config, weights, (TensorRef("x"),))
    return spec("bidirectional", (x,), (layer,), {"y": TensorRef("bi")})


def time_major() -> ModelSpec:
    """A Keras 2 style time-major SimpleRNN: input (T, B, F), sequence output (T, B, U)."""
    rng = np.random.default_rng(8)
    x = InputSpec("x", (None, None, FEATURES))
    layer = rnn("SimpleRNN", "rnn", "x", FEATURES, 3, rng, time_major=True)
    return spec("time_major", (x,), (layer,), {"y": TensorRef("rnn")})


MODELS: dict[str, Callable[[], ModelSpec]] = {
    "simple": simple,
    "gru": gru,
    "lstm": lstm,
    "stacked": stacked,
    "lstm_state": lstm_state,
    "tokens": tokens,
    "bidirectional": bidirectional,
    "time_major": time_major,
}
