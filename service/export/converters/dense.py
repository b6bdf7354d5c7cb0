"""Dense: `activation(x K + b)` on the last axis, for any rank; passes the incoming mask on."""

from __future__ import annotations

from service.errors import ModelFileError
from service.export.activations import emit_activation
from service.export.builder import GraphBuilder
from service.export.context import LayerCall, LayerResult, Value
from service.export.registry import register_converter
from service.export.weights import check_weights
from service.layers.activations import SHAPE_CHANGING
from service.spec import LayerSpec


def single_input(call: LayerCall) -> Value:
    if len(call.inputs) != 1:
        raise ModelFileError(
            f"layer {call.layer.name!r} ({call.layer.class_name}) takes one input, got {len(call.inputs)}",
            layer=call.layer.name,
        )
    return call.inputs[0]


def dense(g: GraphBuilder, layer: LayerSpec, x: Value) -> Value:
    """Apply Dense `layer` to `x` (also the inner layer of TimeDistributed)."""
    check_weights(layer, x.shape[-1])
    config = layer.config
    units = int(config["units"])
    y = g.op("MatMul", x.name, g.initializer(layer.weights["kernel"], f"{layer.name}/kernel"), hint=layer.name)
    if "bias" in layer.weights:
        y = g.op("Add", y, g.initializer(layer.weights["bias"], f"{layer.name}/bias"), hint=layer.name)
    activation = str(config.get("activation", "linear"))
    y = emit_activation(g, activation, y)
    if activation in SHAPE_CHANGING:  # glu halves the last axis
        units //= 2
    return Value(y, (*x.shape[:-1], units), mask=x.mask, time_major=x.time_major)


@register_converter("Dense")
def convert_dense(g: GraphBuilder, call: LayerCall) -> LayerResult:
    return LayerResult((dense(g, call.layer, single_input(call)),))
