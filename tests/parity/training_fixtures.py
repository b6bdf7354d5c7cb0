"""The training-time fixtures (`fixtures/training/`, written by `make_fixtures_training.py`): per-layer resets,
penalties and constraints, MC-dropout statistics, as real Keras computed them. No Keras here."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

TRAINING = Path(__file__).resolve().parent / "fixtures" / "training"


@cache
def training_cases() -> tuple[dict[str, Any], ...]:
    return tuple(json.loads((TRAINING / "training.json").read_text())["cases"])


def cases_of(kind: str) -> list[dict[str, Any]]:
    return [c for c in training_cases() if c["kind"] == kind]


def arrays(case: dict[str, Any]) -> dict[str, np.ndarray]:
    with np.load(TRAINING / case["data"], allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def model_name(case: dict[str, Any]) -> str:
    return str(case["id"])


def reset_values(case: dict[str, Any], data: dict[str, np.ndarray], j: int) -> list[np.ndarray] | None:
    """The values a "values" reset set before batch j (for its layer's states), else None."""
    if case["batches"][j]["reset"] != "values":
        return None
    found = []
    i = 0
    while f"b{j}_reset_{i}" in data:
        found.append(data[f"b{j}_reset_{i}"])
        i += 1
    return found
