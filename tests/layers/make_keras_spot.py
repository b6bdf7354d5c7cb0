"""Regenerate tests/layers/fixtures/keras_spot.npz: a few small models run by real Keras, as spot checks of the
numpy reference (GRU both ways, LSTM backwards, masking carry, Bidirectional, initial_state, Keras 2 time_major).

Needs real Keras, so it runs only in /work/venvs/keras, never under pytest:

    KERAS_BACKEND=torch /work/venvs/keras/bin/python tests/layers/make_keras_spot.py

Keys: `<case>/in/<input>`, `<case>/out/<k>` (model outputs in order) and `<case>/w/<layer>/<weight>` with the
weight names the reference uses (`kernel`, `recurrent_kernel`, `bias`, `embeddings`, `forward/...`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

OUT = Path(__file__).parent / "fixtures" / "keras_spot.npz"
TOKENS = np.array([[0, 0, 4, 9, 0, 1, 0, 0], [3, 5, 0, 2, 7, 0, 0, 1]], dtype=np.int64)
rng = np.random.default_rng(0)
arrays: dict[str, np.ndarray] = {}


def _weight_name(path: str) -> str:
    """Keras weight path -> reference name: 'bi/forward_lstm/lstm_cell/kernel:0' -> 'forward/kernel'."""
    parts = path.split(":")[0].split("/")
    direction = next((p.split("_")[0] + "/" for p in parts if p.startswith(("forward_", "backward_"))), "")
    return direction + parts[-1]


def record(case: str, model: Any, feeds: dict[str, np.ndarray]) -> None:
    for layer in model.layers:
        weights = layer.weights
        layer.set_weights([rng.normal(0.0, 0.6, w.shape).astype("float32") for w in weights])
        for w in weights:
            key = w.path if hasattr(w, "path") else w.name
            arrays[f"{case}/w/{layer.name}/{_weight_name(key)}"] = np.asarray(w.numpy())
    ys = model.predict(list(feeds.values()) if len(feeds) > 1 else next(iter(feeds.values())), verbose=0)
    for k, y in enumerate(ys if isinstance(ys, (list, tuple)) else [ys]):
        arrays[f"{case}/out/{k}"] = np.asarray(y)
    for name, value in feeds.items():
        arrays[f"{case}/in/{name}"] = value


def keras3_cases() -> None:
    import keras
    from keras import layers

    def tokens_model(body: Any) -> Any:
        x = keras.Input((8,), dtype="int64", name="tok")
        e = layers.Embedding(10, 3, mask_zero=True, name="emb")(x)
        return keras.Model(x, body(e))

    record("gru_reset_after", tokens_model(layers.GRU(4, return_sequences=True, name="gru")), {"tok": TOKENS})
    gru = layers.GRU(
        4, reset_after=False, activation="relu", recurrent_activation="hard_sigmoid", return_state=True, name="gru"
    )
    record("gru_reset_before", tokens_model(gru), {"tok": TOKENS})
    bi = layers.Bidirectional(layers.LSTM(3, return_sequences=True), name="bi")
    td = layers.TimeDistributed(layers.Dense(4, activation="softmax"), name="td")
    record("bi_lstm_td", tokens_model(lambda e: td(bi(e))), {"tok": TOKENS})
    bi_none = layers.Bidirectional(layers.GRU(3, return_state=True), merge_mode=None, name="bi")
    record("bi_gru_none", tokens_model(lambda e: list(bi_none(e))), {"tok": TOKENS})

    x = rng.normal(size=(2, 6, 3)).astype("float32")
    x[0, [0, 3]] = 0.0
    x[1, 5] = 0.0
    inp = keras.Input((6, 3), name="x")
    lstm = layers.LSTM(5, go_backwards=True, return_sequences=True, return_state=True, name="lstm")
    record("lstm_backwards", keras.Model(inp, lstm(layers.Masking(0.0, name="masking")(inp))), {"x": x})

    inp, h0 = keras.Input((5, 3), name="x"), keras.Input((4,), name="h0")
    y = layers.SimpleRNN(4, return_sequences=True, name="rnn")(inp, initial_state=h0)
    feeds = {"x": rng.normal(size=(2, 5, 3)).astype("float32"), "h0": rng.normal(size=(2, 4)).astype("float32")}
    record("rnn_initial_state", keras.Model([inp, h0], y), feeds)


def keras2_cases() -> None:
    import tf_keras

    layers = tf_keras.layers
    x = rng.normal(size=(6, 2, 3)).astype("float32")  # (time, batch, features)
    x[2, 0] = 0.0
    x[5, 1] = 0.0
    inp = tf_keras.Input(batch_shape=(6, 2, 3), name="x")
    lstm = layers.LSTM(
        4, time_major=True, return_sequences=True, return_state=True, recurrent_activation="hard_sigmoid", name="lstm"
    )
    record("k2_lstm_time_major", tf_keras.Model(inp, lstm(layers.Masking(0.0, name="masking")(inp))), {"x": x})


if __name__ == "__main__":
    keras3_cases()
    keras2_cases()
    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({len(arrays)} arrays)")
