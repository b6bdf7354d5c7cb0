"""Careful HDF5 access for untrusted files: hard links only, bounded attribute and dataset reads.

h5py follows soft and external links transparently, and a dataset may keep its data in other files; an
importer must never let a model file make it read something else on disk, so every lookup goes through
`child()` and every weight through `read_weight()`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from service.errors import ModelFileError

# What h5py raises on damaged or hostile input (it maps HDF5 library errors onto these).
H5_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError)


@contextmanager
def open_hdf5(source: Path | io.BytesIO, what: str) -> Iterator[h5py.File]:
    """Open an HDF5 file read-only from a path or from an in-memory buffer; `what` names it in errors."""
    target: Any = source if isinstance(source, io.BytesIO) else str(source)
    try:
        handle = h5py.File(target, "r")
    except H5_ERRORS as exc:
        raise ModelFileError(f"{what} is not a readable HDF5 file (truncated or damaged?): {exc}") from None
    with handle:
        yield handle


def child(group: h5py.Group, path: str, what: str) -> h5py.Group | h5py.Dataset | None:
    """The object at `path` below `group` following hard links only; None when absent.

    Raises ModelFileError for a soft or external link, an absolute path or an empty path component.
    """
    if path.startswith("/") or any(part in ("", ".", "..") for part in path.split("/")):
        raise ModelFileError(f"{what}: invalid HDF5 path {path!r}")
    node: h5py.Group | h5py.Dataset = group
    for part in path.split("/"):
        if not isinstance(node, h5py.Group):
            return None
        try:
            link = node.get(part, getlink=True)
            if link is None:
                return None
            if not isinstance(link, h5py.HardLink):
                raise ModelFileError(f"{what}: {path!r} is a {type(link).__name__}; only hard links are read")
            node = node[part]
        except H5_ERRORS as exc:
            raise ModelFileError(f"{what}: cannot read {path!r}: {exc}") from None
    return node


def read_text_attr(obj: h5py.HLObject, key: str, max_bytes: int, what: str) -> str | None:
    """A string attribute (Keras writes JSON and version strings), at most `max_bytes` long; None if absent."""
    try:
        if key not in obj.attrs:
            return None
        size = obj.attrs.get_id(key).get_storage_size()
        if size > max_bytes:
            raise ModelFileError(f"{what}: attribute {key!r} is {size} bytes, more than the {max_bytes}-byte limit")
        value = obj.attrs[key]
    except H5_ERRORS as exc:
        raise ModelFileError(f"{what}: cannot read attribute {key!r}: {exc}") from None
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"{what}: attribute {key!r} is not UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise ModelFileError(f"{what}: attribute {key!r} is not a string")


def read_name_list_attr(obj: h5py.HLObject, key: str, max_bytes: int, what: str) -> list[str]:
    """A list-of-names attribute such as `weight_names` (empty when absent or an empty numeric array)."""
    try:
        if key not in obj.attrs:
            return []
        size = obj.attrs.get_id(key).get_storage_size()
        if size > max_bytes:
            raise ModelFileError(f"{what}: attribute {key!r} is {size} bytes, more than the {max_bytes}-byte limit")
        value = np.asarray(obj.attrs[key])
    except H5_ERRORS as exc:
        raise ModelFileError(f"{what}: cannot read attribute {key!r}: {exc}") from None
    if value.size == 0:
        return []
    names = []
    for item in value.reshape(-1):
        if isinstance(item, bytes):
            item = item.decode("utf-8", errors="replace")
        if not isinstance(item, str):
            raise ModelFileError(f"{what}: attribute {key!r} holds {type(item).__name__}, not names")
        names.append(item)
    return names


class ByteBudget:
    """The weight bytes an import may still read (shared by every weight of one file)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise ModelFileError(f"{what} would take the weights read past the {self.limit}-byte limit")
        self.left -= nbytes


def dataset_shape(ds: h5py.Dataset, what: str) -> tuple[int, ...]:
    try:
        shape = ds.shape
    except H5_ERRORS as exc:
        raise ModelFileError(f"{what}: cannot read the dataset shape: {exc}") from None
    if shape is None:
        raise ModelFileError(f"{what}: the dataset is empty (no shape)")
    return tuple(int(d) for d in shape)


def read_weight(ds: h5py.Dataset, what: str, budget: ByteBudget) -> np.ndarray:
    """A floating-point dataset as a float32 array, refusing virtual or external storage."""
    try:
        kind, itemsize = ds.dtype.kind, ds.dtype.itemsize
        virtual, external = ds.is_virtual, ds.external
    except H5_ERRORS as exc:
        raise ModelFileError(f"{what}: cannot read the dataset header: {exc}") from None
    if kind != "f":
        raise ModelFileError(f"{what}: dataset has dtype {ds.dtype}, expected floating point")
    if virtual or external:
        raise ModelFileError(f"{what}: dataset keeps its data outside the file; refusing to read it")
    shape = dataset_shape(ds, what)
    budget.take(int(np.prod(shape, dtype=np.int64)) * itemsize, what)
    try:
        array = np.asarray(ds[()])
    except H5_ERRORS as exc:
        raise ModelFileError(f"{what}: cannot read the dataset (truncated file?): {exc}") from None
    return np.ascontiguousarray(array, dtype=np.float32)
