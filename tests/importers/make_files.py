"""Write the importer test files with real Keras (run with /work/venvs/keras/bin/python; never imported by tests).

    /work/venvs/keras/bin/python tests/importers/make_files.py

For every model it writes `files/<name>.keras` and/or `files/<name>.h5` plus `files/<name>.npz`: the weights as
Keras reports them (`layer.weights` / `get_weights()`), keyed `"<layer>|<weight name>"`, where the weight name is
derived from the Keras variable path (`forward/`/`backward/` for Bidirectional, `:0` dropped). `files/meta.json`
records, per model, what Keras says about it: layers (name, class) without InputLayers, input shapes and dtypes,
and the number of outputs. Keras 3 files are written with the torch backend, Keras 2 files with tf_keras; each
flavour runs in its own subprocess so torch and TensorFlow never share a process.

`files/hostile/` is not written here: `vlen_heap_loop.keras` is a copy of an early `k3_func_emb_mask.keras` with
a few bytes of its `model.weights.h5` flipped at random, which makes the HDF5 library loop forever.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

FILES = Path(__file__).resolve().parent / "files"


def _weight_key(layer_name: str, variable_path: str) -> str:
    """`"<layer>|<normalised name>"` from a Keras variable path (Keras 3 `v.path`, Keras 2 `v.name`)."""
    parts = variable_path.split("/")
    base = parts[-1].removesuffix(":0")
    direction = next((p.split("_")[0] for p in parts[:-1] if p.startswith(("forward_", "backward_"))), None)
    return f"{layer_name}|{direction}/{base}" if direction else f"{layer_name}|{base}"


def _record(model: Any, stem: str, variable_path: Any, meta: dict[str, Any]) -> None:
    """Save `stem.npz` (weights as Keras reports them) and describe the model in `meta`."""
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        layers.append([layer.name, type(layer).__name__])
        for variable, value in zip(layer.weights, layer.get_weights(), strict=True):
            arrays[_weight_key(layer.name, variable_path(variable))] = np.asarray(value)
    np.savez(FILES / f"{stem}.npz", **arrays)  # type: ignore[arg-type]
    meta[stem] = {
        "layers": layers,
        "inputs": [[None if d is None else int(d) for d in t.shape] for t in model.inputs],
        "input_dtypes": [str(t.dtype).replace("tf.", "") for t in model.inputs],
        "outputs": len(model.outputs),
    }


# ---- Keras 3 (torch backend) -----------------------------------------------------------------------------------


def _keras3_models() -> dict[str, tuple[Any, tuple[str, ...]]]:
    import keras
    from keras import layers

    keras.utils.set_random_seed(1)
    models: dict[str, tuple[Any, tuple[str, ...]]] = {}

    models["k3_seq_simple_rnn"] = (
        keras.Sequential(
            [
                keras.Input((5, 3)),
                layers.SimpleRNN(4, activation="relu", return_sequences=True),
                layers.Dropout(0.1),
                layers.SimpleRNN(3, go_backwards=True, use_bias=False, activation=None),
                layers.Dense(2, activation="swish"),
            ]
        ),
        (".keras", ".h5"),
    )
    models["k3_seq_gru_lstm"] = (
        keras.Sequential(
            [
                keras.Input((None, 3)),
                layers.GRU(4, return_sequences=True, reset_after=False, recurrent_activation="hard_sigmoid"),
                layers.LSTM(
                    3,
                    return_sequences=True,
                    dropout=0.2,
                    recurrent_dropout=0.1,
                    seed=7,
                    kernel_regularizer=keras.regularizers.L2(0.01),
                    recurrent_constraint=keras.constraints.MaxNorm(2.0),
                ),
                layers.TimeDistributed(layers.Dense(2)),
            ]
        ),
        (".keras", ".h5"),
    )
    models["k3_seq_embedding"] = (
        keras.Sequential(
            [keras.Input((None,), dtype="int64"), layers.Embedding(12, 4, mask_zero=True), layers.LSTM(3)]
        ),
        (".keras",),
    )
    models["k3_seq_stateful"] = (
        keras.Sequential(
            [
                keras.Input(batch_shape=(2, None, 3)),
                layers.GRU(4, stateful=True, return_sequences=True),
                layers.Dense(1),
            ]
        ),
        (".keras",),
    )

    x = keras.Input((None, 3), name="x")
    h0 = keras.Input((4,), name="h0")
    c0 = keras.Input((4,), name="c0")
    y, h, c = layers.LSTM(4, return_sequences=True, return_state=True, name="lstm")(x, initial_state=[h0, c0])
    head = layers.Dense(2, name="head")(y)
    models["k3_func_lstm_state"] = (keras.Model([x, h0, c0], [head, h, c]), (".keras", ".h5"))

    tokens = keras.Input((None,), dtype="int32", name="tokens")
    e = layers.Embedding(10, 3, mask_zero=True, name="emb")(tokens)
    g = layers.GRU(4, return_sequences=True, name="gru")(e)
    td = layers.TimeDistributed(layers.Dense(2), name="td")(g)
    models["k3_func_emb_mask"] = (keras.Model(tokens, td), (".keras", ".h5"))

    x = keras.Input((None, 3), name="x")
    m = layers.Masking(0.0, name="masking")(x)
    b1 = layers.Bidirectional(layers.LSTM(2, return_sequences=True), name="bi_lstm")(m)
    b2 = layers.Bidirectional(layers.GRU(2), merge_mode="sum", name="bi_gru")(b1)
    out = layers.Dense(1, name="out")(b2)
    models["k3_func_masking_bidi"] = (keras.Model(x, out), (".keras", ".h5"))

    x = keras.Input((None, 3), name="x")
    hf = keras.Input((2,), name="hf")
    hb = keras.Input((2,), name="hb")
    y, fh, bh = layers.Bidirectional(layers.GRU(2, return_state=True), name="bi")(x, initial_state=[hf, hb])
    models["k3_func_bidi_state"] = (keras.Model([x, hf, hb], [y, fh, bh]), (".keras",))

    x = keras.Input((None, 3), name="x")
    ctx = keras.Input((3,), name="ctx")
    h_in = layers.Dense(2, name="init")(ctx)
    rnn = layers.SimpleRNN(2, name="rnn")(x, initial_state=h_in)
    models["k3_func_computed_state"] = (keras.Model([x, ctx], rnn), (".keras",))

    # Keras 3 does not apply the Embedding mask to a layer called with initial_state (the importer refuses it).
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    h0 = keras.Input((2,), name="h0")
    e = layers.Embedding(5, 3, mask_zero=True, name="emb")(tokens)
    rnn = layers.SimpleRNN(2, return_sequences=True, name="rnn")(e, initial_state=h0)
    models["k3_func_mask_initial_state"] = (keras.Model([tokens, h0], rnn), (".keras",))

    x = keras.Input((None, 3), name="x")
    conv = layers.Conv1D(2, 2, name="conv")(x)
    models["k3_func_conv"] = (keras.Model(x, layers.GRU(2, name="gru")(conv)), (".keras",))
    return models


def _write_keras3(meta: dict[str, Any]) -> None:
    import keras

    for stem, (model, suffixes) in _keras3_models().items():
        for suffix in suffixes:
            model.save(FILES / f"{stem}{suffix}")
        _record(model, stem, lambda v: v.path, meta)
    meta["_keras3_version"] = keras.__version__


# ---- Keras 2 (tf_keras) ----------------------------------------------------------------------------------------


def _keras2_models() -> dict[str, Any]:
    import tf_keras as keras
    from tf_keras import layers

    keras.utils.set_random_seed(2)
    models: dict[str, Any] = {}

    seq = keras.Sequential(
        [
            layers.SimpleRNN(4, input_shape=(None, 3), return_sequences=True, activation=None),
            layers.GRU(3, recurrent_activation="hard_sigmoid", return_sequences=True),
            layers.LSTM(2, activation="swish"),
            layers.Dense(2),
        ]
    )
    seq.compile(optimizer="adam", loss="mse")
    seq.fit(np.zeros((2, 4, 3), "float32"), np.zeros((2, 2), "float32"), epochs=1, verbose=0)
    models["k2_seq_mixed"] = seq

    x = keras.Input((None, 3), name="x")
    h0 = keras.Input((4,), name="h0")
    c0 = keras.Input((4,), name="c0")
    y, h, c = layers.LSTM(4, return_sequences=True, return_state=True, name="lstm")(x, initial_state=[h0, c0])
    models["k2_func_lstm_state"] = keras.Model([x, h0, c0], [layers.Dense(2, name="head")(y), h, c])

    tokens = keras.Input((None,), dtype="int32", name="tokens")
    e = layers.Embedding(10, 3, mask_zero=True, name="emb")(tokens)
    b = layers.Bidirectional(layers.LSTM(2, return_sequences=True), name="bi")(e)
    models["k2_func_emb_bidi"] = keras.Model(tokens, layers.TimeDistributed(layers.Dense(2), name="td")(b))

    x = keras.Input((None, 3), name="x")
    m = layers.Masking(-1.0, name="masking")(x)
    g = layers.GRU(3, reset_after=False, go_backwards=True, name="gru")(m)
    models["k2_func_masking"] = keras.Model(x, layers.Dropout(0.5, name="drop")(g))

    x = keras.Input((None, 3), name="x")
    models["k2_func_time_major"] = keras.Model(
        x, layers.LSTM(3, time_major=True, return_sequences=True, name="lstm")(x)
    )

    models["k2_seq_stateful"] = keras.Sequential(
        [layers.GRU(4, stateful=True, batch_input_shape=(2, 5, 3), return_sequences=True), layers.Dense(1)]
    )
    return models


def _keras2_native_models() -> dict[str, Any]:
    """Models tf_keras saves as `.keras` (its weights file has no `name` attributes; R keras writes these too)."""
    import tf_keras as keras
    from tf_keras import layers

    keras.utils.set_random_seed(3)
    models: dict[str, Any] = {}
    models["k2_seq_native"] = keras.Sequential(
        [
            layers.Embedding(5, 3, mask_zero=True, input_shape=(None,)),
            layers.LSTM(2, return_sequences=True),
            layers.TimeDistributed(layers.Dense(2)),
            layers.SimpleRNN(2, return_sequences=True),
            layers.SimpleRNN(2),
            layers.Dense(1),
        ]
    )
    x = keras.Input((None, 3), name="x")
    h0 = keras.Input((2,), name="h0")
    m = layers.Masking(name="mk")(x)
    b = layers.Bidirectional(layers.LSTM(2, return_sequences=True), name="bi")(m)
    g = layers.GRU(2, name="g")(b, initial_state=h0)
    models["k2_func_native"] = keras.Model([x, h0], layers.Dense(1, name="d")(g))
    return models


def _write_keras2(meta: dict[str, Any]) -> None:
    import tf_keras

    for stem, model in _keras2_models().items():
        model.save(FILES / f"{stem}.h5")
        _record(model, stem, lambda v: v.name, meta)
    for stem, model in _keras2_native_models().items():
        model.save(FILES / f"{stem}.keras")
        _record(model, stem, lambda v: v.name, meta)
    meta["_keras2_version"] = tf_keras.__version__


# ---- driver ----------------------------------------------------------------------------------------------------


def _run_flavour(flavour: str) -> None:
    meta: dict[str, Any] = {}
    {"keras3": _write_keras3, "keras2": _write_keras2}[flavour](meta)
    (FILES / f"meta_{flavour}.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--flavour":
        _run_flavour(sys.argv[2])
        return
    FILES.mkdir(exist_ok=True)
    for stale in [*FILES.glob("*.keras"), *FILES.glob("*.h5"), *FILES.glob("*.npz"), *FILES.glob("meta*.json")]:
        stale.unlink()
    for flavour in ("keras3", "keras2"):
        env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        subprocess.run([sys.executable, __file__, "--flavour", flavour], check=True, env=env)
    meta: dict[str, Any] = {}
    for flavour in ("keras3", "keras2"):
        part = FILES / f"meta_{flavour}.json"
        meta.update(json.loads(part.read_text()))
        part.unlink()
    (FILES / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
