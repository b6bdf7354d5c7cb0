"""Exported packages: round trip, manifest contents, and validation of damaged packages."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from export_specs import bidirectional_layer, holey_mask, model, rnn_layer, run_graph

from rnnserve.errors import ModelFileError
from rnnserve.export.package import MANIFEST_FILE, SPEC_FILE, WEIGHTS_FILE, read_package, write_package
from rnnserve.export.package import _sha256 as sha256
from rnnserve.importers import load_spec
from rnnserve.layers.model import ReferenceModel
from rnnserve.signature import ModelSignature
from rnnserve.spec import InputSpec, LayerSpec, TensorRef

F, U, T, B = 3, 4, 5, 2
L2 = {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.009999999776482582}}


def _spec():
    rng = np.random.default_rng(41)
    layers = [
        rnn_layer(
            "LSTM",
            "enc",
            "x",
            F,
            U,
            rng,
            return_sequences=True,
            dropout=0.3,
            recurrent_dropout=0.2,
            seed=7,
            kernel_regularizer=L2,
        ),
        bidirectional_layer("GRU", "bi", "enc", U, U, rng, "sum", return_sequences=True),
    ]
    spec = model([InputSpec("x", (None, None, F))], layers, {"y": TensorRef("bi")})
    source = {"path": "m.keras", "format": "keras", "keras_version": "3.15.1", "sha256": "ab" * 32}
    return replace(spec, keras_config={"class_name": "Functional", "config": {"name": "m"}}, source=source)


@pytest.fixture
def package_dir(tmp_path: Path) -> Path:
    return write_package(_spec(), tmp_path / "m")


def test_round_trip_runs_like_the_reference(package_dir: Path):
    package = read_package(package_dir)
    assert package.model_path == package_dir / "model.onnx"
    rng = np.random.default_rng(42)
    x = rng.normal(0, 1, (B, T, F)).astype(np.float32)
    graph = onnx.load(package.model_path)
    got = run_graph(graph, package.signature, {"x": x}, mask=holey_mask(B, T))
    want = ReferenceModel(_spec()).run({"x": x}, mask=holey_mask(B, T))
    np.testing.assert_allclose(got.outputs["y"], want.outputs["y"], rtol=1e-5, atol=1e-5)
    rebuilt = ReferenceModel(package.spec).run({"x": x}, mask=holey_mask(B, T))
    np.testing.assert_array_equal(rebuilt.outputs["y"], want.outputs["y"])
    for layer, original in zip(package.spec.layers, _spec().layers, strict=True):
        assert sorted(layer.weights) == sorted(original.weights)
        for key in layer.weights:
            np.testing.assert_array_equal(layer.weights[key], original.weights[key])


def test_manifest_records_form_signature_source_and_training_settings(package_dir: Path):
    manifest = json.loads((package_dir / MANIFEST_FILE).read_text())
    assert manifest["format_version"] == 1
    assert manifest["graph_form"] == "scan" and manifest["time_steps"] is None
    assert ModelSignature.from_dict(manifest["signature"]).states[0].name == "enc/h"
    assert manifest["source"] == {"path": "m.keras", "format": "keras", "keras_version": "3.15.1", "sha256": "ab" * 32}
    assert manifest["keras_config"]["class_name"] == "Functional"
    enc = manifest["training"]["enc"]
    assert enc["dropout"] == 0.3 and enc["recurrent_dropout"] == 0.2 and enc["seed"] == 7
    assert enc["kernel_regularizer"] == L2 and enc["recurrent_constraint"] is None


def test_manifest_keeps_each_stacked_cells_training_settings(tmp_path: Path):
    """RNN(StackedRNNCells) keeps its arguments per cell: the manifest has them under `parts`, by weight prefix
    (inside a Bidirectional, per direction), dropout rates included (what Monte-Carlo dropout reads)."""
    fixture = Path(__file__).resolve().parents[1] / "parity" / "fixtures" / "training" / "k3_penalties_cells.keras"
    training = json.loads((write_package(load_spec(fixture), tmp_path / "c") / MANIFEST_FILE).read_text())["training"]
    rnn = training["rnn"]["parts"]
    assert set(rnn) == {"gru_cell", "lstm_cell"}
    assert rnn["gru_cell"]["dropout"] == 0.2 and rnn["gru_cell"]["recurrent_dropout"] == 0.0
    assert rnn["lstm_cell"]["recurrent_dropout"] == 0.1
    assert rnn["gru_cell"]["kernel_regularizer"]["class_name"] == "L2"
    bi = training["bi"]["parts"]
    assert set(bi) == {f"{d}/{c}" for d in ("forward", "backward") for c in ("simple_rnn_cell", "gru_cell")}
    assert bi["backward/simple_rnn_cell"]["bias_constraint"]["class_name"] == "NonNeg"


def test_unrolled_package(tmp_path: Path):
    manifest = json.loads(
        (write_package(_spec(), tmp_path / "u", unroll=True, time_steps=T) / MANIFEST_FILE).read_text()
    )
    assert manifest["graph_form"] == "unrolled" and manifest["time_steps"] == T
    assert manifest["unrolled_layers"] == ["enc", "bi"]


def test_weights_are_stored_without_pickle(package_dir: Path):
    with zipfile.ZipFile(package_dir / WEIGHTS_FILE) as archive:
        names = archive.namelist()
    assert names and all(n.endswith(".npy") for n in names)
    with np.load(package_dir / WEIGHTS_FILE, allow_pickle=False) as data:
        assert all(data[k].dtype == np.float32 for k in data.files)


def _refresh_digest(package_dir: Path, name: str) -> None:
    manifest = json.loads((package_dir / MANIFEST_FILE).read_text())
    manifest["files"][name] = sha256(package_dir / name)
    (package_dir / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.mark.parametrize("missing", ["model.onnx", MANIFEST_FILE, SPEC_FILE, WEIGHTS_FILE])
def test_missing_file_is_named(package_dir: Path, missing: str):
    (package_dir / missing).unlink()
    with pytest.raises(ModelFileError, match=missing.replace(".", r"\.")):
        read_package(package_dir)


def test_bad_json_is_reported(package_dir: Path):
    (package_dir / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        read_package(package_dir)


def test_changed_file_fails_its_digest(package_dir: Path):
    (package_dir / "model.onnx").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelFileError, match=r"model\.onnx .* digest"):
        read_package(package_dir)


def test_wrong_weight_shape_names_layer_and_weight(package_dir: Path):
    with np.load(package_dir / WEIGHTS_FILE, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    doc = json.loads((package_dir / SPEC_FILE).read_text())
    record = doc["layers"][0]["weights"]["recurrent_kernel"]
    arrays[record["key"]] = np.zeros((U, U), np.float32)
    np.savez(package_dir / WEIGHTS_FILE, **arrays)
    _refresh_digest(package_dir, WEIGHTS_FILE)
    with pytest.raises(ModelFileError, match=r"'enc'.*'recurrent_kernel'.*\(4, 4\)"):
        read_package(package_dir)
    record["shape"] = [U, U]  # consistent files, but the shape contradicts the layer's config
    (package_dir / SPEC_FILE).write_text(json.dumps(doc))
    _refresh_digest(package_dir, SPEC_FILE)
    with pytest.raises(ModelFileError, match=r"'enc'.*'recurrent_kernel'.*expected \(4, 16\)"):
        read_package(package_dir)


def test_pickled_weights_are_refused(package_dir: Path):
    np.savez(package_dir / WEIGHTS_FILE, w0=np.array([{"a": 1}], dtype=object))
    _refresh_digest(package_dir, WEIGHTS_FILE)
    with pytest.raises(ModelFileError, match="weights"):
        read_package(package_dir)


def test_unknown_format_version_is_refused(package_dir: Path):
    manifest = json.loads((package_dir / MANIFEST_FILE).read_text())
    manifest["format_version"] = 99
    (package_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="format_version 99"):
        read_package(package_dir)


def test_runtime_serves_a_package(package_dir: Path):
    from rnnserve.runtime.ort_model import OrtModel

    package = read_package(package_dir)
    runner = OrtModel(package.spec, model_path=package.model_path, signature=package.signature)
    x = np.random.default_rng(43).normal(0, 1, (B, T, F)).astype(np.float32)
    got = runner.run({"x": x}, mask=holey_mask(B, T))
    want = ReferenceModel(package.spec).run({"x": x}, mask=holey_mask(B, T))
    np.testing.assert_allclose(got.outputs["y"], want.outputs["y"], rtol=1e-5, atol=1e-5)


def test_token_vocabularies_are_recorded_and_recovered_for_older_packages(tmp_path: Path):
    vocabulary = 7
    embedding = LayerSpec(
        "Embedding",
        "embed",
        {"name": "embed", "input_dim": vocabulary, "output_dim": F, "mask_zero": True},
        {"embeddings": np.random.default_rng(3).normal(0, 1, (vocabulary, F)).astype(np.float32)},
        (TensorRef("ids"),),
    )
    rnn = rnn_layer("GRU", "rnn", "embed", F, U, np.random.default_rng(4))
    spec = model([InputSpec("ids", (None, None), "int64")], [embedding, rnn], {"y": TensorRef("rnn")})
    root = write_package(spec, tmp_path / "tokens")
    manifest = json.loads((root / MANIFEST_FILE).read_text())
    assert manifest["signature"]["inputs"][0]["vocabulary"] == vocabulary
    assert read_package(root).signature.inputs[0].vocabulary == vocabulary
    # a package exported before signatures recorded vocabularies: read from its Embedding layer instead
    del manifest["signature"]["inputs"][0]["vocabulary"]
    (root / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert read_package(root).signature.inputs[0].vocabulary == vocabulary
    assert (
        "vocabulary"
        not in json.loads((write_package(_spec(), tmp_path / "m") / MANIFEST_FILE).read_text())["signature"]["inputs"][
            0
        ]
    )
