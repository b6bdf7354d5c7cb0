"""Issue 17's proof: a layer kind added by one module (tests/kinds/relu_kind.py) and its registration imports,
exports and serves, with no edit to the importers, the exporter, the batcher or the data plane.

The model is a committed Keras 3 file (GRU -> LSTM -> TimeDistributed(Dense)) with a Keras `ReLU` layer appended
to its config, and a copy with `TimeDistributed(ReLU)` instead, the wrapper reaching the new kind through the
registry too.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from relu_kind import ReLU

from rnnserve.batching.direct import DirectExecutor
from rnnserve.batching.dynamic import DynamicBatcher
from rnnserve.errors import SessionsNotSupported, UnsupportedLayer
from rnnserve.export.convert import to_onnx
from rnnserve.export.package import write_package
from rnnserve.importers import load_spec
from rnnserve.inference import InferenceService, PredictRequest, StepRequest, StepResult
from rnnserve.kinds import find_kind, register_kind
from rnnserve.kinds.base import unregister_kind
from rnnserve.layers.model import ReferenceModel
from rnnserve.runtime.ort_model import OrtModel
from rnnserve.runtime.repository import ModelRepository
from rnnserve.sessions.memory import MemorySessionStore
from rnnserve.settings import Settings

SOURCE = Path(__file__).resolve().parents[1] / "importers" / "files" / "k3_seq_gru_lstm.keras"
RELU = {"max_value": 0.03, "negative_slope": 0.25, "threshold": -0.02}  # the outputs lie within +-0.06


def _relu_entry(name: str) -> dict[str, Any]:
    config = {"name": name, "trainable": True, "dtype": "float32", **RELU}
    return {"module": "keras.layers", "class_name": "ReLU", "config": config, "registered_name": None}


def _with_layers(dst: Path, edit: Any) -> Path:
    """A copy of SOURCE whose Sequential layer list went through `edit`."""
    with zipfile.ZipFile(SOURCE) as archive:
        content = {info.filename: archive.read(info) for info in archive.infolist()}
    config = json.loads(content["config.json"])
    edit(config["config"]["layers"])
    content["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in content.items():
            archive.writestr(name, data)
    return dst


@pytest.fixture
def relu_file(tmp_path: Path) -> Path:
    return _with_layers(tmp_path / "gru_relu.keras", lambda layers: layers.append(_relu_entry("relu")))


@pytest.fixture
def relu_kind() -> Iterator[ReLU]:
    assert find_kind("ReLU") is None
    kind = ReLU()
    register_kind(kind)
    try:
        yield kind
    finally:
        unregister_kind("ReLU")


def _inputs(spec: Any, batch: int = 2, steps: int = 5) -> np.ndarray:
    features = spec.inputs[0].shape[-1]
    return np.random.default_rng(17).normal(size=(batch, steps, features)).astype(np.float32)


def _keras_relu(x: np.ndarray) -> np.ndarray:
    y = np.where(x >= RELU["threshold"], x, RELU["negative_slope"] * (x - RELU["threshold"]))
    return np.minimum(y, RELU["max_value"])


def test_without_the_kind_the_file_is_refused(relu_file: Path) -> None:
    with pytest.raises(UnsupportedLayer, match="'ReLU'"):
        load_spec(relu_file)


def test_the_new_kind_imports_runs_in_numpy_and_exports_with_parity(relu_file: Path, relu_kind: ReLU) -> None:
    spec = load_spec(relu_file)
    base = load_spec(SOURCE)
    assert [layer.class_name for layer in spec.layers] == [*(layer.class_name for layer in base.layers), "ReLU"]
    assert spec.layers[-1].config == {"name": "relu", **RELU}
    x = _inputs(spec)
    (before,) = ReferenceModel(base).run({base.inputs[0].name: x}).outputs.values()
    (reference,) = ReferenceModel(spec).run({spec.inputs[0].name: x}).outputs.values()
    np.testing.assert_allclose(reference, _keras_relu(before.astype(np.float64)), rtol=1e-6, atol=1e-7)
    below, clipped = before < RELU["threshold"], before >= RELU["max_value"]
    assert below.any() and clipped.any() and (~below & ~clipped).any()  # every branch of ReLU is taken
    model, _ = to_onnx(spec)
    assert "Where" in {node.op_type for node in model.graph.node}
    (exported,) = OrtModel(spec).run({spec.inputs[0].name: x}).outputs.values()
    np.testing.assert_allclose(exported, reference, rtol=1e-5, atol=1e-6)


def test_a_wrapper_reaches_the_new_kind(tmp_path: Path, relu_kind: ReLU) -> None:
    def wrap(layers: list[dict[str, Any]]) -> None:
        config = {"name": "td_relu", "layer": _relu_entry("relu")}
        layers.append({"module": "keras.layers", "class_name": "TimeDistributed", "config": config})

    spec = load_spec(_with_layers(tmp_path / "td_relu.keras", wrap))
    x = _inputs(spec)
    (reference,) = ReferenceModel(spec).run({spec.inputs[0].name: x}).outputs.values()
    (exported,) = OrtModel(spec).run({spec.inputs[0].name: x}).outputs.values()
    np.testing.assert_allclose(exported, reference, rtol=1e-5, atol=1e-6)


async def test_the_data_plane_serves_and_streams_the_new_kind(relu_file: Path, relu_kind: ReLU, tmp_path: Path) -> None:
    models = tmp_path / "models"
    spec = load_spec(relu_file)
    write_package(spec, models / "gru_relu")
    repository = ModelRepository(models)
    await repository.load_all()
    store = MemorySessionStore(max_sessions=4)
    batcher = DynamicBatcher(threads=1, max_batch_size=8, max_delay_s=0.001)
    service = InferenceService(repository, store, batcher, Settings())
    try:
        x = _inputs(spec, batch=1, steps=6)
        whole = await service.predict("gru_relu", PredictRequest({spec.inputs[0].name: x}))
        (y,) = whole.outputs.values()
        (reference,) = ReferenceModel(spec).run({spec.inputs[0].name: x}).outputs.values()
        np.testing.assert_allclose(y, reference, rtol=1e-5, atol=1e-6)
        # A per-step kind may be streamed: a session over the same sequence in two chunks gives the same outputs.
        session = await service.open_session("gru_relu")
        chunks: list[np.ndarray] = []

        def keep(result: StepResult) -> bytes:
            chunks.extend(result.outputs.values())
            return b""

        for part in (x[:, :4], x[:, 4:]):
            await service.step(session.session_id, StepRequest({spec.inputs[0].name: part}), keep)
        np.testing.assert_allclose(np.concatenate(chunks, axis=1), y, rtol=1e-5, atol=1e-6)
    finally:
        await batcher.aclose()
        await store.aclose()


class _MixingReLU(ReLU):
    """The same layer declared as mixing timesteps (as a Conv1D would): sessions must refuse it."""

    streamable = False
    stream_refusal = "has a layer 'relu' that mixes timesteps"


async def test_the_data_plane_refuses_sessions_for_a_kind_that_may_not_be_streamed(
    relu_file: Path, tmp_path: Path
) -> None:
    register_kind(_MixingReLU())
    try:
        models = tmp_path / "models"
        spec = load_spec(relu_file)
        write_package(spec, models / "gru_relu")
        repository = ModelRepository(models)
        await repository.load_all()
        store = MemorySessionStore(max_sessions=4)
        service = InferenceService(repository, store, DirectExecutor(threads=1), Settings())
        assert repository.get("gru_relu").signature.stream_capable is False  # type: ignore[union-attr]
        with pytest.raises(SessionsNotSupported, match="'relu' that mixes timesteps.*predict"):
            await service.open_session("gru_relu")
        x = _inputs(spec, batch=1, steps=3)
        (y,) = (await service.predict("gru_relu", PredictRequest({spec.inputs[0].name: x}))).outputs.values()
        assert y.shape == (1, 3, 2)
        await store.aclose()
    finally:
        unregister_kind("ReLU")
