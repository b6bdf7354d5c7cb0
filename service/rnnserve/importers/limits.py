"""Resource limits for reading untrusted model files, and a bounded JSON parser.

Every importer reads through these caps so that a hostile file fails fast with a `ModelFileError` instead of
exhausting memory, recursing without bound or hanging.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rnnserve.errors import ModelFileError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """Caps applied while reading one model file."""

    max_members: int = 64
    """Most entries a `.keras` zip may list (Keras writes three)."""
    max_json_bytes: int = 16 * MiB
    """Largest `config.json`, `metadata.json` or `model_config` attribute."""
    max_json_depth: int = 64
    """Deepest nesting of lists and objects in a JSON document (Keras configs stay under 20)."""
    max_weights_bytes: int = 2 * GiB
    """Largest `model.weights.h5` member, and the most weight data read from any file in total."""
    max_expansion: int = 100
    """Largest ratio of decompressed to stored size for a zip member above `expansion_floor`."""
    expansion_floor: int = 1 * MiB
    """Zip members smaller than this are not ratio-checked (tiny JSON compresses well)."""
    read_chunk: int = 1 * MiB
    """Bytes decompressed per read, so a lying member is caught before it is fully inflated."""
    isolate: bool = True
    """Parse zip and HDF5 in a child process (`isolation.py`): the HDF5 library can hang or crash on bad files."""
    timeout_s: float = 120.0
    """Longest a child may take to read one file before it is killed."""

    def child_memory_bytes(self) -> int:
        """Address space a reading child may add: the weights member, the weights read, their copy, and slack."""
        return 3 * self.max_weights_bytes + 4 * self.max_json_bytes + 512 * MiB


def parse_json(data: bytes | str, what: str, limits: Limits) -> Any:
    """Decode a JSON document of at most `limits.max_json_bytes`, nested at most `limits.max_json_depth` deep.

    `what` names the document in errors ("config.json", "the model_config attribute", ...).
    """
    if len(data) > limits.max_json_bytes:
        raise ModelFileError(f"{what} is {len(data)} bytes, more than the {limits.max_json_bytes}-byte limit")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text)
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{what} is not UTF-8 text: {exc}") from None
    except RecursionError:
        raise ModelFileError(f"{what} is nested too deeply to parse") from None
    except ValueError as exc:  # json.JSONDecodeError and over-long integer literals
        raise ModelFileError(f"{what} is not valid JSON: {exc}") from None
    depth = json_depth(value, limits.max_json_depth)
    if depth > limits.max_json_depth:
        raise ModelFileError(f"{what} is nested more than {limits.max_json_depth} levels deep")
    return value


def json_depth(value: Any, stop_after: int) -> int:
    """Nesting depth of a decoded JSON value (a scalar is 0), counting no further than `stop_after + 1`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > stop_after:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest
