"""Every committed Keras file imports to the spec Keras itself describes: layers, inputs, outputs and weights."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from importer_files import FILES, keras_weights, meta, model_files

from rnnserve.importers import load_spec
from rnnserve.spec import ModelSpec, layer_output_count

GOOD = model_files()


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


@pytest.fixture(scope="module", params=GOOD, ids=_ids(GOOD))
def imported(request: pytest.FixtureRequest) -> tuple[Path, ModelSpec]:
    return request.param, load_spec(request.param)


def test_layers_are_the_keras_layers(imported: tuple[Path, ModelSpec]) -> None:
    path, spec = imported
    expected = sorted(tuple(pair) for pair in meta()[path.stem]["layers"])
    assert sorted((layer.name, layer.class_name) for layer in spec.layers) == expected


def test_layers_are_in_topological_order(imported: tuple[Path, ModelSpec]) -> None:
    _, spec = imported
    seen = {i.name for i in spec.inputs}
    for layer in spec.layers:
        for ref in (*layer.inputs, *layer.initial_state):
            assert ref.layer in seen, f"{layer.name} reads {ref.layer} before it is computed"
        seen.add(layer.name)


def test_inputs_match_keras(imported: tuple[Path, ModelSpec]) -> None:
    path, spec = imported
    info = meta()[path.stem]
    assert [list(i.shape) for i in spec.inputs] == info["inputs"]
    # Token ids are int64 whatever Keras' InputLayer says (a Keras 2 Sequential Embedding input is float32).
    token_inputs = {layer.inputs[0].layer for layer in spec.layers if layer.class_name == "Embedding"}
    expected_dtypes = [
        "int64" if "int" in dtype or i.name in token_inputs else "float32"
        for i, dtype in zip(spec.inputs, info["input_dtypes"], strict=True)
    ]
    assert [i.dtype for i in spec.inputs] == expected_dtypes


def test_outputs_match_keras(imported: tuple[Path, ModelSpec]) -> None:
    path, spec = imported
    assert len(spec.outputs) == len(spec.output_names) == meta()[path.stem]["outputs"]
    counts = {layer.name: layer_output_count(layer) for layer in spec.layers}
    for ref, name in zip(spec.outputs, spec.output_names, strict=True):
        assert ref.index < counts[ref.layer]
        assert name == (ref.layer if ref.index == 0 else f"{ref.layer}:{ref.index}")


def test_weights_equal_keras_get_weights(imported: tuple[Path, ModelSpec]) -> None:
    path, spec = imported
    expected = keras_weights(path.stem)
    assert {layer.name for layer in spec.layers if layer.weights} == set(expected)
    for layer in spec.layers:
        want = expected.get(layer.name, {})
        assert list(layer.weights) == list(want), f"{layer.name}: names or Keras creation order differ"
        for name, array in layer.weights.items():
            assert array.dtype == np.float32
            np.testing.assert_array_equal(array, want[name], err_msg=f"{layer.name}/{name}")


def test_source_describes_the_file(imported: tuple[Path, ModelSpec]) -> None:
    path, spec = imported
    assert spec.name == path.stem
    assert spec.source["path"] == str(path)
    assert spec.source["format"] == ("keras" if path.suffix == ".keras" else "h5")
    assert spec.source["keras_version"] == spec.keras_version
    assert spec.keras_version == meta()["_keras2_version" if path.stem.startswith("k2") else "_keras3_version"]
    assert spec.source["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert spec.keras_config["class_name"] in ("Sequential", "Functional")


def _without_object_ids(value: Any) -> Any:
    """A config without `shared_object_id` (`.keras` stamps per-process ids on initializers and regularizers)."""
    if isinstance(value, Mapping):
        return {k: _without_object_ids(v) for k, v in value.items() if k != "shared_object_id"}
    return value


def test_name_overrides_the_stem() -> None:
    spec = load_spec(GOOD[0], name="renamed")
    assert spec.name == "renamed"


@pytest.mark.parametrize("stem", ["k3_seq_simple_rnn", "k3_seq_gru_lstm", "k3_func_lstm_state", "k3_func_emb_mask"])
def test_keras_and_legacy_h5_of_one_model_give_the_same_spec(stem: str) -> None:
    native, legacy = load_spec(FILES / f"{stem}.keras"), load_spec(FILES / f"{stem}.h5")
    assert native.inputs == legacy.inputs
    assert native.outputs == legacy.outputs and native.output_names == legacy.output_names
    for a, b in zip(native.layers, legacy.layers, strict=True):
        assert (a.class_name, a.name, a.inputs, a.initial_state) == (b.class_name, b.name, b.inputs, b.initial_state)
        assert _without_object_ids(a.config) == _without_object_ids(b.config)
        assert list(a.weights) == list(b.weights)
