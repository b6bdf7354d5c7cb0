"""The raw contents of a model file as plain data, and their transfer out of the isolated reader process.

A `RawModel` is what the container readers (`keras_zip.read_keras_archive`, `keras_h5.read_legacy_h5`) take
out of a file: the config and metadata JSON text, the `keras_version`, and an `H5Tree` of the weight
datasets (float32 arrays) and the few group attributes the importer needs. Everything after that works on
this plain data, without h5py.

When the reader runs in a child process (`isolation.py`) the `RawModel` comes back through a file in this
format (no pickle: the parent treats the child's output as untrusted too):

    b"RNNSRAW1" | uint64 little-endian header length | header JSON | float32 payload

The header holds the texts, the attributes and one entry per dataset (`path`, `shape`, `dtype`, and for
float32 data its `offset` into the payload).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rnnserve.errors import ModelFileError
from rnnserve.importers.jsonish import array, is_index, mapping
from rnnserve.importers.limits import Limits, parse_json

MAGIC = b"RNNSRAW1"
_FLOAT32 = "float32"
AttrValue = str | list[str]


@dataclass
class H5Tree:
    """The datasets and selected group attributes below some HDF5 groups, keyed by path from the file root."""

    datasets: dict[str, np.ndarray | str] = field(default_factory=dict)
    """float32 array, or the dtype name of a dataset that is not floating point (not read)."""
    attrs: dict[str, dict[str, AttrValue]] = field(default_factory=dict)
    """group path -> the attributes read from it."""
    groups: set[str] = field(default_factory=set)

    def float_array(self, path: str, what: str) -> np.ndarray:
        """The float32 array at `path`; a missing or non-float dataset is a ModelFileError naming `what`."""
        value = self.datasets.get(path)
        if value is None:
            raise ModelFileError(f"{what} is missing: the file has no dataset {path}")
        if isinstance(value, str):
            raise ModelFileError(f"{what}: dataset {path} has dtype {value}, expected floating point")
        return value

    def children(self, group: str) -> list[str]:
        """Names of the datasets directly inside `group`."""
        prefix = f"{group}/"
        return [p[len(prefix) :] for p in self.datasets if p.startswith(prefix) and "/" not in p[len(prefix) :]]


@dataclass
class RawModel:
    config: str
    """The model config JSON text (`config.json`, or the `model_config` attribute)."""
    keras_version: str | None
    metadata: str | None = None
    """`metadata.json` text (.keras only)."""
    tree: H5Tree = field(default_factory=H5Tree)


# ---- child side ------------------------------------------------------------------------------------------------


def write_raw(raw: RawModel, path: Path) -> None:
    entries: list[dict[str, Any]] = []
    arrays: list[np.ndarray] = []
    offset = 0
    for name, value in raw.tree.datasets.items():
        if isinstance(value, str):
            entries.append({"path": name, "dtype": value})
            continue
        data = np.ascontiguousarray(value, dtype="<f4")
        entries.append({"path": name, "dtype": _FLOAT32, "shape": list(data.shape), "offset": offset})
        arrays.append(data)
        offset += data.nbytes
    header = {
        "config": raw.config,
        "keras_version": raw.keras_version,
        "metadata": raw.metadata,
        "attrs": raw.tree.attrs,
        "groups": sorted(raw.tree.groups),
        "datasets": entries,
    }
    encoded = json.dumps(header).encode("utf-8")
    with path.open("wb") as handle:
        handle.write(MAGIC + struct.pack("<Q", len(encoded)) + encoded)
        for data in arrays:
            data.tofile(handle)


def write_error(message: str, unsupported: bool, path: Path) -> None:
    """Record a ModelFileError raised in the child, for the parent to raise again."""
    encoded = json.dumps({"error": message, "unsupported": unsupported}).encode("utf-8")
    path.write_bytes(MAGIC + struct.pack("<Q", len(encoded)) + encoded)


# ---- parent side -----------------------------------------------------------------------------------------------


def read_raw(path: Path, limits: Limits, what: str) -> RawModel | tuple[str, bool]:
    """The `RawModel` the child wrote, or `(message, unsupported)` when it reported an error."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(len(MAGIC) + 8)
        if len(head) != len(MAGIC) + 8 or not head.startswith(MAGIC):
            raise ModelFileError(f"reading {what} failed: the reader process returned no result")
        (header_len,) = struct.unpack("<Q", head[len(MAGIC) :])
        header_cap = 4 * limits.max_json_bytes + (64 << 20)
        if header_len > min(header_cap, size):
            raise ModelFileError(f"reading {what} failed: the reader returned a malformed result")
        header = mapping(_parse_header(handle.read(header_len), limits), "the reader result")
        if "error" in header:
            return str(header["error"]), bool(header.get("unsupported"))
        base = len(MAGIC) + 8 + header_len
        return RawModel(
            config=_text(header.get("config")),
            keras_version=_optional_text(header.get("keras_version")),
            metadata=_optional_text(header.get("metadata")),
            tree=H5Tree(
                datasets=_datasets(handle, base, size, header.get("datasets")),
                attrs=_attrs(header.get("attrs")),
                groups={_text(g) for g in array(header.get("groups"), "groups")},
            ),
        )


def _parse_header(data: bytes, limits: Limits) -> Any:
    header_limits = replace(limits, max_json_bytes=len(data), max_json_depth=limits.max_json_depth + 4)
    return parse_json(data, "the reader result", header_limits)


def _datasets(handle: Any, base: int, size: int, entries: Any) -> dict[str, np.ndarray | str]:
    out: dict[str, np.ndarray | str] = {}
    for entry in array(entries, "datasets"):
        entry = mapping(entry, "a dataset entry")
        name, dtype = _text(entry.get("path")), _text(entry.get("dtype"))
        if dtype != _FLOAT32:
            out[name] = dtype
            continue
        shape = array(entry.get("shape"), "a dataset shape")
        if not all(is_index(d) for d in shape) or not is_index(entry.get("offset")):
            raise ModelFileError("the reader returned a malformed dataset entry")
        offset = int(entry["offset"])
        count = int(np.prod(shape, dtype=np.int64))
        if base + offset + 4 * count > size:
            raise ModelFileError("the reader returned a truncated result")
        handle.seek(base + offset)
        data = np.fromfile(handle, dtype="<f4", count=count)
        if data.size != count:
            raise ModelFileError("the reader returned a truncated result")
        out[name] = data.astype(np.float32, copy=False).reshape(shape)
    return out


def _attrs(value: Any) -> dict[str, dict[str, AttrValue]]:
    out: dict[str, dict[str, AttrValue]] = {}
    for group, attrs in mapping(value, "attrs").items():
        out[group] = {}
        for key, item in mapping(attrs, "attrs").items():
            out[group][key] = [_text(v) for v in item] if isinstance(item, list) else _text(item)
    return out


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ModelFileError("the reader returned a malformed result")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)
