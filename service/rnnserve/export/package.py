"""Exported packages: a folder the model repository serves as is (`rnnserve export` writes one).

    NAME/
      model.onnx      the graph (`to_onnx`), named as `rnnserve.runtime.runner` says
      manifest.json   format version, rnnserve version, opset, graph form, signature, Keras config, source,
                      training-only settings (regularizers, constraints, dropout, seed), file digests
      spec.json       the ModelSpec without its arrays (`rnnserve.export.spec_io`)
      weights.npz     the arrays, saved and read with allow_pickle=False

The spec travels with the graph so the runtime can build other variants (the T=1 step graph, a Scan graph
for an unrolled model) without the Keras file. Reading checks every file and digest and raises ModelFileError
naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnserve import __version__
from rnnserve.errors import ModelFileError
from rnnserve.export.builder import OPSET
from rnnserve.export.convert import choose_unroll, fixed_time_steps, is_recurrent, to_onnx
from rnnserve.export.converters.recurrent import wants_unroll
from rnnserve.export.spec_io import spec_from_json, spec_to_json
from rnnserve.kinds import kind_of
from rnnserve.signature import ModelSignature, with_vocabularies
from rnnserve.spec import LayerSpec, ModelSpec

FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.npz"

TRAINING_KEYS = ("dropout", "recurrent_dropout", "seed", "rate", "noise_shape")


@dataclass(frozen=True)
class Package:
    path: Path
    model_path: Path
    manifest: Mapping[str, Any]
    signature: ModelSignature
    spec: ModelSpec


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _layer_configs(layer: LayerSpec) -> Mapping[str, Any]:
    """The config holding a layer's own arguments (a wrapper's inner layer)."""
    return kind_of(layer).own_config(layer.config)


def _training_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in config.items()
        if key.endswith(("_regularizer", "_constraint")) or key in TRAINING_KEYS
    }


def training_settings(spec: ModelSpec) -> dict[str, dict[str, Any]]:
    """Per layer, the settings that only matter for training: kept so that nothing in the Keras file is lost.
    A layer whose parts have settings of their own (stacked cells, also inside a Bidirectional) keeps them under
    `parts`, by weight prefix: `{"parts": {"gru_cell": {"dropout": 0.2, ...}, "lstm_cell": {...}}}`."""
    settings: dict[str, dict[str, Any]] = {}
    for layer in spec.layers:
        config = _layer_configs(layer)
        kept = _training_keys(config)
        parts = {
            prefix: own
            for prefix, part in kind_of(layer).parts(layer.config).items()
            if part != config and (own := _training_keys(part))
        }
        if parts:
            kept["parts"] = parts
        if kept:
            settings[layer.name] = kept
    return settings


def _source(spec: ModelSpec) -> dict[str, Any]:
    source = dict(spec.source)
    return {
        "path": source.get("path"),
        "format": source.get("format"),
        "keras_version": source.get("keras_version", spec.keras_version),
        "sha256": source.get("sha256"),
    }


def write_package(
    spec: ModelSpec, out_dir: str | Path, *, unroll: bool | None = None, time_steps: int | None = None
) -> Path:
    """Export `spec` into the folder `out_dir` (created if needed; package files in it are replaced)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, signature = to_onnx(spec, unroll=unroll, time_steps=time_steps)
    (out / MODEL_FILE).write_bytes(model.SerializeToString())
    doc, arrays = spec_to_json(spec)
    (out / SPEC_FILE).write_text(json.dumps(doc, indent=1))
    with (out / WEIGHTS_FILE).open("wb") as f:
        np.savez(f, allow_pickle=False, **arrays)
    unroll = choose_unroll(unroll, time_steps)
    fixed = fixed_time_steps(spec, unroll, time_steps)
    manifest = {
        "format_version": FORMAT_VERSION,
        "rnnserve_version": __version__,
        "opset": OPSET,
        "graph_form": "scan" if fixed is None else "unrolled",
        "time_steps": fixed,
        "unrolled_layers": [layer.name for layer in spec.layers if is_recurrent(layer) and wants_unroll(layer, unroll)],
        "signature": signature.to_dict(),
        "keras_config": spec.keras_config,
        "source": _source(spec),
        "training": training_settings(spec),
        "files": {name: _sha256(out / name) for name in (MODEL_FILE, SPEC_FILE, WEIGHTS_FILE)},
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    return out


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ModelFileError(f"package {str(path.parent)!r} has no {path.name}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{str(path)!r} is not valid JSON: {exc}") from None


def _check_files(root: Path, manifest: Mapping[str, Any]) -> None:
    digests = manifest.get("files")
    if not isinstance(digests, Mapping):
        raise ModelFileError(f"{MANIFEST_FILE} in {str(root)!r} lacks the 'files' digests")
    for name in (MODEL_FILE, SPEC_FILE, WEIGHTS_FILE):
        path = root / name
        if not path.is_file():
            raise ModelFileError(f"package {str(root)!r} has no {name}")
        if digests.get(name) != _sha256(path):
            raise ModelFileError(f"{name} in package {str(root)!r} does not match the digest in {MANIFEST_FILE}")


def _read_weights(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:  # ValueError: an object array (pickle) or a damaged member
        raise ModelFileError(f"{str(path)!r} is not a readable weights archive: {exc}") from None


def read_package(path: str | Path) -> Package:
    """Read and validate an exported package folder."""
    root = Path(path)
    if not root.is_dir():
        raise ModelFileError(f"package {str(root)!r} is not a folder")
    manifest = _read_json(root / MANIFEST_FILE)
    if not isinstance(manifest, Mapping):
        raise ModelFileError(f"{MANIFEST_FILE} in {str(root)!r} must hold an object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"package {str(root)!r} has format_version {manifest.get('format_version')!r}; "
            f"this rnnserve reads {FORMAT_VERSION}"
        )
    _check_files(root, manifest)
    spec = spec_from_json(_read_json(root / SPEC_FILE), _read_weights(root / WEIGHTS_FILE))
    try:
        signature = with_vocabularies(ModelSignature.from_dict(manifest["signature"]), spec)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{MANIFEST_FILE} in {str(root)!r} has no valid signature: {exc!r}") from None
    return Package(root, root / MODEL_FILE, manifest, signature, spec)
