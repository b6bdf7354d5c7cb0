"""Train, save and export rnnserve's bundled demo models (what `rnnserve serve` serves with no arguments).

Two stages, because training needs real Keras and exporting needs rnnserve, and the two may live in different
environments:

* `train`  (Keras 3, torch backend; `pip install .[keras]`) trains every model with fixed seeds and writes
  `models/chargru.keras`, `models/orbit.h5`, `models/chargru.vocab.json`, and under `models/_build/` the
  forecaster's source `forecaster.keras`, Keras' own outputs on a few example inputs (`<model>_examples.npz`)
  and the training report (`metrics.json`);
* `export` (rnnserve only, no Keras) writes the exported package `models/forecaster/` from
  `models/_build/forecaster.keras` with `rnnserve.export.package.write_package`.

`all` (the default) runs `train` here and then `export` in `--export-python` (default: this interpreter):

    KERAS_BACKEND=torch python models/build.py                       # one env: pip install -e .[keras]
    KERAS_BACKEND=torch /work/venvs/keras/bin/python models/build.py --export-python .venv/bin/python

Entries directly in `models/` are served (`NAME.keras`, `NAME.h5`, package folder `NAME/`); everything that is
not a model lives in `models/_build/` or is a `.json`/`.md`/`.py` file, which the repository scanner skips.
Rebuilding on the same Keras/torch versions and CPU gives the same weights (seeded data, init and shuffling,
single-threaded torch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent
BUILD_DIR = MODELS_DIR / "_build"
CORPUS = BUILD_DIR / "corpus.txt"
CHARGRU_FILE = MODELS_DIR / "chargru.keras"
ORBIT_FILE = MODELS_DIR / "orbit.h5"
VOCAB_FILE = MODELS_DIR / "chargru.vocab.json"
FORECASTER_SOURCE = BUILD_DIR / "forecaster.keras"
FORECASTER_PACKAGE = MODELS_DIR / "forecaster"
METRICS_FILE = BUILD_DIR / "metrics.json"

SeriesMaker = Callable[[np.random.Generator, int, int], np.ndarray]  # (rng, batch, steps) -> (batch, steps, F)

SEED = 1234
PAD = "<pad>"
VOCAB_CHARS = " abcdefghijklmnopqrstuvwxyz.,;:!?'-\"()"
NOISE = 0.1  # std of the Gaussian noise on the periodic signals
WARMUP = 10  # steps the models get to lock on to a signal before their forecasts are scored


# ---------------------------------------------------------------------------------------------- data (numpy only)


def noisy_sine(rng: np.random.Generator, batch: int, steps: int) -> np.ndarray:
    """`(batch, steps, 1)` float32: `amp * sin(2*pi*t/period + phase) + N(0, NOISE^2)`.

    Per sequence: period ~ U(16, 32) steps, amplitude ~ U(0.5, 1.5), phase ~ U(0, 2*pi).
    """
    period = rng.uniform(16.0, 32.0, (batch, 1))
    amp = rng.uniform(0.5, 1.5, (batch, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (batch, 1))
    t = np.arange(steps)[None, :]
    clean = amp * np.sin(2 * np.pi * t / period + phase)
    return (clean + NOISE * rng.standard_normal(clean.shape)).astype(np.float32)[..., None]


def noisy_orbit(rng: np.random.Generator, batch: int, steps: int) -> np.ndarray:
    """`(batch, steps, 2)` float32 points `(a*cos(w*t+p), b*sin(w*t+p))` on an ellipse, plus N(0, NOISE^2) noise.

    Per sequence: w = 2*pi/period with period ~ U(16, 32) and the direction of travel random, a, b ~ U(0.5, 1.5).
    """
    period = rng.uniform(16.0, 32.0, (batch, 1)) * rng.choice([-1.0, 1.0], (batch, 1))
    a, b = rng.uniform(0.5, 1.5, (2, batch, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (batch, 1))
    angle = 2 * np.pi * np.arange(steps)[None, :] / period + phase
    clean = np.stack([a * np.cos(angle), b * np.sin(angle)], axis=-1)
    return (clean + NOISE * rng.standard_normal(clean.shape)).astype(np.float32)


def forecast_mse(predicted: np.ndarray, series: np.ndarray) -> tuple[float, float]:
    """(model MSE, naive "repeat the last value" MSE) of next-step forecasts, scored after `WARMUP` steps.

    `predicted[:, t]` is the forecast of `series[:, t + 1]`.
    """
    target = series[:, WARMUP + 1 :]
    model = float(np.mean((predicted[:, WARMUP:-1] - target) ** 2))
    naive = float(np.mean((series[:, WARMUP:-1] - target) ** 2))
    return model, naive


def vocabulary() -> list[str]:
    """Token id -> character; id 0 is padding (masked by `Embedding(mask_zero=True)`)."""
    return [PAD, *VOCAB_CHARS]


def normalise_text(text: str) -> str:
    """Lower-case and collapse all whitespace to single spaces: the form the char model was trained on."""
    return " ".join(text.lower().split())


def encode(text: str, vocab: Sequence[str]) -> np.ndarray:
    index = {ch: i for i, ch in enumerate(vocab)}
    unknown = sorted({ch for ch in text if ch not in index})
    if unknown:
        raise ValueError(f"characters outside the vocabulary: {unknown!r}")
    return np.array([index[ch] for ch in text], dtype=np.int64)


def decode(ids: Sequence[int], vocab: Sequence[str]) -> str:
    return "".join(vocab[i] for i in ids if i != 0)


def text_windows(ids: np.ndarray, length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping windows of `length` ids and, for each, the ids one step later (next-character targets)."""
    starts = range(0, len(ids) - length - 1, stride)
    x = np.stack([ids[s : s + length] for s in starts])
    y = np.stack([ids[s + 1 : s + length + 1] for s in starts])
    return x, y


# ------------------------------------------------------------------------------------------- Keras (train stage)


def _keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    import torch

    torch.set_num_threads(1)  # determinism, and the build machine is shared
    if keras.backend.backend() != "torch":
        raise RuntimeError(f"build with KERAS_BACKEND=torch (got {keras.backend.backend()!r})")
    return keras


def build_forecaster(keras: Any) -> Any:
    """signal (B, T, 1) -> SimpleRNN(32) -> TimeDistributed(Dense(1)) -> next_value (B, T, 1)."""
    signal = keras.Input(shape=(None, 1), name="signal")
    h = keras.layers.SimpleRNN(32, return_sequences=True, name="rnn")(signal)
    out = keras.layers.TimeDistributed(keras.layers.Dense(1), name="next_value")(h)
    return keras.Model(signal, out, name="forecaster")


def build_chargru(keras: Any, vocab_size: int) -> Any:
    """chars (B, T) int64 ids -> Embedding(mask_zero) -> GRU(64) -> Dense(softmax) -> next_char (B, T, vocab)."""
    chars = keras.Input(shape=(None,), dtype="int64", name="chars")
    e = keras.layers.Embedding(vocab_size, 16, mask_zero=True, name="embed")(chars)
    h = keras.layers.GRU(64, return_sequences=True, name="gru")(e)
    out = keras.layers.Dense(vocab_size, activation="softmax", name="next_char")(h)
    return keras.Model(chars, out, name="chargru")


def build_orbit(keras: Any) -> Any:
    """xy (B, T, 2) -> LSTM(16) -> GRU(16) -> Dense(2) -> next_xy (B, T, 2): a stacked model with 3 states."""
    xy = keras.Input(shape=(None, 2), name="xy")
    h = keras.layers.LSTM(16, return_sequences=True, name="lstm")(xy)
    h = keras.layers.GRU(16, return_sequences=True, name="gru")(h)
    out = keras.layers.Dense(2, name="next_xy")(h)
    return keras.Model(xy, out, name="orbit")


def final_states(keras: Any, model: Any, x: np.ndarray) -> list[np.ndarray]:
    """Keras' own final states of every recurrent layer of `model` on `x`, in rnnserve's state order.

    Each recurrent layer is cloned with `return_state=True` and the trained weights, and called with the
    original layer's call arguments (its input tensor and, after an Embedding(mask_zero), the mask).
    """
    states: list[np.ndarray] = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.RNN):
            continue
        probe = layer.__class__.from_config({**layer.get_config(), "return_state": True, "name": f"{layer.name}_probe"})
        call = layer._inbound_nodes[0].arguments  # the Functional graph's record of how the layer was called
        probe_model = keras.Model(model.inputs, probe(*call.args, **call.kwargs)[1:])
        probe.set_weights(layer.get_weights())
        predicted = probe_model.predict(x, verbose=0)
        predicted = list(predicted) if isinstance(predicted, (list, tuple)) else [predicted]  # one comes back bare
        states.extend(np.asarray(s, dtype=np.float32) for s in predicted)
    return states


def save_examples(keras: Any, model: Any, x: np.ndarray, name: str) -> None:
    """Keras' outputs and final states on `x`, for tests/test_bundled_models.py."""
    y = np.asarray(model.predict(x, verbose=0), dtype=np.float32)
    states = final_states(keras, model, x)
    arrays = {"input": x, "output": y, **{f"state_{i}": s for i, s in enumerate(states)}}
    np.savez(BUILD_DIR / f"{name}_examples.npz", allow_pickle=False, **arrays)


def train_series_model(keras: Any, model: Any, make_series: SeriesMaker, seed: int, path: Path) -> dict[str, Any]:
    """Train a next-step forecaster on `make_series` data, score it on held-out series, save it to `path`.

    Seeds: `seed` for the training series, `seed + 1` for the held-out series, `seed + 2` for the examples.
    """
    started = time.perf_counter()
    series = make_series(np.random.default_rng(seed), 1024, 81)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    history = model.fit(series[:, :-1], series[:, 1:], batch_size=64, epochs=30, verbose=0)
    held_out = make_series(np.random.default_rng(seed + 1), 256, 81)
    mse, naive = forecast_mse(np.asarray(model.predict(held_out, verbose=0)), held_out)
    model.save(path)
    save_examples(keras, model, make_series(np.random.default_rng(seed + 2), 3, 40), model.name)
    return {
        "train_loss": history.history["loss"][-1],
        "test_mse": mse,
        "naive_mse": naive,
        "noise_floor": NOISE**2,
        "train_seconds": round(time.perf_counter() - started, 1),
    }


def train_chargru(keras: Any) -> dict[str, Any]:
    started = time.perf_counter()
    keras.utils.set_random_seed(SEED)
    vocab = vocabulary()
    ids = encode(normalise_text(CORPUS.read_text(encoding="utf-8")), vocab)
    x, y = text_windows(ids, length=48, stride=3)
    model = build_chargru(keras, len(vocab))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=64, epochs=25, verbose=0)
    model.save(CHARGRU_FILE)
    VOCAB_FILE.write_text(json.dumps({"pad_id": 0, "tokens": vocab}, indent=1) + "\n", encoding="utf-8")
    prompts = ["alice was beginning to", "twinkle, twinkle, little", "humpty dumpty sat on"]
    save_examples(keras, model, _padded([encode(p, vocab) for p in prompts]), "chargru")
    return {
        "train_loss": history.history["loss"][-1],
        "train_accuracy": history.history["accuracy"][-1],
        "train_seconds": round(time.perf_counter() - started, 1),
        "samples": {p: greedy_continuation(model, p, vocab, 40) for p in prompts},
    }


def _seeded(keras: Any, build: Callable[[Any], Any]) -> Any:
    """A fresh model from `build`, with Keras' global seed (weights, dropout, shuffling) reset first."""
    keras.utils.set_random_seed(SEED)
    return build(keras)


def _padded(sequences: Sequence[np.ndarray]) -> np.ndarray:
    """Stack id sequences into one batch: row 0 as is, the rest left- then right-padded alternately with 0."""
    width = max(len(s) for s in sequences) + 2
    batch = np.zeros((len(sequences), width), dtype=np.int64)
    for row, s in enumerate(sequences):
        start = width - len(s) if row % 2 else 0
        batch[row, start : start + len(s)] = s
    return batch


def greedy_continuation(model: Any, prompt: str, vocab: Sequence[str], length: int) -> str:
    ids = list(encode(prompt, vocab))
    for _ in range(length):
        probs = model.predict(np.array([ids], dtype=np.int64), verbose=0)[0, -1]
        ids.append(int(np.argmax(probs)))
    return decode(ids[len(prompt) :], vocab)


def train_all() -> dict[str, Any]:
    keras = _keras()
    BUILD_DIR.mkdir(exist_ok=True)
    metrics = {
        "versions": {"keras": keras.__version__, "backend": keras.backend.backend()},
        "forecaster": train_series_model(keras, _seeded(keras, build_forecaster), noisy_sine, SEED, FORECASTER_SOURCE),
        "chargru": train_chargru(keras),
        "orbit": train_series_model(keras, _seeded(keras, build_orbit), noisy_orbit, SEED + 10, ORBIT_FILE),
    }
    METRICS_FILE.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    return metrics


# ------------------------------------------------------------------------------------- rnnserve (export stage)


def export_all() -> None:
    """Write the forecaster's exported package from its `.keras` source (no Keras needed)."""
    from rnnserve.export.package import write_package
    from rnnserve.importers import load_spec

    if FORECASTER_PACKAGE.exists():
        shutil.rmtree(FORECASTER_PACKAGE)
    spec = load_spec(FORECASTER_SOURCE, name="forecaster")
    # The manifest records where the model came from: a path relative to the repository, not this machine's.
    source = {**spec.source, "path": FORECASTER_SOURCE.relative_to(MODELS_DIR.parent).as_posix()}
    write_package(dataclasses.replace(spec, source=source), FORECASTER_PACKAGE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", nargs="?", choices=["all", "train", "export"], default="all")
    parser.add_argument(
        "--export-python", default=sys.executable, help="interpreter with rnnserve installed, for the export stage"
    )
    args = parser.parse_args(argv)
    if args.stage in ("all", "train"):
        print(json.dumps(train_all(), indent=1))
    if args.stage == "export":
        export_all()
    elif args.stage == "all":
        subprocess.run([args.export_python, str(Path(__file__).resolve()), "export"], check=True, cwd=MODELS_DIR.parent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
