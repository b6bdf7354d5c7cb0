"""The weights each layer must carry (Keras names and shapes, as its layer kind says), checked before they are
used or after a read (SEMANTICS §1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnserve.errors import ModelFileError
from rnnserve.kinds.base import get_kind
from rnnserve.spec import LayerSpec

Shape = tuple[int | None, ...]  # None = not checked (an input dimension unknown at that point)


def expected_shapes(class_name: str, config: Mapping[str, Any], input_dim: int | None = None) -> dict[str, Shape]:
    """Weight name -> expected shape for one layer (`LayerKind.weight_shapes`); `input_dim` is the last axis of
    its input when known."""
    return get_kind(class_name).weight_shapes(config, input_dim)


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
