"""Recurrent states <-> bytes for stores that leave the process (Redis). No pickle: a fixed little-endian layout.

Layout (all integers unsigned little-endian):

    b"RNS1"  u32 count  then per array:  u8 ndim  u32 dim * ndim  float32 data (C order, little-endian)

`decode_states` checks every length, so a truncated or foreign value fails loudly instead of yielding garbage.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

MAGIC = b"RNS1"
_FLOAT32_LE = np.dtype("<f4")
_U32 = struct.Struct("<I")
_MAX_NDIM = 8


class StateCodecError(ValueError):
    """A stored state value is not in the layout `encode_states` writes."""


def encode_states(states: Sequence[np.ndarray]) -> bytes:
    """Pack float32 arrays (any shape up to 8 dims) with their shapes into one bytes value."""
    parts = [MAGIC, _U32.pack(len(states))]
    for index, array in enumerate(states):
        if array.ndim > _MAX_NDIM:
            raise StateCodecError(f"state {index} has {array.ndim} dimensions; at most {_MAX_NDIM} are encoded")
        if array.dtype.kind != "f" or array.dtype.itemsize != 4:
            raise StateCodecError(f"state {index} has dtype {array.dtype}; states are float32")
        parts.append(struct.pack(f"<B{array.ndim}I", array.ndim, *array.shape))
        parts.append(np.ascontiguousarray(array, dtype=_FLOAT32_LE).tobytes())
    return b"".join(parts)


def decode_states(data: bytes) -> tuple[np.ndarray, ...]:
    """The arrays `encode_states` packed, as read-only native float32 arrays."""
    view = memoryview(data)
    if bytes(view[:4]) != MAGIC:
        raise StateCodecError(f"state value does not start with {MAGIC!r} (got {bytes(view[:4])!r})")
    count = _read_u32(view, 4)
    offset = 8
    states: list[np.ndarray] = []
    for index in range(count):
        array, offset = _decode_one(view, offset, index)
        states.append(array)
    if offset != len(view):
        raise StateCodecError(f"state value has {len(view) - offset} trailing bytes after {count} arrays")
    return tuple(states)


def _decode_one(view: memoryview, offset: int, index: int) -> tuple[np.ndarray, int]:
    if offset >= len(view):
        raise StateCodecError(f"state value ends before array {index}")
    ndim = view[offset]
    if ndim > _MAX_NDIM:
        raise StateCodecError(f"array {index} claims {ndim} dimensions; at most {_MAX_NDIM} are encoded")
    offset += 1
    shape = tuple(_read_u32(view, offset + 4 * axis) for axis in range(ndim))
    offset += 4 * ndim
    nbytes = int(np.prod(shape, dtype=np.int64)) * _FLOAT32_LE.itemsize
    if offset + nbytes > len(view):
        raise StateCodecError(f"array {index} of shape {shape} needs {nbytes} bytes, {len(view) - offset} remain")
    array = np.frombuffer(view, dtype=_FLOAT32_LE, count=nbytes // _FLOAT32_LE.itemsize, offset=offset)
    return array.reshape(shape).astype(np.float32, copy=False), offset + nbytes


def _read_u32(view: memoryview, offset: int) -> int:
    if offset + 4 > len(view):
        raise StateCodecError(f"state value truncated at byte {offset}")
    value: int = _U32.unpack_from(view, offset)[0]
    return value
