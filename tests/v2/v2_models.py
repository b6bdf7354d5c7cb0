"""Small seeded models for the /v2 tests, built with the layer API (`rnnserve.modeling`)."""

from __future__ import annotations

from collections.abc import Callable

from rnnserve.modeling import (
    bidirectional,
    clear_session,
    keras_model,
    layer_dense,
    layer_embedding,
    layer_gru,
    layer_input,
    layer_lstm,
    layer_simple_rnn,
    set_random_seed,
)
from rnnserve.spec import ModelSpec

FEATURES = 3
VOCAB = 10


def gru() -> ModelSpec:
    """GRU(5) -> Dense(2) per timestep: output `dense` [B, T, 2], one state `gru/h` [B, 5]."""
    clear_session()  # automatic layer names start afresh, whatever the suite built before
    set_random_seed(11)
    x = layer_input(shape=(None, FEATURES), name="x")
    y = layer_dense(layer_gru(x, units=5, return_sequences=True), units=2)
    return keras_model(x, y, name="gru").to_spec()


def lstm() -> ModelSpec:
    """LSTM(4) per timestep: output `lstm` [B, T, 4], states `lstm/h` and `lstm/c` [B, 4]."""
    clear_session()  # automatic layer names start afresh, whatever the suite built before
    set_random_seed(12)
    x = layer_input(shape=(None, FEATURES), name="x")
    return keras_model(x, layer_lstm(x, units=4, return_sequences=True), name="lstm").to_spec()


def tokens() -> ModelSpec:
    """Embedding(mask_zero) -> SimpleRNN(3): an INT64 input `ids` [B, T]."""
    clear_session()  # automatic layer names start afresh, whatever the suite built before
    set_random_seed(13)
    ids = layer_input(shape=(None,), dtype="int64", name="ids")
    embedded = layer_embedding(ids, input_dim=VOCAB, output_dim=4, mask_zero=True)
    return keras_model(ids, layer_simple_rnn(embedded, units=3, return_sequences=True), name="tokens").to_spec()


def bidi() -> ModelSpec:
    """Bidirectional GRU: stateless only (it reads the sequence from both ends)."""
    clear_session()  # automatic layer names start afresh, whatever the suite built before
    set_random_seed(14)
    x = layer_input(shape=(None, FEATURES), name="x")
    return keras_model(x, bidirectional(x, layer_gru(units=2, return_sequences=True)), name="bidi").to_spec()


MODELS: dict[str, Callable[[], ModelSpec]] = {"gru": gru, "lstm": lstm, "tokens": tokens, "bidi": bidi}
