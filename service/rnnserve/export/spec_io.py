"""A `ModelSpec` as JSON plus named arrays, without pickle: what an exported package stores as `spec.json` and
`weights.npz` so the runtime can rebuild graph variants (e.g. the T=1 step graph) from the package alone.

`spec.json` lists every weight as `{"key": <npz member>, "shape": [...], "dtype": "float32"}`; reading checks
each array against that record and against the shapes the layer's config implies (`rnnserve.export.weights`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnserve.errors import ModelFileError
from rnnserve.export.weights import check_weights
from rnnserve.spec import InputSpec, LayerSpec, ModelSpec, TensorRef

SPEC_FORMAT = 1
WEIGHT_DTYPES = frozenset({"float32", "float64", "float16"})


def _ref(ref: TensorRef) -> list[Any]:
    return [ref.layer, ref.index]


def spec_to_json(spec: ModelSpec) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON document of `spec` and the arrays it refers to (npz member name -> array)."""
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for layer in spec.layers:
        weights = {}
        for name, value in layer.weights.items():
            array = np.asarray(value)
            key = f"w{len(arrays)}"
            arrays[key] = array
            weights[name] = {"key": key, "shape": list(array.shape), "dtype": array.dtype.name}
        layers.append(
            {
                "class_name": layer.class_name,
                "name": layer.name,
                "config": layer.config,
                "weights": weights,
                "inputs": [_ref(r) for r in layer.inputs],
                "initial_state": [_ref(r) for r in layer.initial_state],
            }
        )
    doc = {
        "spec_format": SPEC_FORMAT,
        "name": spec.name,
        "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in spec.inputs],
        "layers": layers,
        "outputs": [_ref(r) for r in spec.outputs],
        "output_names": list(spec.output_names),
        "keras_version": spec.keras_version,
        "keras_config": spec.keras_config,
        "source": spec.source,
    }
    return doc, arrays


def spec_from_json(doc: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> ModelSpec:
    """Rebuild a spec; ModelFileError naming the field, layer or weight that is missing or inconsistent."""
    if not isinstance(doc, Mapping):
        raise ModelFileError(f"spec.json must hold an object, got {type(doc).__name__}")
    if doc.get("spec_format") != SPEC_FORMAT:
        raise ModelFileError(f"spec.json has spec_format {doc.get('spec_format')!r}; this rnnserve reads {SPEC_FORMAT}")
    try:
        spec = ModelSpec(
            name=str(doc["name"]),
            inputs=tuple(_input(i) for i in doc["inputs"]),
            layers=tuple(_layer(layer, arrays) for layer in doc["layers"]),
            outputs=tuple(_tensor_ref(r) for r in doc["outputs"]),
            output_names=tuple(str(n) for n in doc["output_names"]),
            keras_version=str(doc["keras_version"]),
            keras_config=dict(doc.get("keras_config") or {}),
            source=dict(doc.get("source") or {}),
        )
    except KeyError as exc:
        raise ModelFileError(f"spec.json lacks the field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"spec.json is malformed: {exc}") from None
    if len(spec.outputs) != len(spec.output_names):
        raise ModelFileError(f"spec.json has {len(spec.outputs)} outputs but {len(spec.output_names)} output names")
    for layer in spec.layers:
        check_weights(layer)
    return spec


def _input(d: Mapping[str, Any]) -> InputSpec:
    return InputSpec(str(d["name"]), tuple(None if s is None else int(s) for s in d["shape"]), str(d["dtype"]))


def _tensor_ref(r: Any) -> TensorRef:
    layer, index = r
    return TensorRef(str(layer), int(index))


def _layer(d: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> LayerSpec:
    name = str(d["name"])
    weights = {key: _weight(name, key, record, arrays) for key, record in dict(d["weights"]).items()}
    return LayerSpec(
        class_name=str(d["class_name"]),
        name=name,
        config=dict(d["config"]),
        weights=weights,
        inputs=tuple(_tensor_ref(r) for r in d["inputs"]),
        initial_state=tuple(_tensor_ref(r) for r in d["initial_state"]),
    )


def _weight(layer: str, name: str, record: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    key = str(record["key"])
    if key not in arrays:
        raise ModelFileError(f"layer {layer!r}: weight {name!r} ({key}) is missing from weights.npz", layer=layer)
    array = arrays[key]
    expected = tuple(int(s) for s in record["shape"])
    if array.shape != expected:
        raise ModelFileError(
            f"layer {layer!r}: weight {name!r} has shape {array.shape} in weights.npz, spec.json says {expected}",
            layer=layer,
        )
    if array.dtype.name != record["dtype"] or array.dtype.name not in WEIGHT_DTYPES:
        raise ModelFileError(
            f"layer {layer!r}: weight {name!r} has dtype {array.dtype.name} in weights.npz, "
            f"spec.json says {record['dtype']!r} (float weights only)",
            layer=layer,
        )
    return array
