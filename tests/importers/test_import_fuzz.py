"""Random damage to real model configs gives a ModelSpec or a ModelFileError, never any other exception."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from importer_files import FILES

from rnnserve.errors import ModelFileError
from rnnserve.importers.keras_config import StoredModel, spec_from_config
from rnnserve.importers.keras_h5 import legacy_model, read_legacy_h5
from rnnserve.importers.keras_zip import archive_model, read_keras_archive
from rnnserve.importers.limits import Limits
from rnnserve.spec import ModelSpec

SOURCES = ["k3_func_masking_bidi.keras", "k3_func_lstm_state.keras", "k3_seq_gru_lstm.keras", "k2_func_emb_bidi.h5"]
MUTATIONS_PER_FILE = 100
REPLACEMENTS: list[Any] = [
    None, True, 0, -1, 3.5, 10**30, "x", "", [], {}, [None], [0, 0, 0], ["x", 0, 0],
    {"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 9]}},
    {"class_name": "LSTM", "config": {}},
]  # fmt: skip
_DELETE = object()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every position in a decoded JSON document (dict keys and list indexes)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _mutated(config: dict[str, Any], path: tuple[Any, ...], replacement: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(config))
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if replacement is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = json.loads(json.dumps(replacement))
    return out


def _stored(path: Path) -> StoredModel:
    """The model of a file, read in this process (the fuzzing is about the config, not the container)."""
    if path.suffix == ".keras":
        return archive_model(read_keras_archive(path, Limits()), Limits(), path.name)
    return legacy_model(read_legacy_h5(path, Limits()), Limits(), path.name)


@pytest.mark.parametrize("source", SOURCES)
def test_damaged_configs_raise_only_model_file_errors(source: str) -> None:
    rng = random.Random(source)
    outcomes = {"spec": 0, "error": 0}
    stored = _stored(FILES / source)
    paths = list(_paths(stored.model_config))
    for _ in range(MUTATIONS_PER_FILE):
        path = rng.choice(paths)
        replacement = rng.choice([*REPLACEMENTS, _DELETE])
        config = _mutated(stored.model_config, path, replacement)
        try:
            spec = spec_from_config(config, stored.weights, name="m", keras_version=stored.keras_version, source={})
        except ModelFileError:
            outcomes["error"] += 1
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{source}: setting {path} to {replacement!r} raised {type(exc).__name__}: {exc}")
        else:
            assert isinstance(spec, ModelSpec)
            outcomes["spec"] += 1
    # Both outcomes occur: harmless edits (initializers, names of nothing) and fatal ones.
    assert outcomes["spec"] > 0 and outcomes["error"] > 0
