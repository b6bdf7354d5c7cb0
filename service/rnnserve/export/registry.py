"""Layer converters keyed by Keras class name.

Each layer kind (`rnnserve.kinds`, one module per kind) registers its converter here when it is registered;
the kinds are loaded the first time the registry is asked. `register_converter` also takes a bare function.
"""

from __future__ import annotations

from collections.abc import Callable

from rnnserve.errors import UnsupportedLayer
from rnnserve.export.builder import GraphBuilder
from rnnserve.export.context import LayerCall, LayerResult

Converter = Callable[[GraphBuilder, LayerCall], LayerResult]

_CONVERTERS: dict[str, Converter] = {}


def register_converter(class_name: str, *, overwrite: bool = False) -> Callable[[Converter], Converter]:
    """Decorator: register `fn` as the converter of Keras layer class `class_name`.

    Registering a second converter for the same class raises `ValueError` unless `overwrite=True`.
    """

    def decorate(fn: Converter) -> Converter:
        existing = _CONVERTERS.get(class_name)
        if existing is not None and existing is not fn and not overwrite:
            raise ValueError(
                f"a converter for {class_name!r} is already registered ({existing.__module__}.{existing.__name__}); "
                "pass overwrite=True to replace it"
            )
        _CONVERTERS[class_name] = fn
        return fn

    return decorate


def _load_kinds() -> None:
    from rnnserve.kinds.base import load_kinds

    load_kinds()


def get_converter(class_name: str) -> Converter:
    """The converter of `class_name`; `UnsupportedLayer` naming the class when there is none."""
    _load_kinds()
    try:
        return _CONVERTERS[class_name]
    except KeyError:
        known = ", ".join(sorted(_CONVERTERS)) or "none"
        raise UnsupportedLayer(
            f"no ONNX converter for Keras layer class {class_name!r} (supported: {known})", layer_class=class_name
        ) from None


def registered_classes() -> frozenset[str]:
    """The Keras class names that have a converter."""
    _load_kinds()
    return frozenset(_CONVERTERS)
