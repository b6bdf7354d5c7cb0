"""Masking: a step is masked when all its features equal `mask_value`; masked steps are zeroed (Keras
multiplies by the mask). As in Keras, the derived mask replaces the incoming one; the caller's explicit `mask`
input is ANDed into it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from onnx import TensorProto

from rnnserve.export.builder import GraphBuilder
from rnnserve.export.context import LayerCall, LayerResult, Value
from rnnserve.kinds.base import NO_MASK, LayerKind, MaskRule, register_kind
from rnnserve.kinds.dense import single_input
from rnnserve.runtime.runner import MASK_INPUT
from rnnserve.spec import LayerSpec

if TYPE_CHECKING:
    from rnnserve.layers.model import Node


def combine_masks(g: GraphBuilder, x: Value, keep: str) -> str:
    """A mask a layer derives from sequence `x` (in `x`'s layout), ANDed with the caller's explicit mask input.

    Keras's Embedding and Masking ignore the mask they receive and create their own; the explicit `mask` graph
    input is the caller's and applies to every timestep of the model. The result is `(batch, time)`.
    """
    if x.time_major:
        keep = g.op("Transpose", keep, perm=[1, 0])
    return g.op("And", MASK_INPUT, keep, hint="mask")


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


class Masking(LayerKind):
    """Config: `name, mask_value`; no weights. Creates the mask of its output."""

    class_name = "Masking"
    defaults = {"mask_value": 0.0}

    def output_mask(self, config: Mapping[str, Any], index: int) -> MaskRule:
        return MaskRule("any_not_equal", float(config["mask_value"])) if index == 0 else NO_MASK

    def reference(self, layer: LayerSpec) -> Node:
        from rnnserve.layers.core import Masking as MaskingReference
        from rnnserve.layers.model import MaskingNode

        return MaskingNode(MaskingReference.from_config(layer.config, layer.weights, layer.name))

    def convert(self, g: GraphBuilder, call: LayerCall) -> LayerResult:
        return convert_masking(g, call)


register_kind(Masking())
