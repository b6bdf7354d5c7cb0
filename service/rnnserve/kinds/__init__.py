"""One record per Keras layer kind (`base.LayerKind`), registered by class name; see CONTRIBUTING.md."""

from rnnserve.kinds.base import (
    KEEP_MASK,
    NO_MASK,
    REQUIRED,
    LayerKind,
    MaskRule,
    find_kind,
    get_kind,
    kind_of,
    layer_classes,
    reads_backwards,
    register_kind,
    registered_kinds,
    stream_refusal,
    supported_classes,
)

__all__ = [
    "KEEP_MASK",
    "NO_MASK",
    "REQUIRED",
    "LayerKind",
    "MaskRule",
    "find_kind",
    "get_kind",
    "kind_of",
    "reads_backwards",
    "stream_refusal",
    "layer_classes",
    "register_kind",
    "registered_kinds",
    "supported_classes",
]
