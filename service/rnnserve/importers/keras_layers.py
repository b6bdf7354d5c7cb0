"""Normalise one Keras layer config (Keras 3 or Keras 2 form), and say which weights it has and their shapes.

What each class's normalised config holds is its layer kind's business (`rnnserve.kinds`, one module per kind:
`LayerKind.defaults` and `normalise`); the checks every kind shares are in `rnnserve.kinds.config`. This module
is the importers' door to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rnnserve.errors import ModelFileError, UnsupportedLayer
from rnnserve.importers.jsonish import short
from rnnserve.kinds import get_kind, supported_classes

Shape = tuple[int | None, ...]


def describe(name: str, class_name: str) -> str:
    return f"layer {name!r} ({class_name})"


def unsupported_class(name: str, class_name: object) -> UnsupportedLayer:
    return UnsupportedLayer(
        f"layer {name!r} has class {class_name!r}, which rnnserve does not support "
        f"(supported: {', '.join(supported_classes())})"
    )


def supported_class(class_name: str) -> bool:
    """Whether a model file may name Keras class `class_name` (a layer kind or a model input)."""
    return class_name in supported_classes()


def normalise_layer(class_name: str, config: Mapping[str, Any], name: str, keras_version: str) -> dict[str, Any]:
    """The normalised config of a layer of a supported class (`LayerKind.normalise`)."""
    if not supported_class(class_name) or get_kind(class_name).model_input:
        raise unsupported_class(name, class_name)
    return get_kind(class_name).normalise(config, name, keras_version)


def dtype_policy_name(value: Any, where: str) -> str:
    """The policy name of a Keras `dtype` entry: a string, a (Keras 3 / mixed precision) policy dict, or None."""
    if value is None:
        return "float32"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        inner = value.get("config")
        if isinstance(inner, Mapping) and isinstance(inner.get("name"), str):
            return str(inner["name"])
    raise ModelFileError(f"{where}: cannot read its dtype {short(value)}")


def weight_shapes(class_name: str, config: Mapping[str, Any], in_features: int | None) -> dict[str, Shape]:
    """The weights of a normalised layer in Keras creation order, with their expected shapes.

    `in_features` is the last axis of the layer's input (None when unknown: that dimension is then not checked).
    """
    return get_kind(class_name).weight_shapes(config, in_features)


def output_features(class_name: str, config: Mapping[str, Any], in_features: int | None) -> list[int | None]:
    """The last axis of each output of a normalised layer: `[y]` or `[y, *states]` with return_state (Bidirectional
    with merge_mode=None: `[y_forward, y_backward, *states]`)."""
    return get_kind(class_name).output_features(config, in_features)
