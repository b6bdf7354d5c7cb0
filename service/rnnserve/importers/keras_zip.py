"""Read a Keras 3 `.keras` archive (a zip of `metadata.json`, `config.json`, `model.weights.h5`) without Keras.

The archive is untrusted: nothing is extracted to disk, the member count is capped, each member's declared
size and compression ratio are checked before it is opened, and it is inflated in chunks that stop at the
cap (and at the declared size), so a zip bomb fails fast without allocating. The weights HDF5 file is opened
from memory. `read_keras_archive` does all that in the isolated reader process and returns plain data;
`archive_model` then parses the JSON and serves the weights from it.

`model.weights.h5` names its groups after the snake_case class of each layer (`layers/gru_1`), not after the
user's names; in Keras 3 files every `.../vars` group carries the user's name as its `name` attribute, so
layers are matched by it. `.keras` files written by tf.keras / tf_keras 2.13+ (`keras_version` 2.x) have no
such attribute: their groups are matched by the naming rule itself (snake_case class name, `_1`, `_2`, ... in
`model.layers` order: every config layer of a Functional model, the non-input layers of a Sequential one).
Weights are the datasets `vars/0`, `vars/1`, ... in creation order; recurrent layers keep them under
`cell/vars`, Bidirectional under `forward_layer/cell/vars` and `backward_layer/cell/vars`, TimeDistributed
under `layer/vars`.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnserve.errors import ModelFileError
from rnnserve.importers.hdf5 import ByteBudget, open_hdf5, read_tree
from rnnserve.importers.jsonish import mapping
from rnnserve.importers.keras_config import StoredModel, keras_version_of
from rnnserve.importers.limits import Limits, parse_json
from rnnserve.importers.rawfile import H5Tree, RawModel
from rnnserve.kinds import find_kind, get_kind

METADATA = "metadata.json"
CONFIG = "config.json"
WEIGHTS = "model.weights.h5"

_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error, NotImplementedError,
               RuntimeError, ValueError)  # fmt: skip


def read_keras_archive(path: Path, limits: Limits) -> RawModel:
    """The raw contents of a `.keras` file (runs in the isolated reader process)."""
    try:
        archive = zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise ModelFileError(f"{path.name} is not a .keras file (not a readable zip archive): {exc}") from None
    with archive:
        members = _members(archive, limits)
        metadata = _read(archive, members, METADATA, limits.max_json_bytes, limits).getvalue()
        config = _read(archive, members, CONFIG, limits.max_json_bytes, limits).getvalue()
        weights = _read(archive, members, WEIGHTS, limits.max_weights_bytes, limits)
    budget = ByteBudget(limits.max_weights_bytes)
    with open_hdf5(weights, f"{path.name}: {WEIGHTS}") as h5:
        tree = read_tree(h5, "layers", {"name": "text"}, budget, WEIGHTS)
    return RawModel(config=_text(config, CONFIG), keras_version=None, metadata=_text(metadata, METADATA), tree=tree)


def archive_model(raw: RawModel, limits: Limits, filename: str) -> StoredModel:
    """The model of a `.keras` file from its raw contents."""
    metadata = mapping(parse_json(raw.metadata or "", METADATA, limits), METADATA)
    keras_version = keras_version_of(metadata.get("keras_version"), f"{filename}: {METADATA}")
    config = parse_json(raw.config, CONFIG, limits)
    return StoredModel(config, keras_version, ArchiveWeights(raw.tree, saving_names(config)))


def saving_names(model_config: Any) -> dict[str, str]:
    """User layer name -> weights group name by Keras' naming rule (for files without `name` attributes).

    A malformed config gives what it can: the config reader reports its problems with better messages.
    """
    root = model_config.get("config") if isinstance(model_config, Mapping) else None
    layers = root.get("layers") if isinstance(root, Mapping) else root
    if not isinstance(layers, list):
        return {}
    sequential = model_config.get("class_name") == "Sequential"
    names: dict[str, str] = {}
    used: dict[str, int] = {}
    for entry in layers:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("class_name"), str) or not entry["class_name"]:
            continue
        config = entry.get("config")
        name = entry.get("name", config.get("name") if isinstance(config, Mapping) else None)
        if sequential and _is_input(entry["class_name"]):
            continue
        base = _snake_case(entry["class_name"])
        count = used.get(base, 0)
        used[base] = count + 1
        if isinstance(name, str):
            names[name] = base if count == 0 else f"{base}_{count}"
    return names


def _snake_case(class_name: str) -> str:
    """Keras' `to_snake_case`: `SimpleRNN` -> `simple_rnn`, `TimeDistributed` -> `time_distributed`."""
    intermediate = re.sub("(.)([A-Z][a-z0-9]+)", r"\1_\2", class_name)
    snake = re.sub("([a-z])([A-Z])", r"\1_\2", intermediate).lower()
    return snake if not snake.startswith("_") else f"private{snake}"


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{name} is not UTF-8 text: {exc}") from None


def _members(archive: zipfile.ZipFile, limits: Limits) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise ModelFileError(
            f"the .keras archive lists {len(infos)} members, more than the limit of {limits.max_members}"
        )
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.filename in members:
            raise ModelFileError(f"the .keras archive holds {info.filename!r} twice")
        members[info.filename] = info
    return members


def _read(
    archive: zipfile.ZipFile, members: Mapping[str, zipfile.ZipInfo], name: str, cap: int, limits: Limits
) -> io.BytesIO:
    """One member, inflated in chunks; refused before reading if it declares too much or expands too far."""
    info = members.get(name)
    if info is None:
        raise ModelFileError(f"the .keras archive has no {name!r} (it holds {sorted(members)[:10]})")
    if info.file_size > cap:
        raise ModelFileError(f"{name} declares {info.file_size} bytes, more than the {cap}-byte limit")
    if info.file_size > limits.expansion_floor and info.file_size > limits.max_expansion * max(info.compress_size, 1):
        raise ModelFileError(
            f"{name} declares {info.file_size} bytes but stores {info.compress_size}: refusing a likely zip bomb"
        )
    allowed = min(cap, info.file_size)
    buffer = io.BytesIO()
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(limits.read_chunk):
                buffer.write(chunk)
                if buffer.tell() > allowed:
                    raise ModelFileError(f"{name} expands past its declared {info.file_size} bytes: refusing it")
    except _ZIP_ERRORS as exc:
        raise ModelFileError(f"cannot read {name} from the .keras archive (truncated or damaged?): {exc}") from None
    if buffer.tell() != info.file_size:
        raise ModelFileError(f"{name} is truncated: {buffer.tell()} of {info.file_size} bytes")
    buffer.seek(0)
    return buffer


class ArchiveWeights:
    """`WeightSource` over the datasets of a `model.weights.h5` (read into an `H5Tree`)."""

    def __init__(self, tree: H5Tree, saving_names: Mapping[str, str]) -> None:
        self._tree = tree
        self._saving_names = saving_names
        self._layers: dict[str, str] | None = None

    def layer_weights(self, layer: str, class_name: str, names: Sequence[str]) -> dict[str, np.ndarray]:
        group = self._index().get(layer)
        if group is None:
            raise ModelFileError(f"{WEIGHTS} has no weights for layer {layer!r}")
        arrays: dict[str, np.ndarray] = {}
        for prefix in _prefixes(names):
            wanted = [n for n in names if _prefix_of(n) == prefix]
            arrays.update(
                zip(wanted, self._vars(f"{group}/{_vars_path(class_name, prefix)}", layer, wanted), strict=True)
            )
        return arrays

    def _index(self) -> dict[str, str]:
        """User layer name -> its group path under `layers/`, from the `name` attribute of each `vars` group."""
        if self._layers is None:
            self._layers = {}
            for path, attrs in self._tree.attrs.items():
                parts = path.split("/")
                if len(parts) != 3 or parts[2] != "vars" or not isinstance(attrs.get("name"), str):
                    continue
                user_name = str(attrs["name"])
                if user_name in self._layers:
                    raise ModelFileError(f"{WEIGHTS} holds two weight groups for layer {user_name!r}")
                self._layers[user_name] = f"layers/{parts[1]}"
            if not self._layers:  # written by tf.keras: no `name` attributes
                self._layers = {user: f"layers/{group}" for user, group in self._saving_names.items()}
        return self._layers

    def _vars(self, path: str, layer: str, wanted: Sequence[str]) -> list[np.ndarray]:
        where = f"{WEIGHTS} {path}"
        if path not in self._tree.groups:
            raise ModelFileError(f"layer {layer!r} weight {wanted[0]!r} is missing: {where} does not exist")
        keys = set(self._tree.children(path))
        expected = {str(i) for i in range(len(wanted))}
        if keys != expected:
            missing = [w for i, w in enumerate(wanted) if str(i) not in keys]
            detail = f"weight {missing[0]!r} is missing" if missing else "has unexpected extra weights"
            raise ModelFileError(
                f"layer {layer!r} {detail}: {where} holds {sorted(keys)[:10]}, expected {sorted(expected)}"
            )
        return [self._tree.float_array(f"{path}/{i}", f"layer {layer!r} weight {w!r}") for i, w in enumerate(wanted)]


def _prefix_of(name: str) -> str:
    """What a weight name says before its last component: a direction (`forward`), a stacked cell (`gru_cell`)."""
    return name.rpartition("/")[0]


def _prefixes(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(_prefix_of(n) for n in names))


def _vars_path(class_name: str, prefix: str) -> str:
    return get_kind(class_name).vars_path(prefix)


def _is_input(class_name: str) -> bool:
    kind = find_kind(class_name)
    return kind is not None and kind.model_input
