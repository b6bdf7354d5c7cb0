"""The weights each layer must carry (Keras names and shapes), checked before they are used or after a read.

Shapes follow SEMANTICS §1: recurrent kernels `(F, gU)`, recurrent kernels `(U, gU)` with g = 1 (SimpleRNN),
3 (GRU) or 4 (LSTM); GRU `reset_after` biases `(2, 3U)`; Bidirectional weights are prefixed `forward/` and
`backward/`; TimeDistributed uses its inner layer's names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.errors import ModelFileError
from service.spec import LayerSpec

Shape = tuple[int | None, ...]  # None = not checked (an input dimension unknown at that point)

GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}


def _recurrent(class_name: str, config: Mapping[str, Any], input_dim: int | None) -> dict[str, Shape]:
    units = int(config["units"])
    width = GATES[class_name] * units
    shapes: dict[str, Shape] = {"kernel": (input_dim, width), "recurrent_kernel": (units, width)}
    if config.get("use_bias", True):
        shapes["bias"] = (2, width) if class_name == "GRU" and config.get("reset_after", True) else (width,)
    return shapes


def expected_shapes(class_name: str, config: Mapping[str, Any], input_dim: int | None = None) -> dict[str, Shape]:
    """Weight name -> expected shape for one layer; `input_dim` is the last axis of its input when known."""
    if class_name in GATES:
        return _recurrent(class_name, config, input_dim)
    if class_name == "Dense":
        units = int(config["units"])
        dense: dict[str, Shape] = {"kernel": (input_dim, units)}
        if config.get("use_bias", True):
            dense["bias"] = (units,)
        return dense
    if class_name == "Embedding":
        return {"embeddings": (int(config["input_dim"]), int(config["output_dim"]))}
    if class_name == "Bidirectional":
        inner = config["layer"]
        one = expected_shapes(inner["class_name"], inner["config"], input_dim)
        return {f"{direction}/{key}": shape for direction in ("forward", "backward") for key, shape in one.items()}
    if class_name == "TimeDistributed":
        inner = config["layer"]
        return expected_shapes(inner["class_name"], inner["config"], input_dim)
    return {}


def _matches(actual: tuple[int, ...], expected: Shape) -> bool:
    return len(actual) == len(expected) and all(e is None or a == e for a, e in zip(actual, expected, strict=True))


def check_weights(layer: LayerSpec, input_dim: int | None = None) -> None:
    """Raise ModelFileError naming the layer and weight when a weight is missing, extra or misshapen."""
    expected = expected_shapes(layer.class_name, layer.config, input_dim)
    missing = sorted(set(expected) - set(layer.weights))
    extra = sorted(set(layer.weights) - set(expected))
    if missing or extra:
        raise ModelFileError(
            f"layer {layer.name!r} ({layer.class_name}): weights {sorted(layer.weights)} do not match the expected "
            f"{sorted(expected)} (missing {missing}, unexpected {extra})",
            layer=layer.name,
        )
    for key, shape in expected.items():
        actual = np.shape(layer.weights[key])
        if not _matches(actual, shape):
            want = tuple("?" if s is None else s for s in shape)
            raise ModelFileError(
                f"layer {layer.name!r} ({layer.class_name}): weight {key!r} has shape {actual}, expected {want}",
                layer=layer.name,
            )


def sub_weights(weights: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The weights under `prefix/` with the prefix removed (a Bidirectional direction)."""
    head = prefix + "/"
    return {key[len(head) :]: value for key, value in weights.items() if key.startswith(head)}
