"""InputLayer: a model input. It never becomes a layer of a `ModelSpec` (the importers make it an `InputSpec`),
so it has no weights, reference or converter; it is registered so that model files may name it."""

from __future__ import annotations

from rnnserve.kinds.base import LayerKind, register_kind


class InputLayer(LayerKind):
    class_name = "InputLayer"
    model_input = True


INPUT_LAYER = InputLayer.class_name

register_kind(InputLayer())
