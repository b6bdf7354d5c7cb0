"""Read a legacy Keras HDF5 model file (`model.save("m.h5")`), as written by Keras 3 or by Keras 2 / tf.keras.

Root attributes: `model_config` (JSON), `keras_version`, `backend`. Weights live under
`model_weights/<layer>/`, whose `weight_names` attribute lists them in creation order as paths relative to
that group. Keras 2 names end in `:0`; a Bidirectional layer keeps its two directions under
`forward_<inner>/` and `backward_<inner>/`. Weights are matched by their last path component (`kernel`,
`recurrent_kernel`, `bias`, `embeddings`) and, for Bidirectional, by direction; `optimizer_weights` and
`training_config` are ignored. `read_legacy_h5` runs in the isolated reader process; `legacy_model` parses
the config and serves the weights from the plain data it returns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rnnserve.errors import ModelFileError
from rnnserve.importers.hdf5 import ByteBudget, open_hdf5, read_text_attr, read_tree
from rnnserve.importers.keras_config import StoredModel, keras_version_of
from rnnserve.importers.limits import Limits, parse_json
from rnnserve.importers.rawfile import H5Tree, RawModel
from rnnserve.kinds import get_kind

WEIGHTS = "model_weights"
_TENSOR_SUFFIX = re.compile(r":\d+$")
_VERSION_ATTR_BYTES = 1024


def read_legacy_h5(path: Path, limits: Limits) -> RawModel:
    """The raw contents of a legacy `.h5` file (runs in the isolated reader process)."""
    with open_hdf5(path, path.name) as h5:
        config = read_text_attr(h5, "model_config", limits.max_json_bytes, path.name)
        if config is None:
            raise ModelFileError(
                f"{path.name} has no model_config: it holds weights only (saved with save_weights?). "
                'Save the whole model instead: model.save("m.h5") or model.save("m.keras")'
            )
        version = read_text_attr(h5, "keras_version", _VERSION_ATTR_BYTES, path.name)
        budget = ByteBudget(limits.max_weights_bytes)
        tree = read_tree(h5, WEIGHTS, {"weight_names": "names", "keras_version": "text"}, budget, path.name)
    if version is None:
        version = str(tree.attrs.get(WEIGHTS, {}).get("keras_version", "")) or None
    return RawModel(config=config, keras_version=version, tree=tree)


def legacy_model(raw: RawModel, limits: Limits, filename: str) -> StoredModel:
    """The model of a legacy `.h5` file from its raw contents."""
    config = parse_json(raw.config, f"{filename}: the model_config attribute", limits)
    return StoredModel(config, keras_version_of(raw.keras_version, filename), LegacyWeights(raw.tree))


class LegacyWeights:
    """`WeightSource` over the `model_weights` datasets of a legacy `.h5` file (read into an `H5Tree`)."""

    def __init__(self, tree: H5Tree) -> None:
        self._tree = tree

    def layer_weights(self, layer: str, class_name: str, names: Sequence[str]) -> dict[str, np.ndarray]:
        group = f"{WEIGHTS}/{layer}"
        if group not in self._tree.groups:
            raise ModelFileError(f"the file has no weights for layer {layer!r} (no {group} group)")
        listed = self._tree.attrs.get(group, {}).get("weight_names", [])
        listed = listed if isinstance(listed, list) else []
        keys = get_kind(class_name).stored_weight_names([str(p) for p in listed], names)
        paths: dict[str, str] = {}
        for position, path in enumerate(listed):
            key = keys[position] if keys is not None else _normalised(path, class_name, group)
            if key in paths:
                raise ModelFileError(f"layer {layer!r} lists weight {key!r} twice ({paths[key]!r}, {path!r})")
            paths[key] = path
        missing = [n for n in names if n not in paths]
        if missing:
            raise ModelFileError(f"layer {layer!r} weight {missing[0]!r} is missing (the file lists {sorted(paths)})")
        extra = [k for k in paths if k not in names]
        if extra:
            raise ModelFileError(f"layer {layer!r} has unexpected weight {extra[0]!r} (expected {list(names)})")
        return {n: self._tree.float_array(f"{group}/{paths[n]}", f"layer {layer!r} weight {n!r}") for n in names}


def _normalised(path: str, class_name: str, where: str) -> str:
    """`lstm/lstm_cell/kernel:0` -> `kernel`; `bi/forward_lstm/lstm_cell/bias` -> `forward/bias`."""
    parts = path.split("/")
    base = _TENSOR_SUFFIX.sub("", parts[-1])
    prefixes = tuple(f"{d}_" for d in get_kind(class_name).weight_directions)
    if not prefixes:
        return base
    directions = [p.split("_", 1)[0] for p in parts[1:-1] if p.startswith(prefixes)]
    if len(directions) != 1:
        raise ModelFileError(f"{where}: cannot tell the direction of Bidirectional weight {path!r}")
    return f"{directions[0]}/{base}"
