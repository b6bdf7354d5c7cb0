"""The demo models in models/ (what `rnnserve serve` serves with no arguments).

Each model is loaded the way the server loads it (Keras file through the importer, exported package through
`read_package`) and must reproduce Keras' own outputs and final states, recorded by models/build.py in
models/_build/<name>_examples.npz, on the numpy reference and on onnxruntime alike. The trained models must
also be good at their tasks: the forecaster beats the naive "repeat the last value" forecast on fresh noisy
sines, and the character model predicts its training text's next characters.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from rnnserve.export.package import read_package
from rnnserve.importers import load_spec
from rnnserve.layers.model import ReferenceModel
from rnnserve.runtime.ort_model import OrtModel
from rnnserve.runtime.repository import scan_entries
from rnnserve.runtime.runner import Runner
from rnnserve.spec import ModelSpec

MODELS = Path(__file__).resolve().parents[1] / "models"
BUILD = MODELS / "_build"
NAMES = ("chargru", "forecaster", "orbit")
WARMUP = 10  # steps a forecaster gets to lock on to a signal before it is scored (as in models/build.py)


def close(actual: np.ndarray, expected: np.ndarray) -> bool:
    """|d| <= 1e-5 + 1e-5*|y| elementwise, with equal shapes."""
    return actual.shape == expected.shape and bool(np.all(np.abs(actual - expected) <= 1e-5 + 1e-5 * np.abs(expected)))


@cache
def spec_of(name: str) -> ModelSpec:
    path = scan_entries(MODELS)[name]
    return read_package(path).spec if path.is_dir() else load_spec(path, name=name)


@cache
def runner(name: str, kind: str) -> Runner:
    """The numpy reference or the onnxruntime model; a package brings its own exported graph."""
    if kind == "reference":
        return ReferenceModel(spec_of(name))
    path = scan_entries(MODELS)[name]
    if path.is_dir():
        package = read_package(path)
        return OrtModel(package.spec, model_path=package.model_path, signature=package.signature)
    return OrtModel(spec_of(name))


def run(model: Runner, x: np.ndarray, states: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The single output and the final states of `model` on its single input `x`."""
    result = model.run({model.signature.inputs[0].name: x}, states=states)
    (output,) = result.outputs.values()
    return output, result.states


def noisy_sine(rng: np.random.Generator, batch: int, steps: int) -> np.ndarray:
    """The forecaster's task (models/README.md): amp*sin(2*pi*t/period + phase) + N(0, 0.1^2), shape (B, T, 1)."""
    period = rng.uniform(16.0, 32.0, (batch, 1))
    amp = rng.uniform(0.5, 1.5, (batch, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (batch, 1))
    clean = amp * np.sin(2 * np.pi * np.arange(steps)[None, :] / period + phase)
    return (clean + 0.1 * rng.standard_normal(clean.shape)).astype(np.float32)[..., None]


def test_repository_serves_exactly_the_demo_models() -> None:
    entries = scan_entries(MODELS)
    assert sorted(entries) == sorted(NAMES)
    assert entries["forecaster"].is_dir()  # exported package
    assert entries["chargru"].suffix == ".keras"
    assert entries["orbit"].suffix == ".h5"


def test_committed_files_stay_small() -> None:
    total = sum(p.stat().st_size for p in MODELS.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < 1_000_000


@pytest.mark.parametrize("kind", ["reference", "onnxruntime"])
@pytest.mark.parametrize("name", NAMES)
def test_reproduces_keras_outputs_and_states(name: str, kind: str) -> None:
    example = np.load(BUILD / f"{name}_examples.npz")
    model = runner(name, kind)
    output, states = run(model, example["input"])
    assert close(output, example["output"])
    expected_states = [example[f"state_{i}"] for i in range(len(model.signature.states))]
    assert len(expected_states) == len(states) == len([k for k in example.files if k.startswith("state_")])
    assert all(close(s, e) for s, e in zip(states, expected_states, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_streaming_in_chunks_equals_one_pass(name: str) -> None:
    """Carrying the states from one chunk to the next (what a session does) gives the whole-sequence outputs."""
    x = np.load(BUILD / f"{name}_examples.npz")["input"]
    model = runner(name, "onnxruntime")
    whole, whole_states = run(model, x)
    first, states = run(model, x[:, :7])
    second, final_states = run(model, x[:, 7:], states)
    assert close(np.concatenate([first, second], axis=1), whole)
    assert all(close(s, e) for s, e in zip(final_states, whole_states, strict=True))


@pytest.mark.parametrize("kind", ["reference", "onnxruntime"])
def test_forecaster_beats_the_naive_forecast(kind: str) -> None:
    series = noisy_sine(np.random.default_rng(20240611), 64, 80)
    predicted, _ = run(runner("forecaster", kind), series)
    target = series[:, WARMUP + 1 :]
    model_mse = float(np.mean((predicted[:, WARMUP:-1] - target) ** 2))
    naive_mse = float(np.mean((series[:, WARMUP:-1] - target) ** 2))
    assert model_mse < 0.5 * naive_mse
    assert model_mse > 0.1**2 * 0.9  # no better than the noise allows: the series really is fresh and noisy


def test_chargru_vocabulary_matches_the_model() -> None:
    vocab = json.loads((MODELS / "chargru.vocab.json").read_text(encoding="utf-8"))
    tokens = vocab["tokens"]
    assert vocab["pad_id"] == 0 and tokens[0] == "<pad>"
    assert len(set(tokens)) == len(tokens) and all(len(t) == 1 for t in tokens[1:])
    embed = next(layer for layer in spec_of("chargru").layers if layer.class_name == "Embedding")
    assert embed.weights["embeddings"].shape[0] == len(tokens)
    served = runner("chargru", "onnxruntime").signature.inputs[0]
    assert (served.dtype, served.vocabulary) == ("int64", len(tokens))


def test_chargru_predicts_its_text() -> None:
    tokens = json.loads((MODELS / "chargru.vocab.json").read_text(encoding="utf-8"))["tokens"]
    index = {ch: i for i, ch in enumerate(tokens)}
    text = " ".join((BUILD / "corpus.txt").read_text(encoding="utf-8").lower().split())
    ids = np.array([[index[ch] for ch in text]], dtype=np.int64)
    probs, _ = run(runner("chargru", "onnxruntime"), ids[:, :-1])
    assert np.allclose(probs.sum(axis=-1), 1.0, atol=1e-4)
    accuracy = float(np.mean(probs.argmax(axis=-1) == ids[:, 1:]))
    assert accuracy > 0.8


@pytest.mark.parametrize("kind", ["reference", "onnxruntime"])
def test_chargru_padding_changes_nothing_at_real_steps(kind: str) -> None:
    """The examples hold a left- and a right-padded row: their real steps and final states equal unpadded runs."""
    x = np.load(BUILD / "chargru_examples.npz")["input"]
    assert (x[1, 0] == 0 and x[1, -1] != 0) and (x[2, 0] != 0 and x[2, -1] == 0)
    model = runner("chargru", kind)
    padded, padded_states = run(model, x)
    for row in range(len(x)):
        real = x[row] != 0
        alone, alone_states = run(model, x[row : row + 1, real])
        assert close(padded[row, real], alone[0])
        assert close(padded_states[0][row], alone_states[0][0])
