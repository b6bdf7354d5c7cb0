"""Read a legacy Keras HDF5 model file (`model.save("m.h5")`), as written by Keras 3 or by Keras 2 / tf.keras.

Root attributes: `model_config` (JSON), `keras_version`, `backend`. Weights live under
`model_weights/<layer>/`, whose `weight_names` attribute lists them in creation order as paths relative to
that group. Keras 2 names end in `:0`; a Bidirectional layer keeps its two directions under
`forward_<inner>/` and `backward_<inner>/`. Weights are matched by their last path component (`kernel`,
`recurrent_kernel`, `bias`, `embeddings`) and, for Bidirectional, by direction; `optimizer_weights` and
`training_config` are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import h5py

from service.errors import ModelFileError
from service.importers.hdf5 import child, open_hdf5, read_name_list_attr, read_text_attr
from service.importers.keras_config import StoredModel, keras_version_of
from service.importers.limits import Limits, parse_json

_TENSOR_SUFFIX = re.compile(r":\d+$")
_VERSION_ATTR_BYTES = 1024
_NAMES_ATTR_BYTES = 1 << 20


@contextmanager
def open_legacy_h5(path: Path, limits: Limits) -> Iterator[StoredModel]:
    """The model stored in a legacy `.h5` file; the weights stay readable while the context is open."""
    with open_hdf5(path, path.name) as h5:
        text = read_text_attr(h5, "model_config", limits.max_json_bytes, path.name)
        if text is None:
            raise ModelFileError(
                f"{path.name} has no model_config: it holds weights only (saved with save_weights?). "
                'Save the whole model instead: model.save("m.h5") or model.save("m.keras")'
            )
        config = parse_json(text, f"{path.name}: the model_config attribute", limits)
        weights = child(h5, "model_weights", path.name)
        if not isinstance(weights, h5py.Group):
            raise ModelFileError(f"{path.name} has no model_weights group")
        version = read_text_attr(h5, "keras_version", _VERSION_ATTR_BYTES, path.name)
        if version is None:
            version = read_text_attr(weights, "keras_version", _VERSION_ATTR_BYTES, path.name)
        yield StoredModel(config, keras_version_of(version, path.name), LegacyWeights(weights))


class LegacyWeights:
    """`WeightSource` over the `model_weights` group of a legacy `.h5` file."""

    def __init__(self, group: h5py.Group) -> None:
        self._group = group

    def layer_weights(self, layer: str, class_name: str, names: Sequence[str]) -> dict[str, h5py.Dataset]:
        group = child(self._group, layer, "model_weights")
        if not isinstance(group, h5py.Group):
            raise ModelFileError(f"the file has no weights for layer {layer!r} (no model_weights/{layer} group)")
        where = f"model_weights/{layer}"
        paths: dict[str, str] = {}
        for path in read_name_list_attr(group, "weight_names", _NAMES_ATTR_BYTES, where):
            key = _normalised(path, class_name, where)
            if key in paths:
                raise ModelFileError(f"layer {layer!r} lists weight {key!r} twice ({paths[key]!r}, {path!r})")
            paths[key] = path
        missing = [n for n in names if n not in paths]
        if missing:
            raise ModelFileError(f"layer {layer!r} weight {missing[0]!r} is missing (the file lists {sorted(paths)})")
        extra = [k for k in paths if k not in names]
        if extra:
            raise ModelFileError(f"layer {layer!r} has unexpected weight {extra[0]!r} (expected {list(names)})")
        datasets = {}
        for name in names:
            dataset = child(group, paths[name], where)
            if not isinstance(dataset, h5py.Dataset):
                raise ModelFileError(
                    f"layer {layer!r} weight {name!r} is missing: {where}/{paths[name]} is not a dataset"
                )
            datasets[name] = dataset
        return datasets


def _normalised(path: str, class_name: str, where: str) -> str:
    """`lstm/lstm_cell/kernel:0` -> `kernel`; `bi/forward_lstm/lstm_cell/bias` -> `forward/bias`."""
    parts = path.split("/")
    base = _TENSOR_SUFFIX.sub("", parts[-1])
    if class_name != "Bidirectional":
        return base
    directions = [p.split("_", 1)[0] for p in parts[1:-1] if p.startswith(("forward_", "backward_"))]
    if len(directions) != 1:
        raise ModelFileError(f"{where}: cannot tell the direction of Bidirectional weight {path!r}")
    return f"{directions[0]}/{base}"
