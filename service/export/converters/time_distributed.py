"""TimeDistributed(Dense|Dropout): the inner layer acts on the last axis, so it applies to (batch, time, ...)
as it is; the mask passes through."""

from __future__ import annotations

from service.errors import UnsupportedLayer
from service.export.builder import GraphBuilder
from service.export.context import LayerCall, LayerResult
from service.export.converters.dense import dense, single_input
from service.export.registry import register_converter
from service.spec import LayerSpec


@register_converter("TimeDistributed")
def convert_time_distributed(g: GraphBuilder, call: LayerCall) -> LayerResult:
    layer = call.layer
    inner = layer.config["layer"]
    x = single_input(call)
    if inner["class_name"] == "Dropout":
        return LayerResult((x,))
    if inner["class_name"] != "Dense":
        raise UnsupportedLayer(
            f"layer {layer.name!r}: TimeDistributed({inner['class_name']}) is not supported (Dense, Dropout)",
            layer=layer.name,
        )
    inner_layer = LayerSpec("Dense", layer.name, inner["config"], layer.weights, layer.inputs)
    return LayerResult((dense(g, inner_layer, x),))
