"""Recurrent states and whole session records <-> bytes for stores that leave the process (Redis). No pickle: fixed
little-endian layouts.

States (all integers unsigned little-endian):

    b"RNS1"  u32 count  then per array:  u8 ndim  u32 dim * ndim  float32 data (C order, little-endian)

`decode_states` checks every length, so a truncated or foreign value fails loudly instead of yielding garbage.
A record (`encode_record`) is a fixed header, the model name, the retry digest and reply, then the states.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

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


def decode_states(data: bytes | memoryview) -> tuple[np.ndarray, ...]:
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


# ---- whole session records (the Redis store's value) ---------------------------------------------------------------
#
# One stored record is one bytes value, so that a session is one Redis string (no hash: a hash with a value over 64
# bytes leaves Redis's compact listpack encoding and pays a dict entry per field). Layout, little-endian:
#
#     offset  0  u64 version     } the compare-and-set token (HEAD_BYTES): every commit writes a new version and a
#     offset  8  8 bytes tag     } fresh random tag, so a session deleted and re-created under one id never matches
#     offset 16  u64 ttl_ms        (read by the Lua scripts to renew the TTL)
#     offset 24  u64 step
#     offset 32  i64 prev_step     (-1: none)
#     offset 40  f64 created_at    (unix time)
#     offset 48  u32 batch_size
#     offset 52  u16 model name length, u16 digest length, u32 response length
#     offset 60  name field, digest, response, then the states as `encode_states` writes them
#
# The name field is the model name (UTF-8); a tenant's session adds NUL and the tenant's name (`owner`), so that a
# listing reads the owner with the model name and the Lua scripts need no other offset. A model or tenant name holds
# no NUL, and a name field with an empty owner after its NUL is refused.

HEAD_BYTES = 16
_RECORD = struct.Struct("<Q8sQQqdIHHI")
_VERSION = struct.Struct("<Q")


class RecordFields(NamedTuple):
    """What a stored record holds besides its id and expiry (those are the key and Redis's TTL)."""

    head: bytes  # version + tag: the value's first HEAD_BYTES
    version: int
    ttl_ms: int
    step: int
    prev_step: int | None
    created_at: float
    batch_size: int
    model: str
    digest: bytes | None
    response: bytes | None
    states: tuple[np.ndarray, ...]
    owner: str | None = None  # the tenant that created the session


def version_head(version: int) -> bytes:
    """The first 8 bytes of a record at `version` (a compare-and-set on the version alone, whatever the tag)."""
    return _VERSION.pack(version)


def encode_record(
    *,
    version: int,
    tag: bytes,
    ttl_ms: int,
    step: int,
    prev_step: int | None,
    created_at: float,
    batch_size: int,
    model: str,
    digest: bytes | None,
    response: bytes | None,
    states: Sequence[np.ndarray],
    owner: str | None = None,
) -> bytes:
    name = name_field(model, owner)
    digest = digest or b""
    response = response or b""
    head = _RECORD.pack(
        version,
        tag,
        ttl_ms,
        step,
        -1 if prev_step is None else prev_step,
        created_at,
        batch_size,
        len(name),
        len(digest),
        len(response),
    )
    return b"".join((head, name, digest, response, encode_states(states)))


def name_field(model: str, owner: str | None) -> bytes:
    """The model name, and the owner's after a NUL (see the layout above)."""
    if "\0" in model or (owner is not None and ("\0" in owner or not owner)):
        raise StateCodecError(f"model {model!r} or owner {owner!r} is empty or holds a NUL")
    return model.encode() if owner is None else b"%s\0%s" % (model.encode(), owner.encode())


def split_name_field(field: bytes) -> tuple[str, str | None]:
    """(model, owner) of a name field; `StateCodecError` for an empty owner after a NUL, or a second NUL."""
    model, nul, owner = field.partition(b"\0")
    if nul and (not owner or b"\0" in owner):
        raise StateCodecError("record name field has an empty owner or a second NUL")
    return model.decode(), owner.decode() if nul else None


def decode_listing(data: bytes) -> tuple[int, float, int, str, str | None]:
    """(step, created_at, batch_size, model, owner) from a record's header and name field (what a listing reads)."""
    if len(data) < _RECORD.size:
        raise StateCodecError(f"record of {len(data)} bytes is shorter than its {_RECORD.size}-byte header")
    _, _, _, step, _, created_at, batch_size, n_name, _, _ = _RECORD.unpack_from(data)
    model, owner = split_name_field(data[_RECORD.size : _RECORD.size + n_name])
    return step, created_at, batch_size, model, owner


def decode_record(data: bytes) -> RecordFields:
    """The fields `encode_record` packed; `StateCodecError` for anything else."""
    if len(data) < _RECORD.size:
        raise StateCodecError(f"record of {len(data)} bytes is shorter than its {_RECORD.size}-byte header")
    version, tag, ttl_ms, step, prev_step, created_at, batch_size, n_name, n_digest, n_response = _RECORD.unpack_from(
        data
    )
    offset = _RECORD.size
    end = offset + n_name + n_digest + n_response
    if end > len(data):
        raise StateCodecError(f"record header claims {end} bytes, the value has {len(data)}")
    name, owner = split_name_field(data[offset : offset + n_name])
    offset += n_name
    digest = data[offset : offset + n_digest] if n_digest else None
    offset += n_digest
    response = data[offset:end] if n_response else None
    return RecordFields(
        data[:HEAD_BYTES],
        version,
        ttl_ms,
        step,
        None if prev_step < 0 else prev_step,
        created_at,
        batch_size,
        name,
        digest,
        response,
        decode_states(memoryview(data)[end:]),
        owner,
    )


def decode_head(data: bytes) -> tuple[int, int]:
    """(version, step) from the first 32 bytes of a record (what a failed compare-and-set returns)."""
    version: int = _VERSION.unpack_from(data, 0)[0]
    step: int = _VERSION.unpack_from(data, 24)[0]
    return version, step
