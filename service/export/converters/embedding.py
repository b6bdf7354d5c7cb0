"""Embedding: a row lookup; with `mask_zero` token id 0 is masked (and the caller's explicit mask applies)."""

from __future__ import annotations

from onnx import TensorProto

from service.export.builder import GraphBuilder
from service.export.context import LayerCall, LayerResult, Value
from service.export.converters.dense import single_input
from service.export.converters.masking import combine_masks
from service.export.registry import register_converter
from service.export.weights import check_weights


@register_converter("Embedding")
def convert_embedding(g: GraphBuilder, call: LayerCall) -> LayerResult:
    layer = call.layer
    check_weights(layer)
    ids = single_input(call)
    index = ids.name if ids.elem_type == TensorProto.INT64 else g.op("Cast", ids.name, to=TensorProto.INT64)
    table = g.initializer(layer.weights["embeddings"], f"{layer.name}/embeddings")
    y = g.op("Gather", table, index, axis=0, hint=layer.name)
    mask = ids.mask
    if layer.config.get("mask_zero", False) and ids.is_sequence:
        keep = g.op("Not", g.op("Equal", index, g.constant(0, "int64")), hint=f"{layer.name}/mask")
        mask = combine_masks(g, ids, keep)
    output_dim = int(layer.config["output_dim"])
    return LayerResult((Value(y, (*ids.shape, output_dim), mask=mask, time_major=ids.time_major),))
