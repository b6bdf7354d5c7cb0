"""Careful HDF5 access for untrusted files: hard links only, bounded attribute and dataset reads.

h5py follows soft and external links transparently, and a dataset may keep its data in other files; an
importer must never let a model file make it read something else on disk, so every lookup goes through
`child()` and every weight through `read_weight()`. `read_tree()` copies what the importer needs out of a
file into plain data (an `H5Tree`). This module runs in the isolated reader process (`isolation.py`):
the HDF5 library can hang or crash on hostile input.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from rnnserve.errors import ModelFileError
from rnnserve.importers.rawfile import AttrValue, H5Tree

# What h5py raises on damaged or hostile input (it maps HDF5 library errors onto these).
H5_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError, OverflowError)


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


def member_names(group: h5py.Group, what: str) -> list[str]:
    """The names of a group's members (damaged groups and names that are not text are errors)."""
    try:
        names = list(group.keys())
    except H5_ERRORS as exc:
        raise ModelFileError(f"{what}: cannot list {group.name!r} (damaged file?): {exc}") from None
    for name in names:
        if not isinstance(name, str):
            raise ModelFileError(f"{what}: {group.name!r} holds a member whose name is not UTF-8 text")
    return names


def read_text_attr(obj: h5py.HLObject, key: str, max_bytes: int, what: str) -> str | None:
    """A string attribute (Keras writes JSON and version strings), at most `max_bytes` long; None if absent."""
    value = _read_attr(obj, key, max_bytes, what)
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
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
    value = _read_attr(obj, key, max_bytes, what)
    if value is None:
        return []
    value = np.asarray(value)
    names = []
    for item in value.reshape(-1):
        if isinstance(item, bytes):
            item = item.decode("utf-8", errors="replace")
        if not isinstance(item, str):
            raise ModelFileError(f"{what}: attribute {key!r} holds {type(item).__name__}, not names")
        names.append(item)
    return names


def _read_attr(obj: h5py.HLObject, key: str, max_bytes: int, what: str) -> Any:
    """An attribute's value after a size check on its declared shape (None if absent).

    Variable-length strings keep their text in a heap whose size is only known once read; the memory cap
    of the reader process bounds that.
    """
    try:
        if key not in obj.attrs:
            return None
        attr = obj.attrs.get_id(key)
        count = int(np.prod(attr.shape, dtype=np.int64)) if attr.shape else 1
        declared = count * attr.dtype.itemsize
        if declared > max_bytes:
            raise ModelFileError(f"{what}: attribute {key!r} is {declared} bytes, more than the {max_bytes}-byte limit")
        return obj.attrs[key] if count else np.zeros(0)
    except H5_ERRORS as exc:
        raise ModelFileError(f"{what}: cannot read attribute {key!r}: {exc}") from None


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


_TEXT_ATTR_BYTES = 64 * 1024
_LIST_ATTR_BYTES = 1 << 20


def read_tree(
    h5: h5py.File, root: str, attr_keys: Mapping[str, str], budget: ByteBudget, what: str, max_depth: int = 8
) -> H5Tree:
    """Every dataset below group `root` (float32 data, or the dtype of others) and the attributes `attr_keys`
    (name -> "text" | "names") of every group, following hard links only, at most `max_depth` levels deep."""
    tree = H5Tree()
    start = child(h5, root, what)
    if not isinstance(start, h5py.Group):
        raise ModelFileError(f"{what} has no {root!r} group")
    stack: list[tuple[h5py.Group, str, int]] = [(start, root, 0)]
    while stack:
        group, path, depth = stack.pop()
        tree.groups.add(path)
        attrs = _group_attrs(group, attr_keys, f"{what} {path}")
        if attrs:
            tree.attrs[path] = attrs
        for name in member_names(group, what):
            item = child(group, name, what)
            if isinstance(item, h5py.Dataset):
                tree.datasets[f"{path}/{name}"] = _dataset(item, f"{what} {path}/{name}", budget)
            elif isinstance(item, h5py.Group):
                if depth >= max_depth:
                    raise ModelFileError(f"{what}: {path}/{name} is nested more than {max_depth} groups deep")
                stack.append((item, f"{path}/{name}", depth + 1))
    return tree


def _group_attrs(group: h5py.Group, attr_keys: Mapping[str, str], what: str) -> dict[str, AttrValue]:
    attrs: dict[str, AttrValue] = {}
    for key, kind in attr_keys.items():
        value: AttrValue | None
        if kind == "names":
            value = read_name_list_attr(group, key, _LIST_ATTR_BYTES, what) or None
        else:
            value = read_text_attr(group, key, _TEXT_ATTR_BYTES, what)
        if value is not None:
            attrs[key] = value
    return attrs


def _dataset(ds: h5py.Dataset, what: str, budget: ByteBudget) -> np.ndarray | str:
    try:
        kind, dtype = ds.dtype.kind, str(ds.dtype)
    except H5_ERRORS as exc:
        raise ModelFileError(f"{what}: cannot read the dataset header: {exc}") from None
    return read_weight(ds, what, budget) if kind == "f" else dtype
