"""Masking: a step is masked when all its features equal `mask_value`; masked steps are zeroed (Keras
multiplies by the mask). As in Keras, the derived mask replaces the incoming one; the caller's explicit `mask`
input is ANDed into it."""

from __future__ import annotations

from onnx import TensorProto

from service.export.builder import GraphBuilder
from service.export.context import LayerCall, LayerResult, Value
from service.export.converters.dense import single_input
from service.export.registry import register_converter
from service.runtime.signature import MASK_INPUT


def combine_masks(g: GraphBuilder, x: Value, keep: str) -> str:
    """A mask a layer derives from sequence `x` (in `x`'s layout), ANDed with the caller's explicit mask input.

    Keras's Embedding and Masking ignore the mask they receive and create their own; the explicit `mask` graph
    input is the caller's and applies to every timestep of the model. The result is `(batch, time)`.
    """
    if x.time_major:
        keep = g.op("Transpose", keep, perm=[1, 0])
    return g.op("And", MASK_INPUT, keep, hint="mask")


@register_converter("Masking")
def convert_masking(g: GraphBuilder, call: LayerCall) -> LayerResult:
    layer = call.layer
    x = single_input(call)
    value = g.scalar(float(layer.config.get("mask_value", 0.0)))
    differs = g.op("Cast", g.op("Not", g.op("Equal", x.name, value)), to=TensorProto.FLOAT)
    keep = g.op("ReduceMax", differs, g.ints([-1]), keepdims=1, hint=f"{layer.name}/keep")  # any feature differs
    y = g.op("Mul", x.name, keep, hint=layer.name)
    if not x.is_sequence:
        return LayerResult((Value(y, x.shape, mask=None, time_major=x.time_major),))
    step_keep = g.op("Cast", g.op("Squeeze", keep, g.ints([-1])), to=TensorProto.BOOL)
    return LayerResult((Value(y, x.shape, mask=combine_masks(g, x, step_keep), time_major=x.time_major),))
