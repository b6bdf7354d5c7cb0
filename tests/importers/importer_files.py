"""Test helpers: the committed Keras files of `files/` (written by `make_files.py`) and ways to damage copies."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FILES = Path(__file__).resolve().parent / "files"


@cache
def meta() -> dict[str, Any]:
    """What Keras said about each model when `make_files.py` wrote it."""
    return dict(json.loads((FILES / "meta.json").read_text()))


def model_files(loadable: bool = True) -> list[Path]:
    """Every committed model file; with `loadable`, only those rnnserve imports."""
    refused = {"k3_func_computed_state", "k3_func_conv", "k3_func_mask_initial_state"}
    paths = sorted(p for p in FILES.iterdir() if p.suffix in (".keras", ".h5"))
    return [p for p in paths if (p.stem not in refused) == loadable]


def keras_weights(stem: str) -> dict[str, dict[str, np.ndarray]]:
    """`{layer: {weight name: array}}` as Keras reported them, each layer's weights in Keras order."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(FILES / f"{stem}.npz") as data:
        for key in data.files:
            layer, name = key.split("|")
            out.setdefault(layer, {})[name] = data[key]
    return out


# ---- .keras archives -------------------------------------------------------------------------------------------


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_archive(path: Path, content: Mapping[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in content.items():
            archive.writestr(name, data)
    return path


def config_of(path: Path) -> dict[str, Any]:
    return dict(json.loads(members(path)["config.json"]))


def with_config(src: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of a `.keras` file whose config.json went through `edit`."""
    content = members(src)
    config = json.loads(content["config.json"])
    edit(config)
    content["config.json"] = json.dumps(config).encode()
    return write_archive(dst, content)


def with_weights(src: Path, dst: Path, edit: Callable[[h5py.File], None]) -> Path:
    """A copy of a `.keras` file whose model.weights.h5 went through `edit`."""
    content = members(src)
    content["model.weights.h5"] = edit_hdf5(content["model.weights.h5"], edit)
    return write_archive(dst, content)


def edit_hdf5(data: bytes, edit: Callable[[h5py.File], None]) -> bytes:
    buffer = io.BytesIO(data)
    with h5py.File(buffer, "r+") as h5:
        edit(h5)
    return buffer.getvalue()


def layer_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The serialized layer `name` in a model config (`{"class_name", "config", ...}`)."""
    for layer in config["config"]["layers"]:
        if layer.get("name", layer["config"].get("name")) == name:
            return layer  # type: ignore[no-any-return]
    raise KeyError(name)
